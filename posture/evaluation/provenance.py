"""What a set of photos is: synthetic pictures or real photos, from which sources, of how many people.

Why it exists: a model trained on ``posture.synth`` pictures can score 97 % on held-out synthetic
pictures and be at chance on photographs. Every place that shows a score (the model card,
``posture.evaluate``'s report) must therefore be able to say what the model learnt from and what
the score was measured on. Finetune writes :func:`training_record` into the run's ``config.json``
(``trained_on``); evaluation writes :func:`describe_rows` of the scored rows into ``report.json``
(``data_provenance``) and copies the run's ``trained_on`` beside it.

**The rule that recognises synthetic pictures** (:func:`synthetic_rows`). A row is synthetic when
its original file (``source_path``, or ``path`` where the data was never ingested) is named as
``posture.synth`` names its pictures, ``<class folder>/s<subject digits>_<picture digits>.jpg``,
*and*, where the data carries angle columns at all, the row has the craniovertebral angle and the
four ear/C7 coordinates that ``posture.synth`` always writes. Ingest keeps both (``source_path``
and ``cva_deg``/``ear_*``/``c7_*`` from ``labels.csv``), so the rule holds after
``posture.synth → posture.ingest`` without any marker; photos from cameras and phones are not
named like that, and a labeling team's keypoint CSV rarely covers every row of a real drop. A
source (the manifest's ``source`` column) is synthetic when all its rows are.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypedDict

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

PROVENANCE_FORMAT = "posture.evaluation.provenance/1"
#: ``posture.synth``'s file names (``posture.synth.drop.filename_for``), under a class folder.
SYNTH_FILE_NAME = re.compile(r"(?:^|/)s\d+_\d+\.jpg$")
#: The columns ``posture.synth`` writes for every picture (kept by ingest as manifest columns).
SYNTH_ANGLE_COLUMNS = ("cva_deg", "ear_x", "ear_y", "c7_x", "c7_y")
RULE = (
    "synthetic: file named <class>/s<digits>_<digits>.jpg as posture.synth names its pictures, with "
    "cva_deg and ear/C7 keypoints where the data has those columns; a source is synthetic when all its "
    "rows are"
)
SPLIT_ORDER = ("train", "val", "test")

Kind = Literal["synthetic", "real", "mixed", "none"]


class SourceRecord(TypedDict):
    """One source (capture session or drop) of a set of photos."""

    name: str
    synthetic: bool
    photos: int
    subjects: int | None


class SplitRecord(TypedDict):
    """How many photos and people one split holds, and how many of them training actually read."""

    photos: int
    subjects: int | None
    used: int
    used_subjects: int | None


class DataRecord(TypedDict):
    """A set of photos described for a reader: ``config.json`` ``trained_on``, ``report.json``
    ``data_provenance``. ``subjects`` is ``None`` when the data names no people."""

    format: str
    dataset: str
    kind: Kind
    photos: int
    subjects: int | None
    sources: list[SourceRecord]
    splits: dict[str, SplitRecord]
    rule: str


def synthetic_rows(frame: pd.DataFrame) -> np.ndarray:
    """One boolean per row: was it made by ``posture.synth`` (the rule in the module docstring)?"""
    names = frame["source_path"] if "source_path" in frame.columns else frame["path"]
    named = names.fillna("").astype(str).str.replace("\\", "/", regex=False).str.contains(SYNTH_FILE_NAME)
    angles = [c for c in SYNTH_ANGLE_COLUMNS if c in frame.columns]
    has_angles = frame[angles].notna().all(axis=1) if angles else pd.Series(True, index=frame.index)
    complete = len(angles) in (0, len(SYNTH_ANGLE_COLUMNS))
    return (named & has_angles).to_numpy(bool) & complete


def _subjects(frame: pd.DataFrame) -> int | None:
    if "subject" not in frame.columns or frame["subject"].isna().all():
        return None
    return int(frame["subject"].dropna().astype(str).nunique())


def describe_rows(frame: pd.DataFrame, dataset: str, used: np.ndarray | None = None) -> DataRecord:
    """A :class:`DataRecord` of these rows: kind, counts, sources, and splits when there is a split column.

    ``used``: one boolean per row, whether a consumer actually read it (training leaves out
    unreadable photos and those a pose-based run cannot assess); defaults to every row.
    """
    read = np.ones(len(frame), bool) if used is None else np.asarray(used, bool)
    synthetic = synthetic_rows(frame) if len(frame) else np.zeros(0, bool)
    source_names = (
        frame["source"].fillna("(none)").astype(str)
        if "source" in frame.columns
        else pd.Series("(none)", index=frame.index)
    )
    sources = [
        SourceRecord(
            name=str(name),
            synthetic=bool(synthetic[(source_names == name).to_numpy()].all()),
            photos=int((source_names == name).sum()),
            subjects=_subjects(frame[(source_names == name).to_numpy()]),
        )
        for name in sorted(source_names.unique())
    ]
    splits: dict[str, SplitRecord] = {}
    if "split" in frame.columns and frame["split"].notna().any():
        for split in [s for s in SPLIT_ORDER if (frame["split"] == s).any()]:
            here = (frame["split"] == split).to_numpy()
            splits[split] = SplitRecord(
                photos=int(here.sum()),
                subjects=_subjects(frame[here]),
                used=int((here & read).sum()),
                used_subjects=_subjects(frame[here & read]),
            )
    kind: Kind = (
        "none"
        if not len(frame)
        else "synthetic"
        if all(s["synthetic"] for s in sources)
        else "real"
        if not any(s["synthetic"] for s in sources)
        else "mixed"
    )
    return DataRecord(
        format=PROVENANCE_FORMAT,
        dataset=dataset,
        kind=kind,
        photos=len(frame),
        subjects=_subjects(frame),
        sources=sources,
        splits=splits,
        rule=RULE,
    )


@contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Silence a logger for a moment: re-drawing validation again must not log it a second time."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(logging.WARNING + 1)
    try:
        yield
    finally:
        logger.setLevel(before)


def training_record(
    data: str | Path, val_group: str = "none", seed: int = 0, metrics: Mapping[str, Any] | None = None
) -> DataRecord:
    """What a run was trained on, for its ``config.json`` (``trained_on``).

    The splits are the ones finetune used (``--val-group`` re-draws validation the same seeded way);
    ``used`` per split subtracts the photos ``metrics`` lists as unreadable or not assessable.
    """
    from posture.data.datasets import open_dataset, regroup_validation

    frame = open_dataset(data).frame
    if val_group != "none":
        with _quiet("posture.data.datasets"):
            frame = regroup_validation(frame, val_group, seed=seed)
    used = ~frame["path"].astype(str).isin(_left_out(metrics or {})).to_numpy()
    return describe_rows(frame, Path(data).name, used)


def _left_out(metrics: Mapping[str, Any]) -> set[str]:
    rows: Sequence[Mapping[str, Any]] = [*metrics.get("not_assessed", []), *metrics.get("skipped_images", [])]
    return {str(r["path"]) for r in rows if "path" in r}


def _counted(photos: int | None, subjects: int | None, synthetic: bool) -> str:
    what, people = ("picture", "generated people") if synthetic else ("photo", "people")
    text = f"{photos} {what}{'' if photos == 1 else 's'}"
    if subjects is not None:
        text += f" of {subjects} {('generated person' if synthetic else 'person') if subjects == 1 else people}"
    return text


def describe_words(record: Mapping[str, Any] | None, split: str | None = None) -> str:
    """A record in a phrase: ``"synthetic pictures (posture.synth): 350 pictures of 49 generated people"``.

    ``split``: describe only that split's counts (what training learnt from: ``train``).
    """
    if not record:
        return "not recorded"
    counts = (record.get("splits") or {}).get(split) if split else None
    photos = counts["used"] if counts else record.get("photos")
    subjects = counts.get("used_subjects", counts["subjects"]) if counts else record.get("subjects")
    if record.get("kind") == "synthetic":
        return f"synthetic pictures (posture.synth): {_counted(photos, subjects, True)}"
    real = [s["name"] for s in record.get("sources", []) if not s.get("synthetic") and s["name"] != "(none)"]
    what = "real photos" if record.get("kind") == "real" else "synthetic pictures and real photos"
    return f"{what}: {_counted(photos, subjects, False)}" + (f" from {', '.join(real)}" if real else "")


__all__ = [
    "PROVENANCE_FORMAT",
    "RULE",
    "DataRecord",
    "SourceRecord",
    "SplitRecord",
    "describe_rows",
    "describe_words",
    "synthetic_rows",
    "training_record",
]
