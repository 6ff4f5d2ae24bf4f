"""python -m posture.evaluate — the confusion matrix, and everything a reviewer asks next.

Usage::

    python -m posture.evaluate --run models/RUN --data data/DS [--split test]
    python -m posture.evaluate --compare models/A models/B [--out compare.md]

Why it is shaped like this:

* Probabilities come only through :class:`posture.predict.Predictor`, so the numbers describe
  exactly what the CLI and the web app will answer (same preprocessing, same temperature, same
  threshold), not a second, subtly different pipeline.
* Temperature and threshold are fitted on the *validation* split and stored in the run's
  ``config.json``; the *test* split is then scored with them applied. Fitting them on the test
  split would flatter the numbers, so the two splits must differ.
* Accuracy alone hides the two failures that matter here: errors that cluster by person (hence
  the per-subject and per-source tables) and a model that is right for the wrong reason (hence
  Grad-CAM on the most confidently wrong images).

Everything lands in ``models/RUN/eval/`` (or ``--out``): ``report.json``, ``predictions.csv``,
``confusion_matrix.csv|png``, ``roc_curve.png``, ``pr_curve.png``, ``reliability.png``,
``top_losses.png``, ``by_subject.csv``, ``by_source.csv``.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from posture.calibration import POLICY_HELP, ThresholdPolicy, calibration_record, choose_threshold, fit_temperature
from posture.checkpoint import update_config
from posture.cli import UserError, add_logging_flags, run_main, setup_logging
from posture.csvcells import read_csv
from posture.data import CLASSES_NAME, MANIFEST_NAME, image_folder_frame, regroup_validation
from posture.fileio import atomic_write_csv, atomic_write_json, atomic_write_text, read_json
from posture.images import ImageDecodeError, load_rgb_array
from posture.labels import FORWARD_HEAD
from posture.metrics import DEFAULT_ECE_BINS, classification_metrics, group_breakdown, reliability_bins, row_rates
from posture.predict import Predictor, softmax

log = logging.getLogger(__name__)

CALIBRATION_MODES = ("fit", "keep", "none")
ALL_SPLITS = "all"
REPORT_NAME = "report.json"
PREDICTIONS_NAME = "predictions.csv"


@dataclass
class EvalConfig:
    """One evaluation: which run, on which data, and how to calibrate.

    ``calibration``: ``fit`` (temperature + threshold on ``val_split``, stored in the run's
    config; falls back to ``keep`` when the data has no such split), ``keep`` (the run's stored
    calibration, untouched) or ``none`` (raw softmax and argmax).
    """

    run: Path
    data: Path
    split: str = "test"
    val_split: str = "val"
    out: Path | None = None
    calibration: str = "fit"
    threshold_policy: str = "youden"
    top_k: int = 12
    gradcam: bool = True
    batch_size: int = 32
    device: str = "auto"
    backend: str = "auto"
    ece_bins: int = DEFAULT_ECE_BINS

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out is not None else Path(self.run) / "eval"


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


# ----------------------------------------------------------------------------------------- data


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
        frame = read_csv(manifest, dtype={"path": str, "label": str, "split": str, "subject": str,
                                             "source": str})
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
        raise UserError(f"{data}: its classes {theirs} differ from the run's {list(class_names)}; "
                        "evaluate on data labelled with the run's classes")
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


def score_rows(predictor: Predictor, root: Path, frame: pd.DataFrame, batch_size: int = 32,
               desc: str = "scoring") -> Scored:
    """Raw logits for every row through the Predictor; undecodable files and photos a pose-based run
    cannot assess are left out and listed."""
    kept, logits, skipped, not_assessed = [], [], [], []
    chunk = max(1, batch_size)
    for start in tqdm(range(0, len(frame), chunk), desc=desc, unit="batch", disable=None, leave=False):
        analyses, rows = [], []
        for i in range(start, min(start + chunk, len(frame))):
            rel = frame.at[i, "path"]
            try:
                analysis = predictor.analyse(load_rgb_array(root / rel))
            except ImageDecodeError as exc:
                skipped.append({"path": rel, "reason": exc.reason, "detail": exc.detail})
                continue
            except OSError as exc:
                skipped.append({"path": rel, "reason": "unreadable", "detail": str(exc)})
                continue
            if analysis.reason is not None:
                not_assessed.append({"path": rel, "label": frame.at[i, "label"], "reason": analysis.reason})
                continue
            analyses.append(analysis)
            rows.append(i)
        if analyses:
            logits.append(predictor.logits_of(analyses, batch_size=batch_size))
            kept.extend(rows)
    for item in skipped:
        log.warning("skipped %s: %s (%s)", item["path"], item["reason"], item["detail"])
    if not_assessed:
        log.warning("%d photo(s) could not be assessed (%s, ...); see report.json 'not_assessed'", len(not_assessed),
                    not_assessed[0]["reason"])
    out = frame.iloc[kept].reset_index(drop=True)
    y = np.array([predictor.class_names.index(lbl) for lbl in out["label"]], dtype=int)
    stacked = np.concatenate(logits) if logits else np.zeros((0, len(predictor.class_names)), np.float32)
    return Scored(out, stacked, y, skipped, not_assessed)


# ----------------------------------------------------------------------------------- calibration


def default_positive_class(predictor: Predictor) -> str:
    """The stored positive class, else forward_head when the run has it, else class 0."""
    stored = (predictor.config.get("calibration") or {}).get("positive_class")
    if stored in predictor.class_names:
        return str(stored)
    return FORWARD_HEAD if FORWARD_HEAD in predictor.class_names else predictor.class_names[0]


def calibrate(predictor: Predictor, cfg: EvalConfig, frame: pd.DataFrame, has_splits: bool) -> dict[str, Any]:
    """Set the predictor's temperature and threshold per ``cfg.calibration``; returns what applies.

    With ``fit`` the result is also written to the run's ``config.json`` so that prediction and
    the app use it.
    """
    positive = default_positive_class(predictor)
    mode = cfg.calibration
    group = str((predictor.config.get("training") or {}).get("val_group") or "none")
    if has_splits and group != "none" and cfg.val_split == "val":  # the validation photos the run itself used
        frame = regroup_validation(frame, group, seed=int((predictor.config.get("training") or {}).get("seed", 0)))
    val = frame[frame["split"] == cfg.val_split].reset_index(drop=True) if has_splits else frame.iloc[0:0]
    if mode == "fit" and val.empty:
        log.warning("no %r split in %s to fit calibration on; keeping the run's stored calibration",
                    cfg.val_split, cfg.data)
        mode = "keep"
    if mode == "none":
        predictor.temperature, predictor.threshold, predictor.positive_class = 1.0, None, positive
        return {"mode": "none", "temperature": 1.0, "threshold": None, "positive_class": positive}
    if mode == "keep":
        stored = dict(predictor.config.get("calibration") or {})
        predictor.positive_class = stored.get("positive_class", positive)
        return {"mode": "keep", "temperature": predictor.temperature, "threshold": predictor.threshold,
                "positive_class": predictor.positive_class,
                **{k: v for k, v in stored.items() if k not in ("temperature", "threshold", "positive_class")}}
    policy = ThresholdPolicy.parse(cfg.threshold_policy)
    scored = score_rows(predictor, Path(cfg.data), val, cfg.batch_size, desc=f"scoring {cfg.val_split}")
    temperature = fit_temperature(scored.logits, scored.y)
    threshold = None
    if len(predictor.class_names) == 2:
        pos = predictor.class_names.index(positive)
        threshold = choose_threshold(scored.y == pos, softmax(scored.logits, temperature)[:, pos], policy)
    elif policy.kind != "none":
        log.warning("threshold policies apply to two-class runs only; using argmax")
    record = calibration_record(temperature, threshold, positive, policy, cfg.val_split, len(scored.y))
    config = update_config(cfg.run, calibration=record)
    predictor.config = config
    predictor.temperature, predictor.threshold, predictor.positive_class = temperature, threshold, positive
    log.info("calibration on %s (n=%d): temperature %.3f, threshold %s (%s); stored in %s",
             cfg.val_split, len(scored.y), temperature, "none" if threshold is None else f"{threshold:.4f}",
             policy, Path(cfg.run) / "config.json")
    return {"mode": "fit", **record}


# ------------------------------------------------------------------------------------ evaluation


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Run the whole evaluation and write every file; returns the report (also ``report.json``)."""
    from posture import plots
    from posture.device import resolve_device

    if cfg.calibration not in CALIBRATION_MODES:
        raise UserError(f"--calibration {cfg.calibration}: choose one of {', '.join(CALIBRATION_MODES)}")
    ThresholdPolicy.parse(cfg.threshold_policy)  # fail before any work
    if cfg.calibration == "fit" and cfg.split == ALL_SPLITS:
        raise UserError(f"--split {ALL_SPLITS} includes the validation rows that calibration would be fitted "
                        "on; add --calibration keep (the run's stored calibration) or --calibration none")
    if cfg.calibration == "fit" and cfg.split == cfg.val_split:
        raise UserError(f"--split and --val-split are both {cfg.split!r}: calibration fitted on the evaluated "
                        "rows flatters the numbers; pick another split or --calibration keep")
    predictor = Predictor.from_run(cfg.run, backend=cfg.backend, device=resolve_device(cfg.device))
    names = predictor.class_names
    frame, has_splits = load_eval_frame(cfg.data, names)
    rows = select_split(frame, has_splits, cfg.split)
    applied = calibrate(predictor, cfg, frame, has_splits)
    scored = score_rows(predictor, Path(cfg.data), rows, cfg.batch_size, desc=f"scoring {cfg.split}")
    if len(scored.y) == 0:
        what = "read" if not scored.not_assessed else "assessed (no person, or head and shoulders not visible)"
        raise UserError(f"none of the {len(rows)} images in {cfg.data} could be {what}")

    pos = names.index(predictor.positive_class)
    proba = softmax(scored.logits, predictor.temperature)
    decided = np.array([names.index(predictor.decide(row)[0]) for row in proba], dtype=int)
    raw = softmax(scored.logits, 1.0)
    metrics = classification_metrics(scored.y, decided, proba, names, pos, cfg.ece_bins)
    uncalibrated = classification_metrics(scored.y, raw.argmax(axis=1), raw, names, pos, cfg.ece_bins)

    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    predictions = predictions_frame(scored, names, proba, decided, has_splits)
    atomic_write_csv(out / PREDICTIONS_NAME, predictions)
    counts = np.asarray(metrics["confusion_matrix"])
    atomic_write_csv(out / "confusion_matrix.csv", confusion_frame(counts, names))
    plots.plot_confusion_matrix(counts, names, out / "confusion_matrix.png",
                                title=f"{Path(cfg.run).name} on {Path(cfg.data).name} [{cfg.split}]")
    plots.plot_roc(scored.y, proba, names, out / "roc_curve.png", pos, predictor.threshold)
    plots.plot_precision_recall(scored.y, proba, names, out / "pr_curve.png", pos)
    tables = {"uncalibrated": reliability_bins(scored.y, raw, cfg.ece_bins)}
    eces = {"uncalibrated": uncalibrated["ece"]}
    if predictor.temperature != 1.0:
        tables[f"T={predictor.temperature:.2f}"] = reliability_bins(scored.y, proba, cfg.ece_bins)
        eces[f"T={predictor.temperature:.2f}"] = metrics["ece"]
    plots.plot_reliability(tables, out / "reliability.png", eces)
    by_subject = group_breakdown(predictions, "subject")
    by_source = group_breakdown(predictions, "source")
    atomic_write_csv(out / "by_subject.csv", by_subject)
    atomic_write_csv(out / "by_source.csv", by_source)
    top = top_losses(predictions, cfg.top_k)
    plots.plot_gallery(gallery_items(predictor, Path(cfg.data), top, cfg.gradcam), out / "top_losses.png",
                       title=("most confidently wrong" if (top["label"] != top["predicted"]).any()
                              else "highest-loss images (none wrong)") + _gallery_note(predictor, cfg.gradcam))
    report = {
        "run": str(cfg.run), "architecture": predictor.config.get("architecture"), "backend": predictor.backend_name,
        "data": str(cfg.data),
        "split": cfg.split if has_splits and cfg.split != ALL_SPLITS else "(all rows)", "classes": names,
        "positive_class": predictor.positive_class, "n": int(len(scored.y)), "n_skipped": len(scored.skipped),
        "skipped": scored.skipped, "coverage": scored.coverage, "n_not_assessed": len(scored.not_assessed),
        "not_assessed": scored.not_assessed, "calibration": applied, **metrics, "uncalibrated": uncalibrated,
        "by_subject": by_subject.to_dict(orient="records"), "by_source": by_source.to_dict(orient="records"),
        "top_losses": top[["path", "label", "predicted", "confidence", "loss"]].to_dict(orient="records"),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_json(out / REPORT_NAME, report)
    return report


def predictions_frame(scored: Scored, names: Sequence[str], proba: np.ndarray, decided: np.ndarray,
                      has_splits: bool) -> pd.DataFrame:
    """One row per image: where it came from, truth, decision, confidence, loss, ``p_<class>``."""
    frame = scored.frame
    out = pd.DataFrame({"path": frame["path"]})
    for column in ("subject", "source"):
        out[column] = frame[column] if column in frame.columns else None
    if has_splits:
        out["split"] = frame["split"]
    out["label"] = frame["label"]
    out["predicted"] = [names[i] for i in decided]
    out["correct"] = out["label"] == out["predicted"]
    out["confidence"] = proba[np.arange(len(decided)), decided]
    out["loss"] = -np.log(np.clip(proba[np.arange(len(scored.y)), scored.y], 1e-12, 1.0))
    for i, name in enumerate(names):
        out[f"p_{name}"] = proba[:, i]
    return out


def confusion_frame(counts: np.ndarray, names: Sequence[str]) -> pd.DataFrame:
    """Rows: true class; columns: counts per predicted class, then the row-normalised rates."""
    rates = row_rates(counts)
    frame = pd.DataFrame({"true_label": list(names)})
    for j, name in enumerate(names):
        frame[name] = counts[:, j].astype(int)
    for j, name in enumerate(names):
        frame[f"rate_{name}"] = np.round(rates[:, j], 6)
    frame["support"] = counts.sum(axis=1).astype(int)
    return frame


def top_losses(predictions: pd.DataFrame, k: int) -> pd.DataFrame:
    """The ``k`` most confidently wrong rows, or the highest-loss rows when none is wrong."""
    wrong = predictions[~predictions["correct"]]
    if not wrong.empty:
        return wrong.sort_values("confidence", ascending=False, kind="stable").head(k)
    return predictions.sort_values("loss", ascending=False, kind="stable").head(k)


def _gallery_note(predictor: Predictor, gradcam: bool) -> str:
    if predictor.uses_pose and not predictor.uses_image:
        return " · the body landmarks the answer was read from"
    return " · Grad-CAM of the predicted class" if gradcam else ""


def gallery_items(predictor: Predictor, root: Path, top: pd.DataFrame, gradcam: bool = True) -> list[Any]:
    """Photos, their explanation and captions for the top-losses gallery: Grad-CAM of the predicted
    class for runs that read pixels, the landmarks the answer was read from for pose runs."""
    from posture.cam import explain
    from posture.drawing import draw_landmarks
    from posture.plots import GalleryItem

    items = []
    for row in top.itertuples(index=False):
        image = load_rgb_array(root / row.path)
        overlay = None
        if predictor.uses_pose and not predictor.uses_image:
            overlay = draw_landmarks(image, predictor.analyse(image).landmarks, max_side=max(image.shape[:2]))
        elif gradcam:
            try:
                overlay = explain(predictor, image, class_index=predictor.class_names.index(row.predicted))
            except Exception as exc:  # a CAM failure must not cost the whole evaluation
                log.warning("Grad-CAM failed for %s: %s", row.path, exc)
        caption = f"{Path(row.path).name[:40]}\ntrue {row.label} · pred {row.predicted} ({row.confidence:.2f})"
        items.append(GalleryItem(image, overlay, caption))
    return items


# --------------------------------------------------------------------------------------- summary


def _fmt(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def format_summary(report: dict[str, Any]) -> str:
    """The table printed after an evaluation: the headline numbers, per class, confusion, worst groups."""
    cal = report["calibration"]
    unc = report["uncalibrated"]
    threshold = cal.get("threshold")
    lines = [f"{report['run']} ({report['architecture']}, {report.get('backend', 'torch')}) on {report['data']} "
             f"[{report['split']}]: "
             f"{report['n']} images" + (f", {report['n_skipped']} unreadable (skipped)" if report["n_skipped"] else "")
             + (f"; coverage {report['coverage']:.1%}: {report['n_not_assessed']} photo(s) could not be assessed, "
                "the scores below are on the assessed ones" if report.get("n_not_assessed") else ""),
             f"calibration ({cal['mode']}): temperature {cal['temperature']:.3f}, threshold "
             f"{'argmax' if threshold is None else f'{threshold:.3f}'} for {report['positive_class']}"
             + (f" ({cal.get('policy')}, fitted on {cal.get('fitted_on')} n={cal.get('n')})" if cal.get("policy") else ""),
             "", f"{'metric':<20}{'calibrated':>12}{'uncalibrated':>14}"]
    for key, label in (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"),
                       ("roc_auc", "ROC AUC"), ("average_precision", "average precision"),
                       ("log_loss", "log loss"), ("ece", f"ECE ({report['ece_bins']} bins)")):
        lines.append(f"{label:<20}{_fmt(report[key]):>12}{_fmt(unc[key]):>14}")
    lines += ["", f"{'class':<16}{'precision':>10}{'recall':>8}{'f1':>8}{'support':>9}"]
    for name, row in report["per_class"].items():
        lines.append(f"{name:<16}{row['precision']:>10.3f}{row['recall']:>8.3f}{row['f1']:>8.3f}{row['support']:>9}")
    names = report["classes"]
    width = max(12, *(len(n) + 2 for n in names))
    lines += ["", "confusion matrix (rows: true, columns: predicted)", " " * width + "".join(f"{n:>{width}}" for n in names)]
    for name, row in zip(names, report["confusion_matrix"]):
        lines.append(f"{name:<{width}}" + "".join(f"{v:>{width}}" for v in row))
    for key in ("by_source", "by_subject"):
        groups = report.get(key) or []
        if len(groups) > 1:
            column = key.split("_", 1)[1]
            worst = ", ".join(f"{g[column]} {g['correct']}/{g['n']}" for g in groups[:5])
            lines.append(f"accuracy by {column} (worst first): {worst}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------- compare


def measure_latency(predictor: Predictor, images: Sequence[Any], repeats: int = 3) -> float:
    """Median milliseconds per image for single-image ``predict`` calls (what the app does)."""
    predictor.predict(images[0])  # warm-up: first-call allocations are not the steady state
    times = []
    for _ in range(max(1, repeats)):
        for image in images:
            start = time.perf_counter()
            predictor.predict(image)
            times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000.0)


def _latency_images(report: dict[str, Any], run: Path, n: int) -> list[Any]:
    """A few images the run was evaluated on (decoded once, so latency excludes disk); noise if none."""
    images: list[Any] = []
    predictions = run / "eval" / PREDICTIONS_NAME
    if predictions.is_file() and report.get("data"):
        for rel in read_csv(predictions, dtype={"path": str})["path"].head(n):
            try:
                images.append(load_rgb_array(Path(report["data"]) / rel))
            except (OSError, ImageDecodeError):
                continue
    if not images:
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 256, (480, 360, 3), dtype=np.uint8) for _ in range(n)]
    return images


def compare_runs(runs: Sequence[str | os.PathLike[str]], n_images: int = 8, repeats: int = 3,
                 device: str = "cpu", backend: str = "auto") -> str:
    """A markdown table of evaluated runs side by side (each needs ``eval/report.json``)."""
    header = ["run", "model", "data", "n", "accuracy", "balanced acc.", "ROC AUC", "ECE", "params (M)",
              "latency (ms/img)", "backend"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 3 + "---:|" * (len(header) - 4) + "---|"]
    for run in map(Path, runs):
        path = run / "eval" / REPORT_NAME
        if not path.is_file():
            raise UserError(f"{run}: not evaluated yet (no eval/{REPORT_NAME}); run "
                            f"`python -m posture.evaluate --run {run} --data DATA` first")
        report = read_json(path)
        predictor = Predictor.from_run(run, backend=backend, device=device)
        params = sum(p.numel() for p in predictor.model.parameters()) / 1e6 if predictor.model is not None else None
        latency = measure_latency(predictor, _latency_images(report, run, n_images), repeats)
        data = f"{Path(report['data']).name} [{report['split']}]"
        cells = [run.name, str(report.get("architecture")), data, str(report["n"]), _fmt(report["accuracy"]),
                 _fmt(report["balanced_accuracy"]), _fmt(report["roc_auc"]), _fmt(report["ece"]),
                 _fmt(params, 2), _fmt(latency, 1), predictor.backend_name]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Latency: median of single-image `Predictor.predict` calls on {device} over up to "
                 f"{n_images} evaluated images x {repeats} repeats, after one warm-up call; load average "
                 f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (busy machines inflate it; compare rows, "
                 "not machines).")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m posture.evaluate",
        description="Evaluate a trained run on a dataset: confusion matrix, metrics (accuracy, balanced "
                    "accuracy, per-class P/R/F1, ROC AUC, AP, log loss, ECE), ROC/PR curves, reliability "
                    "diagram, top losses with Grad-CAM, per-subject/per-source accuracy. Temperature and "
                    "decision threshold are fitted on the validation split and stored in the run's "
                    "config.json. Or compare evaluated runs side by side with --compare.",
        epilog="examples:\n  python -m posture.evaluate --run models/sample --data data/sample\n"
               "  python -m posture.evaluate --run models/sample --data ../photos_by_class --calibration keep\n"
               "  python -m posture.evaluate --compare models/a models/b --out compare.md",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="trained run folder (models/RUN)")
    parser.add_argument("--data", type=Path, help="ingested dataset folder (manifest.csv) or a class-per-folder "
                                                  "tree (all its images are evaluated)")
    parser.add_argument("--split", default="test",
                        help=f"split to evaluate (default: test); '{ALL_SPLITS}' evaluates every row (needs "
                             "--calibration keep or none)")
    parser.add_argument("--val-split", default="val", help="split to fit temperature/threshold on (default: val)")
    parser.add_argument("--calibration", choices=CALIBRATION_MODES, default="fit",
                        help="fit: fit on --val-split and store in the run (default; keeps the stored one when "
                             "there is no such split); keep: use the run's stored calibration; none: raw argmax")
    parser.add_argument("--threshold-policy", default="youden", metavar="POLICY",
                        help=f"how the forward_head threshold is chosen on the validation split: {POLICY_HELP} "
                             "(default: youden)")
    parser.add_argument("--top-k", type=int, default=12, help="images in the top-losses gallery (default: 12)")
    parser.add_argument("--no-gradcam", action="store_true", help="top-losses gallery without Grad-CAM overlays")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (default: auto)")
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx"),
                        help="inference engine: auto (ONNX Runtime when the run has an up-to-date model.onnx, "
                             "else torch), torch or onnx (default: auto)")
    parser.add_argument("--ece-bins", type=int, default=DEFAULT_ECE_BINS,
                        help=f"equal-width confidence bins for ECE (default: {DEFAULT_ECE_BINS})")
    parser.add_argument("--out", type=Path, help="output folder (default: RUN/eval); with --compare, the "
                                                 "markdown file to write (default: print only)")
    parser.add_argument("--compare", nargs="+", metavar="RUN", help="compare evaluated runs in one markdown table")
    parser.add_argument("--latency-images", type=int, default=8, help="images timed per run with --compare")
    add_logging_flags(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    if args.compare:
        from posture.device import resolve_device

        table = compare_runs(args.compare, n_images=args.latency_images, device=str(resolve_device(args.device)),
                             backend=args.backend)
        if args.out:
            atomic_write_text(args.out, table)
            log.info("wrote %s", args.out)
        print(table, end="")
        return 0
    if args.run is None or args.data is None:
        raise UserError("give --run RUN and --data DATA (or --compare RUN [RUN ...])")
    if args.top_k < 0 or args.batch_size < 1 or args.ece_bins < 1:
        raise UserError("--top-k must be >= 0, --batch-size and --ece-bins >= 1")
    cfg = EvalConfig(run=args.run, data=args.data, split=args.split, val_split=args.val_split, out=args.out,
                     calibration=args.calibration, threshold_policy=args.threshold_policy, top_k=args.top_k,
                     gradcam=not args.no_gradcam, batch_size=args.batch_size, device=args.device,
                     backend=args.backend, ece_bins=args.ece_bins)
    report = evaluate(cfg)
    print(format_summary(report))
    print(f"\nwrote {cfg.out_dir}/ (report.json, predictions.csv, confusion_matrix.csv|png, roc_curve.png, "
          "pr_curve.png, reliability.png, top_losses.png, by_subject.csv, by_source.csv)")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
