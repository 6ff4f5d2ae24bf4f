"""The dataset an ingested folder becomes: a manifest plus images, read by a torch Dataset.

Class names are kept in ``classes.json`` beside the manifest so that label indices never depend
on which labels happen to occur in one split.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import albumentations as A
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from posture.cli import UserError
from posture.data.labels import CLASS_NAMES
from posture.io.csvcells import read_csv
from posture.io.fileio import read_json

# The format constants live in the torch-free posture.io.formats; re-exported here unchanged.
from posture.io.formats import CLASSES_NAME, IMAGE_EXTENSIONS, MANIFEST_NAME, REQUIRED_COLUMNS, SPLITS
from posture.io.images import ImageDecodeError, load_rgb_array

log = logging.getLogger(__name__)


def read_manifest(root: str | os.PathLike[str]) -> pd.DataFrame:
    """Load ``root/manifest.csv``; a clear error when the folder is not an ingested dataset."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise UserError(f"{root}: no {MANIFEST_NAME} here; make one with `python -m posture.ingest SRC --out {root}`")
    frame = read_csv(path, dtype={"subject": str, "path": str, "label": str, "split": str})
    if "split" not in frame.columns and {"path", "label"} <= set(frame.columns):
        # A labelled folder that was never split (e.g. an evaluation set): all of it is one test split.
        log.info("%s has no split column: every row counts as the test split", path)
        frame["split"] = "test"
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame


def read_class_names(root: str | os.PathLike[str], manifest: pd.DataFrame | None = None) -> list[str]:
    """Class names in index order: ``classes.json`` if present, else the project's fixed order."""
    path = Path(root) / CLASSES_NAME
    if path.is_file():
        return list(read_json(path))
    labels = set(manifest["label"]) if manifest is not None else set(CLASS_NAMES)
    ordered = [c for c in CLASS_NAMES if c in labels]
    return ordered + sorted(labels - set(ordered))


def apply_transform(transform: Callable[..., object], image: np.ndarray) -> torch.Tensor | np.ndarray:
    """Call an albumentations pipeline (keyword API) or any plain ``f(array)`` callable."""
    if isinstance(transform, A.BaseCompose):
        return transform(image=image)["image"]
    return transform(image)  # type: ignore[return-value]


class ManifestDataset(Dataset):
    """Images of one split (or all) of an ingested dataset, as ``(tensor, label_index)``.

    ``transform`` is an albumentations pipeline from :mod:`posture.data.transforms` (or any callable
    mapping an ``H×W×3 uint8`` RGB array to a tensor).
    A file that fails to decode raises :class:`ImageDecodeError` naming it; callers that must
    survive it (feature extraction) catch it per item.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str | Sequence[str] | None = None,
        transform: Callable[[np.ndarray], torch.Tensor] | None = None,
        class_names: Sequence[str] | None = None,
        frame: pd.DataFrame | None = None,
    ) -> None:
        self.root = Path(root)
        manifest = read_manifest(root) if frame is None else frame
        self.class_names = list(class_names) if class_names is not None else read_class_names(root, manifest)
        if split is not None:
            wanted = [split] if isinstance(split, str) else list(split)
            manifest = manifest[manifest["split"].isin(wanted)]
        unknown = sorted(set(manifest["label"]) - set(self.class_names))
        if unknown:
            raise UserError(f"{root}: labels {unknown} are not among the classes {self.class_names}")
        self.frame = manifest.reset_index(drop=True)
        self.transform = transform
        self.targets = [self.class_names.index(lbl) for lbl in self.frame["label"]]

    def __len__(self) -> int:
        return len(self.frame)

    def image_path(self, index: int) -> Path:
        return self.root / self.frame.at[index, "path"]

    def load_image(self, index: int) -> np.ndarray:
        return load_rgb_array(self.image_path(index))

    def __getitem__(self, index: int) -> tuple[torch.Tensor | np.ndarray, int]:
        image = self.load_image(index)
        if self.transform is not None:
            return apply_transform(self.transform, image), self.targets[index]
        return image, self.targets[index]


def image_folder_frame(root: str | os.PathLike[str]) -> pd.DataFrame:
    """A manifest-like frame for a plain ``root/<class>/*.jpg`` tree (no ingest), all in one split.

    Convenient for a quick look; a real dataset goes through ``posture.ingest`` first.
    """
    from posture.data.labels import resolve_label

    rows = []
    root = Path(root)
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        label = resolve_label(class_dir.name) or class_dir.name
        for file in sorted(class_dir.rglob("*")):
            if file.suffix.lower() in IMAGE_EXTENSIONS and not file.name.startswith("."):
                rows.append(
                    {
                        "path": file.relative_to(root).as_posix(),
                        "label": label,
                        "split": "test",
                        "subject": class_dir.name,
                    }
                )
    if not rows:
        raise UserError(f"{root}: no images found in class sub-folders")
    return pd.DataFrame(rows)


#: How ``--val-group`` may re-draw the validation split.
VAL_GROUPS = ("none", "subject", "source")
#: Share of the train+val photos a re-drawn validation split aims for.
VAL_SHARE = 0.2


def regroup_validation(frame: pd.DataFrame, column: str, seed: int = 0, share: float = VAL_SHARE) -> pd.DataFrame:
    """Re-draw the ``val`` split from whole groups (``column``: subjects or sources) of train+val.

    Why: a validation split that shares people or capture sessions with training scores what the
    model has seen, so early stopping and threshold fitting optimise for the wrong thing. Here the
    validation photos come from groups absent from training, as the test photos of a new person
    would. Groups are taken in a seeded order until about ``share`` of the photos are held out;
    orders that leave a class out of training or validation are skipped. With fewer than two
    groups (or no order that keeps both classes on both sides) the split is left as it was, with
    a warning. The test split is never touched.
    """
    if column not in frame.columns:
        raise UserError(
            f"--val-group {column}: the manifest has no {column!r} column "
            f"(columns: {', '.join(map(str, frame.columns))})"
        )
    pool = frame["split"].isin(["train", "val"]).to_numpy()
    groups = frame.loc[pool, column].astype(str)
    names = np.array(sorted(groups.unique()))
    labels = frame.loc[pool, "label"]
    if len(names) >= 2:
        rng = np.random.default_rng(seed)
        sizes = groups.value_counts()
        for _ in range(64):
            held, count = [], 0
            for g in rng.permutation(names):
                if count >= share * pool.sum():
                    break
                held.append(g)
                count += int(sizes[g])
            in_val = groups.isin(held).to_numpy()
            if len(held) < len(names) and labels[in_val].nunique() == labels.nunique() == labels[~in_val].nunique():
                out = frame.copy()
                idx = np.flatnonzero(pool)
                out.loc[out.index[idx[in_val]], "split"] = "val"
                out.loc[out.index[idx[~in_val]], "split"] = "train"
                log.info(
                    "validation re-drawn by %s: %d photos of %s held out of training",
                    column,
                    count,
                    ", ".join(map(str, sorted(held))),
                )
                return out
    log.warning(
        "--val-group %s: cannot hold out whole %s groups with both classes on both sides "
        "(%d group(s)); keeping the dataset's own validation split",
        column,
        column,
        len(names),
    )
    return frame


def open_dataset(
    root: str | os.PathLike[str],
    split: str | Sequence[str] | None = None,
    transform: Callable[[np.ndarray], torch.Tensor] | None = None,
    class_names: Sequence[str] | None = None,
) -> ManifestDataset:
    """A dataset over an ingested folder, or over a plain class-per-folder tree without a manifest."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such dataset folder")
    if (root / MANIFEST_NAME).is_file():
        return ManifestDataset(root, split, transform, class_names)
    frame = image_folder_frame(root)
    return ManifestDataset(root, None, transform, class_names or read_class_names(root, frame), frame=frame)


__all__ = [
    "ManifestDataset",
    "open_dataset",
    "read_manifest",
    "read_class_names",
    "regroup_validation",
    "ImageDecodeError",
    "MANIFEST_NAME",
    "CLASSES_NAME",
    "SPLITS",
    "VAL_GROUPS",
]
