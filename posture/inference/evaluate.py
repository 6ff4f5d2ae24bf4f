"""python -m posture.evaluate — the confusion matrix, and everything a reviewer asks next.

Usage::

    python -m posture.evaluate --run models/RUN --data data/DS [--split test] [--calibration keep|none]
    python -m posture.evaluate --compare models/A models/B [--out compare.md]

Why it is shaped like this:

* Probabilities come only through :class:`posture.inference.predict.Predictor`, so the numbers describe
  exactly what the CLI and the web app will answer (same preprocessing, same temperature, same
  threshold), not a second, subtly different pipeline.
* Evaluation only reads the run. It scores with the calibration the run stores (fitted on the
  validation split by ``python -m posture.calibrate``) or, with ``--calibration none``, with raw
  argmax; scoring real photos can never move the run's threshold. It refuses to score the rows a
  stored calibration was fitted on, which would flatter the numbers.
* Accuracy alone hides the two failures that matter here: errors that cluster by person (hence
  the per-subject and per-source tables) and a model that is right for the wrong reason (hence
  Grad-CAM on the most confidently wrong images).
* A score on synthetic pictures says little about photographs, so every report says what the
  model was trained on (``trained_on``, from the run's ``config.json``) and what was scored
  (``data_provenance``: synthetic pictures or real photos, sources, photos, people; see
  :mod:`posture.evaluation.provenance`). The app's model card headlines the reports in the run's ``eval*/``
  folders that scored real photos.

Everything lands in ``models/RUN/eval/`` (or ``--out``): ``report.json`` (a
:class:`posture.evaluation.metrics.SplitMetrics` of the scored rows plus the context above),
``predictions.csv``, ``confusion_matrix.csv|png``, ``roc_curve.png``, ``pr_curve.png``,
``reliability.png``, ``top_losses.png``, ``by_subject.csv``, ``by_source.csv``.
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

from posture.cli import UserError, add_logging_flags, add_options, config_from_args, option, run_main, setup_logging
from posture.evaluation.metrics import (
    DEFAULT_ECE_BINS,
    SplitMetrics,
    classification_metrics,
    group_breakdown,
    reliability_bins,
    row_rates,
)
from posture.evaluation.provenance import describe_rows, describe_words
from posture.inference.predict import Predictor, softmax
from posture.inference.scoring import ALL_SPLITS, Scored, load_eval_frame, score_rows, select_split
from posture.io.csvcells import read_csv
from posture.io.fileio import (
    atomic_write_csv,
    atomic_write_json,
    atomic_write_text,
    check_writable_file,
    check_writable_output,
    read_json,
)
from posture.io.formats import BACKENDS
from posture.io.images import MODEL_MAX_SIDE, ImageDecodeError, load_rgb_array

log = logging.getLogger(__name__)

#: ``keep``: the run's stored calibration (none stored: raw argmax); ``none``: raw softmax and argmax.
CALIBRATION_MODES = ("keep", "none")
REPORT_NAME = "report.json"
PREDICTIONS_NAME = "predictions.csv"
CALIBRATE_HINT = "python -m posture.calibrate --run RUN --data DATA"


@dataclass
class EvalConfig:
    """One evaluation: which run, on which data, which split, and with or without its calibration.

    Each field is also the command's option of that name (:func:`posture.cli.option`).
    """

    run: Path = field(metadata=option("trained run folder (models/RUN)", required=False))
    data: Path = field(
        metadata=option(
            "ingested dataset folder (manifest.csv) or a class-per-folder tree (all its images are evaluated)",
            required=False,
        )
    )
    split: str = field(
        default="test",
        metadata=option(
            f"split to evaluate; '{ALL_SPLITS}' evaluates every row. Rows the stored calibration was fitted on "
            "are refused (use --calibration none for them)"
        ),
    )
    out: Path | None = field(
        default=None,
        metadata=option(
            "output folder (default: RUN/eval; the model card reads every RUN/eval*/ folder); with --compare, "
            "the markdown file to write (default: print only)"
        ),
    )
    calibration: str = field(
        default="keep",
        metadata=option(
            "keep: the run's stored temperature and threshold (raw argmax when it stores none); none: raw "
            f"softmax and argmax. Fitting them is its own step: {CALIBRATE_HINT}",
            choices=CALIBRATION_MODES,
        ),
    )
    top_k: int = field(default=12, metadata=option("images in the top-losses gallery"))
    gradcam: bool = field(default=True, metadata=option("top-losses gallery without Grad-CAM overlays"))
    batch_size: int = field(default=32, metadata=option("photos per forward pass"))
    device: str = field(default="auto", metadata=option("auto | cpu | cuda | mps"))
    backend: str = field(
        default="auto",
        metadata=option(
            "inference engine: auto (ONNX Runtime when the run has an up-to-date model.onnx, else torch), "
            "torch or onnx",
            choices=BACKENDS,
        ),
    )
    ece_bins: int = field(default=DEFAULT_ECE_BINS, metadata=option("equal-width confidence bins for ECE"))

    def __post_init__(self) -> None:
        if self.calibration not in CALIBRATION_MODES:
            raise UserError(
                f"--calibration {self.calibration}: choose one of {', '.join(CALIBRATION_MODES)} "
                f"(fitting one is its own step: {CALIBRATE_HINT})"
            )
        if self.top_k < 0 or self.batch_size < 1 or self.ece_bins < 1:
            raise UserError("--top-k must be >= 0, --batch-size and --ece-bins >= 1")

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out is not None else Path(self.run) / "eval"


# ----------------------------------------------------------------------------------- calibration


def refuse_fitted_rows(predictor: Predictor, cfg: EvalConfig, has_splits: bool) -> None:
    """A user error when the stored calibration was fitted on rows this evaluation would score."""
    record = predictor.config.get("calibration") or {}
    if cfg.calibration != "keep" or not record.get("data") or not record.get("fitted_on"):
        return
    same_data = Path(record["data"]).resolve() == Path(cfg.data).resolve()
    if same_data and (not has_splits or cfg.split in (ALL_SPLITS, record["fitted_on"])):
        raise UserError(
            f"the run's calibration was fitted on split {record['fitted_on']!r} of {cfg.data}, which "
            f"--split {cfg.split} includes: scoring those rows flatters the numbers; pick another split "
            "or add --calibration none"
        )


def applied_calibration(predictor: Predictor, mode: str) -> tuple[Predictor, dict[str, Any]]:
    """The predictor to score with and the ``calibration`` entry of the report describing it."""
    stored = dict(predictor.config.get("calibration") or {})
    if mode == "none" or not stored:
        plain = predictor.with_calibration(None)
        return plain, {
            "mode": mode,
            "stored": bool(stored),
            "temperature": 1.0,
            "threshold": None,
            "positive_class": plain.positive_class,
        }
    return predictor, {
        **stored,
        "mode": "keep",
        "stored": True,
        "temperature": predictor.temperature,
        "threshold": predictor.threshold,
        "positive_class": predictor.positive_class,
    }


# ------------------------------------------------------------------------------------ evaluation


def score_decisions(predictor: Predictor, scored: Scored, ece_bins: int) -> dict[str, Any]:
    """Calibrated probabilities, decisions and metrics of the scored rows, and the uncalibrated metrics."""
    names = predictor.class_names
    pos = names.index(predictor.positive_class)
    proba = softmax(scored.logits, predictor.temperature)
    decided = np.array([names.index(predictor.decide(row)[0]) for row in proba], dtype=int)
    raw = softmax(scored.logits, 1.0)
    return {
        "proba": proba,
        "decided": decided,
        "raw": raw,
        "metrics": classification_metrics(scored.y, decided, proba, names, pos, ece_bins),
        "uncalibrated": classification_metrics(scored.y, raw.argmax(axis=1), raw, names, pos, ece_bins),
    }


def write_outputs(
    cfg: EvalConfig, predictor: Predictor, scored: Scored, result: dict[str, Any], has_splits: bool
) -> dict[str, pd.DataFrame]:
    """Every file but ``report.json``; returns the tables the report repeats."""
    from posture.evaluation import plots

    names, out, proba = predictor.class_names, cfg.out_dir, result["proba"]
    pos = names.index(predictor.positive_class)
    out.mkdir(parents=True, exist_ok=True)
    predictions = predictions_frame(scored, names, proba, result["decided"], has_splits)
    atomic_write_csv(out / PREDICTIONS_NAME, predictions)
    counts = np.asarray(result["metrics"]["confusion_matrix"])
    atomic_write_csv(out / "confusion_matrix.csv", confusion_frame(counts, names))
    plots.plot_confusion_matrix(
        counts,
        names,
        out / "confusion_matrix.png",
        title=f"{Path(cfg.run).name} on {Path(cfg.data).name} [{cfg.split}]",
    )
    plots.plot_roc(scored.y, proba, names, out / "roc_curve.png", pos, predictor.threshold)
    plots.plot_precision_recall(scored.y, proba, names, out / "pr_curve.png", pos)
    tables = {"uncalibrated": reliability_bins(scored.y, result["raw"], cfg.ece_bins)}
    eces = {"uncalibrated": result["uncalibrated"]["ece"]}
    if predictor.temperature != 1.0:
        tables[f"T={predictor.temperature:.2f}"] = reliability_bins(scored.y, proba, cfg.ece_bins)
        eces[f"T={predictor.temperature:.2f}"] = result["metrics"]["ece"]
    plots.plot_reliability(tables, out / "reliability.png", eces)
    groups = {key: group_breakdown(predictions, key) for key in ("subject", "source")}
    for key, table in groups.items():
        atomic_write_csv(out / f"by_{key}.csv", table)
    top = top_losses(predictions, cfg.top_k)
    plots.plot_gallery(
        gallery_items(predictor, Path(cfg.data), top, cfg.gradcam),
        out / "top_losses.png",
        title=(
            "most confidently wrong" if (top["label"] != top["predicted"]).any() else "highest-loss images (none wrong)"
        )
        + _gallery_note(predictor, cfg.gradcam),
    )
    return {**groups, "top": top}


def build_report(
    cfg: EvalConfig,
    predictor: Predictor,
    rows: pd.DataFrame,
    scored: Scored,
    result: dict[str, Any],
    tables: dict[str, pd.DataFrame],
    applied: dict[str, Any],
    has_splits: bool,
) -> dict[str, Any]:
    """``report.json``: the scored rows' :class:`~posture.evaluation.metrics.SplitMetrics` and their context."""
    metrics: SplitMetrics = result["metrics"]
    return {
        "run": str(cfg.run),
        "architecture": predictor.config.get("architecture"),
        "backend": predictor.backend_name,
        "data": str(cfg.data),
        "split": cfg.split if has_splits and cfg.split != ALL_SPLITS else "(all rows)",
        "trained_on": predictor.config.get("trained_on"),
        "data_provenance": describe_rows(rows, Path(cfg.data).resolve().name),
        "classes": predictor.class_names,
        "positive_class": predictor.positive_class,
        "n_skipped": len(scored.skipped),
        "skipped": scored.skipped,
        "coverage": scored.coverage,
        "n_not_assessed": len(scored.not_assessed),
        "not_assessed": scored.not_assessed,
        "calibration": applied,
        **metrics,
        "uncalibrated": result["uncalibrated"],
        "by_subject": tables["subject"].to_dict(orient="records"),
        "by_source": tables["source"].to_dict(orient="records"),
        "top_losses": tables["top"][["path", "label", "predicted", "confidence", "loss"]].to_dict(orient="records"),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Score the run on the data and write every file; returns the report (also ``report.json``).

    Reads the run only: nothing in its folder but ``cfg.out_dir`` is written.
    """
    from posture.runtime.device import resolve_device

    predictor = Predictor.from_run(cfg.run, backend=cfg.backend, device=resolve_device(cfg.device))
    check_writable_output(cfg.out_dir, f"--out {cfg.out}" if cfg.out is not None else str(cfg.out_dir))
    frame, has_splits = load_eval_frame(cfg.data, predictor.class_names)
    rows = select_split(frame, has_splits, cfg.split)
    refuse_fitted_rows(predictor, cfg, has_splits)
    predictor, applied = applied_calibration(predictor, cfg.calibration)
    scored = score_rows(predictor, Path(cfg.data), rows, cfg.batch_size, desc=f"scoring {cfg.split}")
    if len(scored.y) == 0:
        what = "read" if not scored.not_assessed else "assessed (no person, or head and shoulders not visible)"
        raise UserError(f"none of the {len(rows)} images in {cfg.data} could be {what}")
    result = score_decisions(predictor, scored, cfg.ece_bins)
    tables = write_outputs(cfg, predictor, scored, result, has_splits)
    report = build_report(cfg, predictor, rows, scored, result, tables, applied, has_splits)
    atomic_write_json(cfg.out_dir / REPORT_NAME, report)
    return report


def predictions_frame(
    scored: Scored, names: Sequence[str], proba: np.ndarray, decided: np.ndarray, has_splits: bool
) -> pd.DataFrame:
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
    from posture.evaluation.plots import GalleryItem
    from posture.inference.cam import explain
    from posture.pose.drawing import draw_landmarks

    items = []
    for row in top.itertuples(index=False):
        path, predicted = str(row.path), str(row.predicted)
        image = load_rgb_array(root / path, max_side=MODEL_MAX_SIDE)  # the pixels the answer was read from
        overlay = None
        if predictor.uses_pose and not predictor.uses_image:
            overlay = draw_landmarks(image, predictor.analyse(image).landmarks, max_side=max(image.shape[:2]))
        elif gradcam:
            try:
                overlay = explain(predictor, image, class_index=predictor.class_names.index(predicted))
            except Exception as exc:  # a CAM failure must not cost the whole evaluation
                log.warning("Grad-CAM failed for %s: %s", path, exc)
        caption = f"{Path(path).name[:40]}\ntrue {row.label} · pred {predicted} ({row.confidence:.2f})"
        items.append(GalleryItem(image, overlay, caption))
    return items


# --------------------------------------------------------------------------------------- summary


def _fmt(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _calibration_line(report: dict[str, Any]) -> str:
    cal = report["calibration"]
    threshold = cal.get("threshold")
    if cal["mode"] == "none" or not cal.get("stored"):
        why = "--calibration none" if cal["mode"] == "none" else f"the run stores none; fit one: {CALIBRATE_HINT}"
        return f"calibration: none ({why}): temperature 1, argmax"
    return (
        f"calibration (the run's stored one): temperature {cal['temperature']:.3f}, threshold "
        f"{'argmax' if threshold is None else f'{threshold:.3f}'} for {report['positive_class']}"
        + (f" ({cal.get('policy')}, fitted on {cal.get('fitted_on')} n={cal.get('n')})" if cal.get("policy") else "")
    )


def format_summary(report: dict[str, Any]) -> str:
    """The table printed after an evaluation: what was scored, the headline numbers, per class,
    confusion, worst groups."""
    unc = report["uncalibrated"]
    lines = [
        f"{report['run']} ({report['architecture']}, {report.get('backend', 'torch')}) on {report['data']} "
        f"[{report['split']}]: "
        f"{report['n']} images"
        + (f", {report['n_skipped']} unreadable (skipped)" if report["n_skipped"] else "")
        + (
            f"; coverage {report['coverage']:.1%}: {report['n_not_assessed']} photo(s) could not be assessed, "
            "the scores below are on the assessed ones"
            if report.get("n_not_assessed")
            else ""
        ),
        f"trained on: {describe_words(report.get('trained_on'), 'train')}",
        f"scored on: {describe_words(report.get('data_provenance'))}",
        _calibration_line(report),
        "",
        f"{'metric':<20}{'calibrated':>12}{'uncalibrated':>14}",
    ]
    for key, label in (
        ("accuracy", "accuracy"),
        ("balanced_accuracy", "balanced accuracy"),
        ("roc_auc", "ROC AUC"),
        ("average_precision", "average precision"),
        ("log_loss", "log loss"),
        ("ece", f"ECE ({report['ece_bins']} bins)"),
    ):
        lines.append(f"{label:<20}{_fmt(report[key]):>12}{_fmt(unc[key]):>14}")
    lines += ["", f"{'class':<16}{'precision':>10}{'recall':>8}{'f1':>8}{'support':>9}"]
    for name, row in report["per_class"].items():
        lines.append(f"{name:<16}{row['precision']:>10.3f}{row['recall']:>8.3f}{row['f1']:>8.3f}{row['support']:>9}")
    names = report["classes"]
    width = max(12, *(len(n) + 2 for n in names))
    lines += [
        "",
        "confusion matrix (rows: true, columns: predicted)",
        " " * width + "".join(f"{n:>{width}}" for n in names),
    ]
    for name, row in zip(names, report["confusion_matrix"], strict=True):
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


def _kind(record: dict[str, Any] | None) -> str:
    return str((record or {}).get("kind", "not recorded"))


_COMPARE_HEADER = (
    "run",
    "model",
    "trained on",
    "data",
    "scored",
    "n",
    "accuracy",
    "balanced acc.",
    "ROC AUC",
    "ECE",
    "params (M)",
    "latency (ms/img)",
    "backend",
)


def compare_runs(
    runs: Sequence[str | os.PathLike[str]],
    n_images: int = 8,
    repeats: int = 3,
    device: str = "cpu",
    backend: str = "auto",
) -> str:
    """A markdown table of evaluated runs side by side (each needs ``eval/report.json``)."""
    header = " | ".join(_COMPARE_HEADER)
    lines = [f"| {header} |", "|" + "---|" * 5 + "---:|" * (len(_COMPARE_HEADER) - 6) + "---|"]
    for run in map(Path, runs):
        lines.append("| " + " | ".join(_compare_row(run, n_images, repeats, device, backend)) + " |")
    lines.append("")
    lines.append(
        f"Latency: median of single-image `Predictor.predict` calls on {device} over up to "
        f"{n_images} evaluated images x {repeats} repeats, after one warm-up call; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (busy machines inflate it; compare rows, "
        "not machines). 'trained on' and 'scored': synthetic pictures or real photos (posture.evaluation.provenance)."
    )
    return "\n".join(lines) + "\n"


def _compare_row(run: Path, n_images: int, repeats: int, device: str, backend: str) -> list[str]:
    """One run's cells of :func:`compare_runs`: its stored scores beside a latency measured now, on
    this machine, so the rows of one table are timed alike whenever each run was evaluated."""
    path = run / "eval" / REPORT_NAME
    if not path.is_file():
        raise UserError(
            f"{run}: not evaluated yet (no eval/{REPORT_NAME}); run "
            f"`python -m posture.evaluate --run {run} --data DATA` first"
        )
    report = read_json(path)
    predictor = Predictor.from_run(run, backend=backend, device=device)
    params = sum(p.numel() for p in predictor.model.parameters()) / 1e6 if predictor.model is not None else None
    latency = measure_latency(predictor, _latency_images(report, run, n_images), repeats)
    return [
        run.name,
        str(report.get("architecture")),
        _kind(predictor.config.get("trained_on")),
        f"{Path(report['data']).name} [{report['split']}]",
        _kind(report.get("data_provenance")),
        str(report["n"]),
        _fmt(report["accuracy"]),
        _fmt(report["balanced_accuracy"]),
        _fmt(report["roc_auc"]),
        _fmt(report["ece"]),
        _fmt(params, 2),
        _fmt(latency, 1),
        predictor.backend_name,
    ]


# ------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m posture.evaluate",
        description="Evaluate a trained run on a dataset: confusion matrix, metrics (accuracy, balanced "
        "accuracy, per-class P/R/F1, ROC AUC, AP, log loss, ECE), ROC/PR curves, reliability "
        "diagram, top losses with Grad-CAM, per-subject/per-source accuracy, and what the run was "
        "trained on and the data is (synthetic pictures or real photos). Only reads the run: it "
        "scores with the run's stored calibration (fit one first with python -m posture.calibrate). "
        "Or compare evaluated runs side by side with --compare.",
        epilog="examples:\n  python -m posture.calibrate --run models/sample --data data/sample\n"
        "  python -m posture.evaluate --run models/sample --data data/sample\n"
        "  python -m posture.evaluate --run models/sample --data ../shared/data/real --out models/sample/eval_real\n"
        "  python -m posture.evaluate --compare models/a models/b --out compare.md",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(parser, EvalConfig)
    parser.add_argument("--compare", nargs="+", metavar="RUN", help="compare evaluated runs in one markdown table")
    parser.add_argument(
        "--latency-images", type=int, default=8, help="images timed per run with --compare (default: 8)"
    )
    add_logging_flags(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    if args.compare:
        from posture.runtime.device import resolve_device

        if args.out:  # a file: checked before every run is timed, not after
            check_writable_file(args.out, f"--out {args.out}")
        table = compare_runs(
            args.compare, n_images=args.latency_images, device=str(resolve_device(args.device)), backend=args.backend
        )
        if args.out:
            atomic_write_text(args.out, table)
            log.info("wrote %s", args.out)
        print(table, end="")
        return 0
    if args.run is None or args.data is None:
        raise UserError("give --run RUN and --data DATA (or --compare RUN [RUN ...])")
    cfg = config_from_args(EvalConfig, args)
    report = evaluate(cfg)
    print(format_summary(report))
    print(
        f"\nwrote {cfg.out_dir}/ (report.json, predictions.csv, confusion_matrix.csv|png, roc_curve.png, "
        "pr_curve.png, reliability.png, top_losses.png, by_subject.csv, by_source.csv)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
