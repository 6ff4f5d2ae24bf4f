"""Choose a run's options on its training data alone, by leave-one-source-out: the procedure behind the defaults.

Why a procedure and not a list of good options: with a handful of capture sessions, many options fit
every session equally well by chance, and the one picked on the folds that then score it measures
luck, not the product. Four sessions of twelve people once said 0.93 for defaults that scored 0.66 on
seventy other people. So options are chosen here by how runs trained on some sources answer another
source they never saw, and a benchmark that wants an honest score calls this inside each of its own
outer folds (nested leave-one-source-out, ``bench/real_photos.py``): the held-out source only scores.

The procedure, for every candidate (a set of :class:`~posture.training.finetune.FinetuneConfig` options) and
every source of the data: train on the other sources with ``posture.finetune`` (validation carved
out of them by person, :func:`write_fold`), answer the held-out source with the
:class:`~posture.inference.predict.Predictor`, and score the candidate on all those answers together. A photo a
run cannot assess counts as wrong, so refusing hard photos never wins. The score weighs evidence by
people, not by folders (three of the real sources are one person each): by default it is the mean of
the balanced accuracy averaged over sources and the balanced accuracy with every person weighing the
same (:func:`person_weights`). Candidates are listed from simple to elaborate, and an elaborate one
must earn its place: the winner is the first candidate whose score comes within ``tolerance`` (a
hundredth) of the best, because with a few sources, differences that small are what chance alone
makes between candidates (bench/results/real_photos.md: the picks of the outer folds scatter over six
candidates whose inner scores lie within 0.02 of one another).
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from posture.cli import UserError
from posture.data.labels import CLASS_NAMES
from posture.io.fileio import atomic_write_csv
from posture.io.formats import CLASSES_NAME, MANIFEST_NAME
from posture.training.chosen_defaults import DEFAULTS_CHOSEN

log = logging.getLogger(__name__)

#: The manifest columns the procedure groups by: capture sessions (the folds) and people (the weights).
SOURCE_COLUMN, PERSON_COLUMN = "source", "subject"
#: How a candidate's answers on the held-out sources become one number (see the module docstring).
SCORES = ("both", "sources", "people")
#: A candidate's ``extra_data`` option with this value is given the procedure's synthetic dataset.
SYNTHETIC = "<synthetic>"
#: What "not assessed" is stored as among the predicted class indices.
NOT_ASSESSED = -1


@dataclass(frozen=True)
class Candidate:
    """One way to train: ``options`` override :class:`~posture.training.finetune.FinetuneConfig`'s defaults;
    ``threshold_policy`` (optional) runs ``posture.calibrate`` on the fold's validation split after."""

    name: str
    options: dict[str, Any]
    note: str
    threshold_policy: str | None = None

    @property
    def needs_synthetic(self) -> bool:
        return self.options.get("extra_data") == SYNTHETIC


#: Every option a candidate might set, at its base value: a candidate states all of them, so what it
#: means does not change when the defaults it led to change.
_BASE = {
    "balance": "class",
    "aug_views": 4,
    "aug_view3d": 0.0,
    "weight_decay": 1e-4,
    "extra_data": None,
    "extra_weight": 0.5,
}
_GEOMETRY_BASE = {**_BASE, "model": "pose", "head_hidden": 0, "head_dropout": 0.0}


def _geometry(name: str, note: str, threshold_policy: str | None = None, **options: Any) -> Candidate:
    return Candidate(name, {**_GEOMETRY_BASE, **options}, note, threshold_policy)


_HEAD = {"pose_features": "head"}
_HEAD_2D = {"pose_features": "head_2d"}
_LINEAR = {"head_hidden": 0, "head_dropout": 0.0}
_MLP = {"head_hidden": 256, "head_dropout": 0.3}
_CROP = {**_BASE, **_MLP, "model": "efficientnet_lite0", "crop": "pose"}
_FUSED = {**_BASE, **_LINEAR, "model": "efficientnet_lite0+pose", "pose_features": "head_2d"}
#: Posture geometry, one ingredient at a time against a base: the features (the body's own frame,
#: anatomical scales, the frontal webcam's cues, every landmark), the head and its regularisation, the
#: weighting, 3-D view augmentation, the synthetic pictures as a second training source, a threshold.
GEOMETRY: tuple[Candidate, ...] = (
    _geometry("head", "world head drop and nose forward (the earlier default), linear head", **_HEAD),
    _geometry("head_2d", "the same and the nose's height over the shoulders in face heights", **_HEAD_2D),
    _geometry(
        "frontal", "the frontal webcam's cues: head height, face size and place, shoulders", pose_features="frontal"
    ),
    _geometry(
        "anatomical",
        "3-D drop and forward in face heights (scales that survive a profile)",
        pose_features="anatomical",
    ),
    _geometry("body", "the body's own frame: neck flexion, head forward, height and pitch", pose_features="body"),
    _geometry(
        "named",
        "every named geometry feature, linear head, weight decay 0.01",
        pose_features="named",
        weight_decay=1e-2,
    ),
    _geometry(
        "landmarks",
        "all 33 landmarks (normalised), linear head, weight decay 0.01",
        pose_features="landmarks",
        weight_decay=1e-2,
    ),
    _geometry("head_2d_person", "head_2d, every person weighs the same", balance="person", **_HEAD_2D),
    _geometry("head_2d_session", "head_2d, every capture session weighs the same", balance="session", **_HEAD_2D),
    _geometry(
        "head_2d_view3d", "head_2d, views augmented by 3-D camera turns of up to 25°", aug_view3d=25.0, **_HEAD_2D
    ),
    _geometry(
        "head_2d_mlp", "head_2d, MLP head (64 hidden, dropout 0.3)", head_hidden=64, head_dropout=0.3, **_HEAD_2D
    ),
    _geometry(
        "head_2d_synthetic",
        "head_2d, synthetic pictures join training (weight 0.5)",
        extra_data=SYNTHETIC,
        **_HEAD_2D,
    ),
    _geometry(
        "head_2d_synthetic_2",
        "head_2d, synthetic pictures join training (weight 2: they outweigh the real photos)",
        extra_data=SYNTHETIC,
        extra_weight=2.0,
        **_HEAD_2D,
    ),
    _geometry(
        "head_2d_synthetic_8",
        "head_2d, synthetic pictures join training (weight 8: nearly synthetic alone)",
        extra_data=SYNTHETIC,
        extra_weight=8.0,
        **_HEAD_2D,
    ),
    _geometry(
        "head_2d_youden", "head_2d, threshold fitted on validation (Youden)", threshold_policy="youden", **_HEAD_2D
    ),
)
#: The CNN on its own: the whole photo or the head-and-shoulders crop, linear or MLP head.
CNN: tuple[Candidate, ...] = (
    Candidate("cnn_crop_mlp", _CROP, "EfficientNet-Lite0 on the head-and-shoulders crop, MLP head"),
    Candidate("cnn_crop_linear", {**_CROP, **_LINEAR}, "the same, linear head"),
    Candidate("cnn_whole_mlp", {**_CROP, "crop": "none"}, "EfficientNet-Lite0 on the whole photo, MLP head"),
)
#: Fusions compete with every candidate of their parts, so the grid cannot choose worse than its parts do
#: on the training sources: a fusion is picked only when it beats them.
FUSION: tuple[Candidate, ...] = (
    *GEOMETRY,
    *CNN,
    Candidate("fusion_head_2d", _FUSED, "CNN crop ‖ head_2d geometry, linear head"),
    Candidate("fusion_head_2d_wd", {**_FUSED, "weight_decay": 0.05}, "the same, weight decay 0.05"),
)
GRIDS: dict[str, tuple[Candidate, ...]] = {"geometry": GEOMETRY, "cnn": CNN, "fusion": FUSION}


# --------------------------------------------------------------------------------------- folds


def inner_groups(frame: pd.DataFrame, blocks: int = 5) -> pd.Series:
    """Groups for carving validation out of a training pool: a person with few photos is one group; a
    person with many (a video) is cut into ``blocks`` runs of consecutive frames per clip, so a burst's
    near-identical neighbours do not sit on both sides."""
    stems = frame["source_path"].astype(str).map(lambda p: Path(p).stem)
    clip = frame[PERSON_COLUMN].astype(str) + "|" + stems.map(lambda s: re.sub(r"\d+$", "", s))
    sizes = frame.groupby(PERSON_COLUMN)["path"].transform("size")
    order = stems.groupby(clip).rank(method="first") - 1
    block = (order * blocks // clip.map(clip.value_counts())).astype(int).astype(str)
    return pd.Series(np.where(sizes >= 10, clip + "|" + block, frame[PERSON_COLUMN].astype(str)), index=frame.index)


def write_fold(frame: pd.DataFrame, images: Path, fold_dir: Path, test: np.ndarray, seed: int) -> pd.DataFrame:
    """A dataset folder for one fold: the ``test`` rows held out, train and validation from the rest.

    ``images`` is the ingested dataset the rows' paths are relative to (linked, never copied). Rows
    that are neither test nor pool do not exist here: the fold's manifest holds only ``frame``."""
    from sklearn.model_selection import StratifiedGroupKFold

    fold = frame.copy()
    pool = fold[~test]
    groups = inner_groups(pool)
    if groups.nunique() < 2:  # one small session: no second person to validate on, so photos it is
        groups = pd.Series(pool.index.astype(str), index=pool.index)
    folds = max(2, min(5, groups.nunique(), int(pool["label"].value_counts().min())))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    _, val_idx = next(splitter.split(pool, pool["label"], groups))
    fold["split"] = "test"
    fold.loc[pool.index, "split"] = "train"
    fold.loc[pool.index[val_idx], "split"] = "val"
    if fold_dir.exists():
        shutil.rmtree(fold_dir)
    fold_dir.mkdir(parents=True)
    (fold_dir / "images").symlink_to((images / "images").resolve(), target_is_directory=True)
    shutil.copy(images / CLASSES_NAME, fold_dir / CLASSES_NAME)
    atomic_write_csv(fold_dir / MANIFEST_NAME, fold)
    return fold


# --------------------------------------------------------------------------------------- scores


def person_weights(subjects: Sequence[str] | np.ndarray) -> np.ndarray:
    """A weight per photo so that every person weighs the same (1 / their number of photos)."""
    names, inverse, counts = np.unique(np.asarray(subjects, dtype=str), return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse]


def balanced_accuracy(y: np.ndarray, pred: np.ndarray, weight: np.ndarray | None = None) -> float | None:
    """Balanced accuracy with a photo that was not assessed (``pred`` -1) counted as wrong; ``None``
    when ``y`` holds one class only."""
    from sklearn.metrics import recall_score

    classes = np.unique(y)
    if len(classes) < 2:
        return None
    # The mean recall over the classes in ``y`` only: an answer outside them (not assessed) is a miss.
    return float(recall_score(y, pred, labels=classes, average="macro", sample_weight=weight, zero_division=0))


def score(frame: pd.DataFrame, pred: np.ndarray, how: str = "both") -> float:
    """One number for answers ``pred`` (class index, -1 not assessed) on ``frame``'s rows (see :data:`SCORES`)."""
    y = frame["label"].map(CLASS_NAMES.index).to_numpy()
    per_source = []
    for source in sorted(frame[SOURCE_COLUMN].astype(str).unique()):
        m = (frame[SOURCE_COLUMN].astype(str) == source).to_numpy()
        value = balanced_accuracy(y[m], pred[m])
        if value is not None:
            per_source.append(value)
    sources = float(np.mean(per_source)) if per_source else 0.0
    people = balanced_accuracy(y, pred, person_weights(frame[PERSON_COLUMN].to_numpy())) or 0.0
    return {"sources": sources, "people": people, "both": (sources + people) / 2}[how]


# --------------------------------------------------------------------------------------- running


@dataclass
class SelectionConfig:
    """Where the procedure works and how it scores: ``work`` holds its fold datasets and runs (safe to
    delete), ``cache_dir`` the feature cache every run shares, ``synthetic`` an ingested synthetic dataset
    for the candidates that train on one too (skipped without it)."""

    work: Path
    cache_dir: str | None = None
    seed: int = 0
    how: str = "both"
    synthetic: str | None = None
    progress: bool = False
    #: A later (more elaborate) candidate must beat every earlier one by more than this to be picked.
    tolerance: float = 0.01

    def __post_init__(self) -> None:
        if self.how not in SCORES:
            raise UserError(f"unknown score {self.how!r}; choose one of {', '.join(SCORES)}")


@dataclass
class Selection:
    """What the procedure found: the winner, and every candidate's score on the held-out sources."""

    pick: Candidate
    scores: dict[str, float]
    seconds: float
    folds: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pick": self.pick.name,
            "options": self.pick.options,
            "threshold_policy": self.pick.threshold_policy,
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
            "folds": self.folds,
            "seconds": round(self.seconds, 1),
        }


def train_and_answer(
    candidate: Candidate,
    fold_dir: Path,
    run: Path,
    rows: pd.DataFrame,
    cfg: SelectionConfig,
    detector: Any = None,
) -> np.ndarray:
    """Train ``candidate`` on the fold's train/val splits and answer ``rows`` (its test rows): class
    index per row, :data:`NOT_ASSESSED` where the run cannot assess the photo."""
    from posture.inference.calibrate import CalibrateConfig, calibrate
    from posture.inference.predict import Predictor
    from posture.io.images import load_rgb_array
    from posture.training.finetune import FinetuneConfig, run_finetune

    options = dict(candidate.options)
    if candidate.needs_synthetic:
        options["extra_data"] = cfg.synthetic
    run_finetune(
        FinetuneConfig(
            data=str(fold_dir),
            out=str(run),
            cache_dir=cfg.cache_dir,
            workers=0,
            progress=cfg.progress,
            overwrite=True,
            seed=cfg.seed,
            device="cpu",
            **options,
        )
    )
    if candidate.threshold_policy:
        calibrate(CalibrateConfig(run=run, data=fold_dir, threshold_policy=candidate.threshold_policy, device="cpu"))
    predictor = Predictor.from_run(run, backend="torch", detector=detector)
    answers = predictor.predict_analysed([predictor.analyse(load_rgb_array(fold_dir / p)) for p in rows["path"]])
    return np.array([CLASS_NAMES.index(a.label) if a.label is not None else NOT_ASSESSED for a in answers])


def loso_answers(
    frame: pd.DataFrame,
    images: Path,
    candidate: Candidate,
    cfg: SelectionConfig,
    detector: Any = None,
    trainer: Callable[..., np.ndarray] = train_and_answer,
) -> np.ndarray:
    """Every row of ``frame`` answered by a run of ``candidate`` trained on the other sources."""
    pred = np.full(len(frame), NOT_ASSESSED)
    for source in sorted(frame[SOURCE_COLUMN].astype(str).unique()):
        test = (frame[SOURCE_COLUMN].astype(str) == source).to_numpy()
        slug = re.sub(r"[^A-Za-z0-9_.-]", "_", source)
        fold_dir = cfg.work / "folds" / slug
        write_fold(frame, images, fold_dir, test, cfg.seed)
        pred[test] = trainer(candidate, fold_dir, cfg.work / "runs" / slug / candidate.name, frame[test], cfg, detector)
    return pred


def select(
    frame: pd.DataFrame,
    images: Path,
    candidates: Sequence[Candidate],
    cfg: SelectionConfig,
    detector: Any = None,
    trainer: Callable[..., np.ndarray] = train_and_answer,
) -> Selection:
    """The procedure (module docstring) on ``frame``'s rows, all of which it may use: pass only the
    training pool. Needs at least two sources."""
    t0 = time.perf_counter()
    frame = frame.reset_index(drop=True)
    sources = sorted(frame[SOURCE_COLUMN].astype(str).unique())
    if len(sources) < 2:
        raise UserError(f"choosing by leave-one-source-out needs two sources or more, got {sources}")
    usable = [c for c in candidates if cfg.synthetic or not c.needs_synthetic]
    if not usable:
        raise UserError("no candidate to choose from (the synthetic ones need a synthetic dataset)")
    scores: dict[str, float] = {}
    for candidate in usable:
        pred = loso_answers(frame, images, candidate, cfg, detector, trainer)
        scores[candidate.name] = score(frame, pred, cfg.how)
        log.info("candidate %s: %.3f", candidate.name, scores[candidate.name])
    return Selection(pick(usable, scores, cfg.tolerance), scores, time.perf_counter() - t0, sources)


def pick(candidates: Sequence[Candidate], scores: dict[str, float], tolerance: float = 0.01) -> Candidate:
    """The first candidate (the simplest, in the grid's order) whose score is within ``tolerance`` of the best."""
    best = max(scores[c.name] for c in candidates)
    return next(c for c in candidates if scores[c.name] >= best - tolerance - 1e-12)


__all__ = [
    "Candidate",
    "CNN",
    "DEFAULTS_CHOSEN",
    "FUSION",
    "GEOMETRY",
    "GRIDS",
    "NOT_ASSESSED",
    "SCORES",
    "SYNTHETIC",
    "Selection",
    "SelectionConfig",
    "balanced_accuracy",
    "inner_groups",
    "loso_answers",
    "person_weights",
    "pick",
    "score",
    "select",
    "train_and_answer",
    "write_fold",
]
