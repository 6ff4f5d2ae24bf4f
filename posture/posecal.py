"""Calibrated pose classifier: posture geometry compared with the user's own upright photo.

Why this exists beside the fine-tuned CNNs: on real photos from a capture session the model never
saw (``bench/real_photos.py``, leave-one-source-out), no frozen-backbone head does clearly
better than chance; the features mostly describe the session (room, camera, framing). The
posture evidence itself (how high the head sits over the shoulders, :mod:`posture.geometry`)
separates the classes almost perfectly *within* each session, but its level moves with the
camera's height. Posture apps solve this the same way: "sit upright and press calibrate". Here
one to a few upright photos of the new session give its reference, and a photo is judged by how
far it sits from that reference, with a logistic regression trained on the same differences in
the training sessions (each against the mean of its own upright photos).

Usage::

    python -m posture.posecal train --data data/real --out models/pose [--session-column source]
    python -m posture.posecal predict --run models/pose --upright me_upright.jpg photo1.jpg photo2.jpg
    (repeat --upright for several upright photos)

A run is ``model.safetensors`` (scaler and regression tensors) + ``config.json`` + ``metrics.json``
+ ``predictions.csv``; nothing is pickled. Evaluation takes ``--calibration-photos`` upright photos
of each test session as its reference (seeded) and scores the rest of that session, and also
reports the uncalibrated score (the training sessions' mean reference) to show what calibration buys.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from posture.checkpoint import CONFIG_NAME, load_checkpoint, save_checkpoint
from posture.cli import UserError, add_logging_flags, run_main, setup_logging
from posture.data import read_class_names, read_manifest
from posture.fileio import atomic_write_csv, swap_into_place
from posture.geometry import GEOMETRY_FEATURES, posture_geometry
from posture.images import ImageDecodeError, load_rgb_array
from posture.metrics import classification_metrics
from posture.pose import PoseDetector, load_blazepose
from posture.predict import ImageInput, Prediction, to_rgb_array

log = logging.getLogger(__name__)

ARCHITECTURE = "pose-calibrated-logreg"
KIND = "pose-calibrated"
REFERENCE_CLASS = "normal"
PREDICTIONS_NAME = "predictions.csv"


@dataclass
class PoseCalConfig:
    """What ``python -m posture.posecal train`` needs; every field is a CLI option."""

    data: str
    out: str
    session_column: str = "source"   # photos sharing a camera set-up (a capture session)
    calibration_photos: int = 3      # upright photos per test session used as its reference
    regularization: float = 1.0      # logistic regression C
    seed: int = 0
    overwrite: bool = False
    progress: bool = True


# --------------------------------------------------------------------------- model


@dataclass
class CalibratedPoseModel:
    """A standardised logistic regression on ``geometry - session reference``."""

    classes: list[str]
    positive_class: str
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def positive_probability(self, delta: np.ndarray) -> np.ndarray:
        z = ((np.atleast_2d(delta) - self.mean) / self.scale) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def predict_proba(self, geometry: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """``N×2`` probabilities in class order for photos whose session reference is ``reference``."""
        p = self.positive_probability(np.atleast_2d(geometry) - reference)
        out = np.zeros((len(p), 2))
        pos = self.classes.index(self.positive_class)
        out[:, pos], out[:, 1 - pos] = p, 1.0 - p
        return out

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"mean": torch.tensor(self.mean, dtype=torch.float64),
                "scale": torch.tensor(self.scale, dtype=torch.float64),
                "coef": torch.tensor(self.coef, dtype=torch.float64),
                "intercept": torch.tensor([self.intercept], dtype=torch.float64)}

    @classmethod
    def from_tensors(cls, config: dict[str, Any], state: dict[str, torch.Tensor]) -> CalibratedPoseModel:
        try:
            return cls(classes=list(config["classes"]), positive_class=str(config["positive_class"]),
                       mean=state["mean"].numpy(), scale=state["scale"].numpy(), coef=state["coef"].numpy(),
                       intercept=float(state["intercept"].numpy()[0]))
        except KeyError as exc:
            raise UserError(f"not a complete pose-calibrated run (missing {exc})") from None


def fit_model(delta: np.ndarray, y_positive: np.ndarray, classes: list[str], positive_class: str,
              regularization: float = 1.0, seed: int = 0) -> CalibratedPoseModel:
    """Fit on reference-subtracted geometry; classes weighted by frequency (imbalanced sessions)."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y_positive)) < 2:
        raise UserError("calibrated pose training needs photos of both classes with a detected person")
    mean, scale = delta.mean(axis=0), delta.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    clf = LogisticRegression(C=regularization, class_weight="balanced", max_iter=1000, random_state=seed)
    clf.fit((delta - mean) / scale, y_positive)
    return CalibratedPoseModel(classes, positive_class, mean, scale, clf.coef_[0].astype(np.float64),
                               float(clf.intercept_[0]))


# --------------------------------------------------------------------------- measuring


def measure(images: Sequence[ImageInput], detector: PoseDetector | None = None,
            progress: bool = False) -> np.ndarray:
    """``N×F`` geometry (:data:`GEOMETRY_FEATURES`); rows of NaN where no person could be measured
    or the file could not be read (logged, not fatal: one bad photo should not stop a dataset)."""
    detector = detector or PoseDetector()
    out = np.full((len(images), len(GEOMETRY_FEATURES)), np.nan)
    for i, image in enumerate(tqdm(images, desc="landmarks", unit="img", disable=not progress, leave=False)):
        try:
            rgb = to_rgb_array(image)
        except (ImageDecodeError, OSError, ValueError) as exc:
            log.warning("skipping %s: %s", image if isinstance(image, (str, os.PathLike)) else f"image {i}", exc)
            continue
        geometry = posture_geometry(detector.detect(rgb))
        if geometry is not None:
            out[i] = geometry
    return out


def session_references(geometry: np.ndarray, sessions: Sequence[Any], is_reference: np.ndarray) -> dict[Any, np.ndarray]:
    """Mean geometry of each session's reference (upright) photos that could be measured."""
    refs = {}
    sessions = np.asarray(sessions, dtype=object)
    valid = ~np.isnan(geometry).any(axis=1)
    for s in pd.unique(sessions):
        rows = (sessions == s) & is_reference & valid
        if rows.any():
            refs[s] = geometry[rows].mean(axis=0)
    return refs


def pick_calibration(frame: pd.DataFrame, valid: np.ndarray, session_column: str, k: int,
                     seed: int) -> np.ndarray:
    """A boolean mask: ``k`` measurable upright photos per session (fewer if it has fewer), seeded."""
    rng = np.random.default_rng(seed)
    chosen = np.zeros(len(frame), bool)
    for rows in frame.groupby(session_column, sort=True).indices.values():
        candidates = [i for i in rows if valid[i] and frame["label"].iloc[i] == REFERENCE_CLASS]
        if candidates:
            chosen[rng.choice(candidates, size=min(k, len(candidates)), replace=False)] = True
    return chosen


# --------------------------------------------------------------------------- train + evaluate


def _check(cfg: PoseCalConfig, frame: pd.DataFrame, classes: list[str]) -> str:
    if cfg.session_column not in frame.columns:
        raise UserError(f"the manifest has no {cfg.session_column!r} column; name the column that tells capture "
                        f"sessions apart with --session-column (columns: {', '.join(frame.columns)})")
    if len(classes) != 2 or REFERENCE_CLASS not in classes:
        raise UserError(f"calibrated pose needs exactly two classes, one of them {REFERENCE_CLASS!r}; got {classes}")
    if cfg.calibration_photos < 1:
        raise UserError("--calibration-photos must be at least 1")
    if cfg.regularization <= 0:
        raise UserError("--regularization must be > 0")
    return next(c for c in classes if c != REFERENCE_CLASS)


def evaluate_sessions(model: CalibratedPoseModel, geometry: np.ndarray, frame: pd.DataFrame,
                      session_column: str, k: int, seed: int,
                      fixed_reference: np.ndarray | None = None) -> pd.DataFrame:
    """Calibrate each session with ``k`` of its upright photos and score the rest.

    Returns one row per photo: ``role`` is ``reference``, ``scored`` or ``unmeasured`` (no person
    found, or a session without any measurable upright photo). ``fixed_reference`` scores the
    same photos against one reference for all sessions instead (the uncalibrated comparison).
    """
    valid = ~np.isnan(geometry).any(axis=1)
    chosen = pick_calibration(frame, valid, session_column, k, seed)
    refs = session_references(geometry, frame[session_column].to_numpy(), chosen)
    pos = model.classes.index(model.positive_class)
    rows = []
    for i in range(len(frame)):
        session = frame[session_column].iloc[i]
        ref = refs.get(session)
        role = "reference" if chosen[i] else ("scored" if valid[i] and ref is not None else "unmeasured")
        if fixed_reference is not None:
            ref = fixed_reference
        p = model.predict_proba(geometry[i], ref)[0] if role == "scored" else np.full(2, np.nan)
        rows.append({"path": frame["path"].iloc[i], "label": frame["label"].iloc[i], "session": session,
                     "role": role, f"p_{model.positive_class}": p[pos],
                     "prediction": model.classes[int(np.argmax(p))] if role == "scored" else ""})
    return pd.DataFrame(rows)


def score(table: pd.DataFrame, classes: list[str], positive_class: str) -> dict[str, Any]:
    """Metrics over the scored photos, overall and per session."""
    scored = table[table["role"] == "scored"]
    if scored.empty:
        return {"n": 0}
    y = scored["label"].map(classes.index).to_numpy()
    pred = scored["prediction"].map(classes.index).to_numpy()
    p_pos = scored[f"p_{positive_class}"].to_numpy()
    pos = classes.index(positive_class)
    proba = np.zeros((len(p_pos), 2))
    proba[:, pos], proba[:, 1 - pos] = p_pos, 1 - p_pos
    out = classification_metrics(y, pred, proba, classes, positive_index=pos)
    out["per_session"] = {}
    for s, part in scored.groupby("session", sort=True):
        py, pp = part["label"].map(classes.index).to_numpy(), part["prediction"].map(classes.index).to_numpy()
        m = classification_metrics(py, pp, proba[scored["session"].to_numpy() == s], classes, positive_index=pos)
        out["per_session"][str(s)] = {k: m[k] for k in ("n", "accuracy", "balanced_accuracy", "confusion_matrix")}
    out["references"] = int((table["role"] == "reference").sum())
    out["unmeasured"] = int((table["role"] == "unmeasured").sum())
    return out


def train(cfg: PoseCalConfig, frame: pd.DataFrame, geometry: np.ndarray, classes: list[str]) -> CalibratedPoseModel:
    """Fit on every measurable photo of the training frame, each against its session's upright mean."""
    positive = _check(cfg, frame, classes)
    sessions = frame[cfg.session_column].to_numpy()
    refs = session_references(geometry, sessions, (frame["label"] == REFERENCE_CLASS).to_numpy())
    usable = ~np.isnan(geometry).any(axis=1) & np.array([s in refs for s in sessions])
    dropped = sorted({str(s) for s in sessions[~np.isnan(geometry).any(axis=1) & ~usable]})
    if dropped:
        log.warning("sessions without a measurable %s photo cannot be calibrated and are left out of training: %s",
                    REFERENCE_CLASS, ", ".join(dropped))
    delta = geometry[usable] - np.stack([refs[s] for s in sessions[usable]]) if usable.any() else geometry[:0]
    y = (frame["label"].to_numpy()[usable] == positive).astype(int)
    return fit_model(delta, y, classes, positive, cfg.regularization, cfg.seed)


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse, before any work, to replace anything but an earlier run (and that only with --overwrite)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise UserError(f"{out} already holds files; pass --overwrite to replace them")
        if not (out / CONFIG_NAME).is_file():
            raise UserError(f"{out} is not a run folder (no {CONFIG_NAME}); refusing to delete it")


def run_posecal(cfg: PoseCalConfig) -> dict[str, Any]:
    """Train on the train and val splits, evaluate on test with per-session calibration, write the run."""
    t0 = time.perf_counter()
    root, out = Path(cfg.data), Path(cfg.out)
    frame = read_manifest(root)
    classes = read_class_names(root, frame)
    positive = _check(cfg, frame, classes)
    load_blazepose()
    _check_out(out, cfg.overwrite)
    detector = PoseDetector()
    geometry = measure([root / p for p in frame["path"]], detector, progress=cfg.progress)
    misses = int(np.isnan(geometry).any(axis=1).sum())
    log.info("measured %d of %d photos (%d without a measurable person)", len(frame) - misses, len(frame), misses)
    fit_rows = frame["split"].isin(["train", "val"]).to_numpy()
    test_rows = (frame["split"] == "test").to_numpy()
    if not fit_rows.any():
        raise UserError(f"{root}: no train or val photos to fit on")
    train_frame = frame[fit_rows].reset_index(drop=True)
    model = train(cfg, train_frame, geometry[fit_rows], classes)
    train_refs = session_references(geometry[fit_rows], train_frame[cfg.session_column].to_numpy(),
                                    (train_frame["label"] == REFERENCE_CLASS).to_numpy())
    mean_ref = np.mean(list(train_refs.values()), axis=0)
    metrics: dict[str, Any] = {"classes": classes, "positive_class": positive, "features": list(GEOMETRY_FEATURES),
                               "train_sessions": sorted(map(str, train_refs)), "unmeasured_photos": misses}
    table = pd.DataFrame()
    if test_rows.any():
        test_frame = frame[test_rows].reset_index(drop=True)
        table = evaluate_sessions(model, geometry[test_rows], test_frame, cfg.session_column,
                                  cfg.calibration_photos, cfg.seed)
        metrics["test"] = score(table, classes, positive)
        # the same scored photos without calibration: every session against the training mean
        plain = evaluate_sessions(model, geometry[test_rows], test_frame, cfg.session_column,
                                  cfg.calibration_photos, cfg.seed, fixed_reference=mean_ref)
        metrics["test_uncalibrated"] = score(plain, classes, positive)
        m = metrics["test"]
        if m.get("n"):
            log.info("test (calibrated with %d upright photo(s) per session): accuracy %.3f, balanced %.3f on %d photos; "
                     "uncalibrated balanced %.3f", cfg.calibration_photos, m["accuracy"], m["balanced_accuracy"],
                     m["n"], metrics["test_uncalibrated"]["balanced_accuracy"])
        else:
            log.warning("no test photo could be scored (no session with a measurable %s photo)", REFERENCE_CLASS)
    else:
        log.warning("%s has no test split; the run is trained but not evaluated", root)
    config = {"kind": KIND, "architecture": ARCHITECTURE, "classes": classes, "positive_class": positive,
              "reference_class": REFERENCE_CLASS, "features": list(GEOMETRY_FEATURES),
              "preprocessing": {"landmarks": "mediapipe BlazePose 0.10.21", "model_complexity": detector.model_complexity,
                                "min_confidence": detector.min_confidence},
              "training": asdict(cfg)}
    staging = out.parent / f".{out.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        save_checkpoint(staging, model.tensors(), config, metrics=metrics)
        if not table.empty:
            atomic_write_csv(staging / PREDICTIONS_NAME, table)
        swap_into_place(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("wrote %s (%.0f s)", out, time.perf_counter() - t0)
    return metrics


# --------------------------------------------------------------------------- prediction


class PoseCalibrator:
    """A trained calibrated-pose run, ready for one user's session: calibrate once, then predict."""

    def __init__(self, config: dict[str, Any], model: CalibratedPoseModel,
                 detector: PoseDetector | None = None) -> None:
        self.config, self.model = config, model
        self.detector = detector or PoseDetector()
        self.reference: np.ndarray | None = None

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike[str]) -> PoseCalibrator:
        ckpt = load_checkpoint(run_dir)
        if ckpt.config.get("kind") != KIND:
            raise UserError(f"{run_dir} is not a calibrated pose run (train one with `python -m posture.posecal train`)")
        load_blazepose()
        return cls(ckpt.config, CalibratedPoseModel.from_tensors(ckpt.config, ckpt.state_dict))

    def calibrate(self, upright: Sequence[ImageInput]) -> np.ndarray:
        """Set the session's reference from photos of the user sitting upright; returns it."""
        geometry = measure(list(upright), self.detector)
        ok = ~np.isnan(geometry).any(axis=1)
        if not ok.any():
            raise UserError("no person could be measured in the upright photo(s); use a photo showing "
                            "the face and both shoulders")
        self.reference = geometry[ok].mean(axis=0)
        return self.reference

    def predict(self, image: ImageInput, reference: np.ndarray | None = None) -> Prediction | None:
        """The label for one photo of the calibrated session; ``None`` if no person is measurable.

        ``reference`` (from :meth:`calibrate` or :func:`measure`) overrides the stored one, so one
        calibrator can serve many sessions at once (the web app keeps each visitor's reference).
        """
        reference = self.reference if reference is None else np.asarray(reference, dtype=np.float64)
        if reference is None:
            raise UserError("calibrate first: give at least one upright photo of this session (--upright)")
        geometry = measure([image], self.detector)[0]
        if np.isnan(geometry).any():
            return None
        probs = self.model.predict_proba(geometry, reference)[0]
        idx = int(np.argmax(probs))
        return Prediction(self.model.classes[idx], float(probs[idx]),
                          {c: float(p) for c, p in zip(self.model.classes, probs)})


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m posture.posecal", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n"
                                       "  python -m posture.posecal train --data data/real --out models/pose\n"
                                       "  python -m posture.posecal predict --run models/pose --upright me_upright.jpg "
                                       "photo.jpg\n\n"
                                       "Each subcommand has --help. Needs MediaPipe: "
                                       "pip install --no-deps -r requirements-pose.txt")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="fit on an ingested dataset and evaluate on its test split")
    t.add_argument("--data", required=True, help="an ingested dataset folder (manifest.csv)")
    t.add_argument("--out", required=True, help="run folder to write (models/NAME)")
    t.add_argument("--session-column", default="source",
                   help="manifest column naming the capture session (camera set-up) of each photo (default source)")
    t.add_argument("--calibration-photos", type=int, default=3,
                   help="upright photos per test session used as its reference in evaluation (default 3)")
    t.add_argument("--regularization", type=float, default=1.0, help="logistic regression C (default 1.0)")
    t.add_argument("--seed", type=int, default=0, help="seed for picking the calibration photos")
    t.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_logging_flags(t)
    pr = sub.add_parser("predict", help="calibrate on upright photos, then label photos of the same session")
    pr.add_argument("--run", required=True, help="a run written by `posture.posecal train`")
    pr.add_argument("--upright", required=True, action="append", metavar="PHOTO",
                    help="a photo of the same person and camera, sitting upright (repeat for several)")
    pr.add_argument("images", nargs="+", help="photos to label")
    pr.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    add_logging_flags(pr)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    if args.command == "train":
        cfg = PoseCalConfig(data=args.data, out=args.out, session_column=args.session_column,
                            calibration_photos=args.calibration_photos, regularization=args.regularization,
                            seed=args.seed, overwrite=args.overwrite, progress=not args.no_progress)
        run_posecal(cfg)
        return 0
    calibrator = PoseCalibrator.from_run(args.run)
    calibrator.calibrate([Path(p) for p in args.upright])
    failed = 0
    for path in args.images:
        try:
            pred = calibrator.predict(load_rgb_array(path))
        except (ImageDecodeError, OSError) as exc:
            log.error("%s: %s", path, exc)
            failed += 1
            continue
        if pred is None:
            log.error("%s: no person could be measured", path)
            failed += 1
            continue
        if args.json:
            sys.stdout.write(json.dumps({"path": path, **pred.to_dict()}) + "\n")
        else:
            sys.stdout.write(f"{path}\t{pred.label}\t{pred.confidence:.3f}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
