"""Photos of a dataset through a run's Predictor: the rows to score, and their raw logits.

Why a module of its own: evaluation (:mod:`posture.evaluate`) and fitting a calibration
(:mod:`posture.calibrate`) score rows the same way, through :class:`posture.inference.predict.Predictor`,
so their numbers describe exactly what the CLI and the web app answer. Neither changes the run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from posture.cli import UserError
from posture.data.datasets import CLASSES_NAME, MANIFEST_NAME, image_folder_frame
from posture.inference.predict import Predictor
from posture.io.csvcells import read_csv
from posture.io.fileio import read_json
from posture.io.images import ImageDecodeError, load_rgb_array

log = logging.getLogger(__name__)

#: ``--split all``: every row of the data, whatever its split.
ALL_SPLITS = "all"


@dataclass
class Scored:
    """The rows that were assessed, their raw logits, the ones that did not decode, and (pose-based
    runs) the ones that could not be assessed, each with its reason."""

    frame: pd.DataFrame
    logits: np.ndarray
    y: np.ndarray
    skipped: list[dict[str, str]] = field(default_factory=list)
    not_assessed: list[dict[str, str]] = field(default_factory=list)

    @property
    def coverage(self) -> float | None:
        """Share of the readable photos that were assessed."""
        total = len(self.y) + len(self.not_assessed)
        return len(self.y) / total if total else None


def load_eval_frame(data: str | os.PathLike[str], class_names: Sequence[str]) -> tuple[pd.DataFrame, bool]:
    """The dataset's rows and whether it has splits; refuses data whose classes differ from the run's.

    An ingested folder has ``manifest.csv`` (with a ``split`` column); a plain class-per-folder
    tree, or a manifest without ``split``, counts as one split: every row is evaluated.
    """
    root = Path(data)
    if not root.is_dir():
        raise UserError(f"--data {data}: no such dataset folder")
    manifest = root / MANIFEST_NAME
    if manifest.is_file():
        frame = read_csv(manifest, dtype={"path": str, "label": str, "split": str, "subject": str, "source": str})
        missing = [c for c in ("path", "label") if c not in frame.columns]
        if missing:
            raise UserError(f"{manifest}: missing column(s) {', '.join(missing)}")
    else:
        # image_folder_frame labels every row "test" and uses the class folder as subject; here the
        # tree is simply "all rows", and the folder name is the class, not a person.
        frame = image_folder_frame(root).drop(columns=["split"], errors="ignore").assign(subject=None)
    has_splits = "split" in frame.columns and frame["split"].notna().any()
    declared = set(read_json(root / CLASSES_NAME)) if (root / CLASSES_NAME).is_file() else None
    labels = set(frame["label"].dropna())
    wanted = set(class_names)
    if (declared is not None and declared != wanted) or not labels <= wanted:
        theirs = sorted(declared if declared is not None else labels)
        raise UserError(
            f"{data}: its classes {theirs} differ from the run's {list(class_names)}; "
            "evaluate on data labelled with the run's classes"
        )
    return frame.reset_index(drop=True), bool(has_splits)


def select_split(frame: pd.DataFrame, has_splits: bool, split: str) -> pd.DataFrame:
    """Rows of ``split`` (all rows for ``all`` or when the data has no splits); empty is a user error."""
    if not has_splits or split == ALL_SPLITS:
        return frame
    rows = frame[frame["split"] == split]
    if rows.empty:
        present = ", ".join(sorted(frame["split"].dropna().unique()))
        raise UserError(f"no rows in split {split!r} (the data has: {present}); choose one with --split")
    return rows.reset_index(drop=True)


def score_rows(
    predictor: Predictor, root: Path, frame: pd.DataFrame, batch_size: int = 32, desc: str = "scoring"
) -> Scored:
    """Raw logits for every row through the Predictor; undecodable files and photos a pose-based run
    cannot assess are left out and listed."""
    kept, logits, skipped, not_assessed = [], [], [], []
    chunk = max(1, batch_size)
    for start in tqdm(range(0, len(frame), chunk), desc=desc, unit="batch", disable=None, leave=False):
        analyses, rows = [], []
        for i in range(start, min(start + chunk, len(frame))):
            rel = str(frame.at[i, "path"])
            try:
                analysis = predictor.analyse(load_rgb_array(root / rel))
            except ImageDecodeError as exc:
                skipped.append({"path": rel, "reason": exc.reason, "detail": exc.detail})
                continue
            except OSError as exc:
                skipped.append({"path": rel, "reason": "unreadable", "detail": str(exc)})
                continue
            if analysis.reason is not None:
                not_assessed.append({"path": rel, "label": str(frame.at[i, "label"]), "reason": analysis.reason})
                continue
            analyses.append(analysis)
            rows.append(i)
        if analyses:
            logits.append(predictor.logits_of(analyses, batch_size=batch_size))
            kept.extend(rows)
    for item in skipped:
        log.warning("skipped %s: %s (%s)", item["path"], item["reason"], item["detail"])
    if not_assessed:
        log.warning(
            "%d photo(s) could not be assessed (%s, ...); see report.json 'not_assessed'",
            len(not_assessed),
            not_assessed[0]["reason"],
        )
    out = frame.iloc[kept].reset_index(drop=True)
    y = np.array([predictor.class_names.index(lbl) for lbl in out["label"]], dtype=int)
    stacked = np.concatenate(logits) if logits else np.zeros((0, len(predictor.class_names)), np.float32)
    return Scored(out, stacked, y, skipped, not_assessed)


__all__ = ["ALL_SPLITS", "Scored", "load_eval_frame", "score_rows", "select_split"]
