"""The model card under the demo: what answers, what it learnt from, and how well it does on real photos.

Why it is careful: the demo's default run learns from ``posture.synth`` pictures only. Its score on
held-out synthetic pictures says little about a visitor's photo, so the card never headlines it:

* When an evaluation on **real photos** exists for the run, that score is the headline (balanced
  accuracy, coverage, per source, on which data set, how many photos and people). The card looks
  in every ``RUN/eval*/report.json`` (``posture.evaluate`` writes ``RUN/eval/`` by default, and
  ``--out RUN/eval_real`` keeps a second evaluation beside it; ``bench/evaluate_real.py`` writes
  ``RUN/eval_real/``). Reports live inside the run folder, so retraining, which replaces the
  folder, takes them away with the model they described. A report counts as real when its
  ``data_provenance`` says so (:mod:`posture.evaluation.provenance`).
* Without one, a run trained on synthetic pictures says so plainly: "trained on synthetic
  pictures; accuracy on real photos not measured". A run trained on real photos headlines its
  held-out test split, which holds people absent from training (ingest splits by subject).
* Synthetic scores may appear only as a secondary line that names them synthetic.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.safe_text import markdown_text as md
from posture.evaluation.metrics import MetricsFormatError, SplitMetrics, split_metrics_from
from posture.evaluation.provenance import describe_words
from posture.inference.predict import Predictor
from posture.io.fileio import DamagedFileError, read_json
from posture.runs.checkpoint import read_metrics

log = logging.getLogger(__name__)

#: Where the card looks for evaluations of a run (relative to the run folder).
EVAL_REPORTS = "eval*/report.json"
#: Real-photo evaluations the card lists (newest first).
MAX_REAL = 3
NOT_MEASURED = "Trained on synthetic pictures; accuracy on real photos not measured."


@dataclass(frozen=True)
class RealScore:
    """One evaluation of the run on real photos, as the card shows it."""

    folder: str
    dataset: str
    split: str
    photos: int
    subjects: int | None
    metrics: SplitMetrics
    coverage: float | None
    by_source: list[dict[str, Any]]
    calibration: dict[str, Any]
    created: str


def real_evaluations(run: Path) -> list[RealScore]:
    """Every ``RUN/eval*/report.json`` that scored real photos, newest first; unreadable or
    unlabelled reports are skipped with a warning (a card without them beats no app)."""
    found = []
    for path in sorted(Path(run).glob(EVAL_REPORTS)):
        try:
            report = read_json(path)
            metrics = split_metrics_from(report, str(path))
        except (DamagedFileError, MetricsFormatError) as exc:
            log.warning("%s; the model card leaves it out", exc)
            continue
        provenance = report.get("data_provenance") if isinstance(report, dict) else None
        if not provenance:
            log.warning(
                "%s does not say what data it scored (written before that was recorded); re-run "
                "posture.evaluate to show it on the model card",
                path,
            )
            continue
        if provenance.get("kind") != "real" or metrics is None:
            continue
        found.append(
            RealScore(
                folder=path.parent.name,
                dataset=str(provenance.get("dataset")),
                split=str(report.get("split")),
                photos=int(provenance.get("photos", 0)),
                subjects=provenance.get("subjects"),
                metrics=metrics,
                coverage=report.get("coverage"),
                by_source=list(report.get("by_source") or []),
                calibration=dict(report.get("calibration") or {}),
                created=str(report.get("created")),
            )
        )
    return sorted(found, key=lambda s: s.created, reverse=True)[:MAX_REAL]


def _pct(value: Any) -> str:
    """A share as a percentage; anything that is not a number (a damaged file) reads "n/a"."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "n/a"
    return f"{value:.1%}"


def _same_calibration(score: RealScore, predictor: Predictor) -> bool:
    threshold = score.calibration.get("threshold")
    return (
        abs(float(score.calibration.get("temperature", 1.0)) - predictor.temperature) < 1e-9
        and (threshold is None) == (predictor.threshold is None)
        and (threshold is None or abs(float(threshold) - float(predictor.threshold or 0.0)) < 1e-9)
    )


def real_score_line(score: RealScore, predictor: Predictor) -> str:
    """``- **On real photos:** balanced accuracy 81.0% on real [test] (203 photos of 12 people) ...``

    The data set's, split's and sources' names come from the data: shown as text (:func:`app.safe_text.markdown_text`).
    """
    people = f" of {md(score.subjects)} {'person' if score.subjects == 1 else 'people'}" if score.subjects else ""
    line = (
        f"- **On real photos:** balanced accuracy **{_pct(score.metrics['balanced_accuracy'])}** on "
        f"{md(score.dataset)} \\[{md(score.split)}\\] ({score.photos} photos{people}; "
        f"{md(score.metrics['n'])} assessed"
        + (f", coverage {_pct(score.coverage)}" if score.coverage is not None else "")
        + ")"
    )
    sources = [g for g in score.by_source if "balanced_accuracy" in g and str(g.get("source")) != "(none)"]
    if len(sources) > 1:
        line += " · by source: " + ", ".join(
            f"{md(g['source'])} {_pct(g['balanced_accuracy'])} (n={md(g['n'])})"
            for g in sorted(sources, key=lambda g: str(g["source"]))
        )
    if not _same_calibration(score, predictor):
        line += " · *scored with another calibration than the one answering now; re-run posture.evaluate*"
    return line


def _held_out(metrics: dict[str, Any], split: str) -> SplitMetrics | None:
    try:
        return split_metrics_from(metrics.get(split), f"metrics.json '{split}'")
    except MetricsFormatError as exc:
        log.warning("%s; the model card leaves those scores out", exc)
        return None


def training_lines(predictor: Predictor, real: list[RealScore]) -> list[str]:
    """The headline when no real-photo evaluation exists, what the run learnt from, and held-out
    scores labelled with the kind of pictures they were measured on."""
    record = predictor.config.get("trained_on")
    kind = (record or {}).get("kind")
    metrics = read_metrics(predictor.run_dir) if predictor.run_dir is not None else {}
    val, test = _held_out(metrics, "val"), _held_out(metrics, "test")
    held = " · ".join(
        f"{name} balanced accuracy {_pct(m['balanced_accuracy'])} (n={m['n']})"
        for name, m in (("validation", val), ("test", test))
        if m is not None
    )
    lines = []
    if not real:
        if kind == "synthetic":
            lines.append(f"- **{NOT_MEASURED}**")
        elif kind == "real" and test is not None:
            lines.append(
                f"- **On held-out real photos** (this data set's test split, people absent from training): "
                f"balanced accuracy **{_pct(test['balanced_accuracy'])}** (n={test['n']})"
            )
        elif kind is None:
            lines.append(
                "- **What this run was trained on is not recorded** (it predates that record); accuracy on "
                "real photos not measured."
            )
        else:
            lines.append("- **Accuracy on real photos not measured.**")
    if record:
        lines.append(f"- **Trained on:** {md(describe_words(record, 'train'))}")
    if held and kind == "synthetic":
        lines.append(f"- *On held-out synthetic pictures, not photos:* {held}")
    elif held and kind in ("real", "mixed"):
        lines.append(f"- *Held-out splits of the training data ({kind}):* {held}")
    return lines


def _reads(predictor: Predictor) -> str:
    """What the model reads, in words; as plain text (the caller escapes it: feature names come from the run)."""
    if predictor.uses_pose and predictor.uses_image:
        return (
            f"its CNN on the head-and-shoulders crop, fused with posture geometry "
            f"({', '.join(predictor.pose_features)}) from BlazePose body landmarks"
        )
    if predictor.uses_pose:
        return f"posture geometry ({', '.join(predictor.pose_features)}) from BlazePose body landmarks"
    pre = predictor.preprocessing
    return (
        f"the photo at {pre.input_size}px ({pre.resize_mode}{', head-and-shoulders crop' if predictor.crops else ''})"
    )


def defaults_line(predictor: Predictor) -> str | None:
    """How the run's options were chosen: the defaults the nested protocol picked (and its score on real
    photos of unseen people), or which of them this run changed."""
    record = predictor.config.get("defaults")
    if not isinstance(record, dict) or not isinstance(record.get("nested"), dict):
        return None
    nested = record["nested"]
    line = (
        f"- **Options:** the defaults, picked by nested leave-one-source-out on real photos of people and cameras "
        f"never seen in training ({md(record.get('pick'))}: balanced accuracy {_pct(nested.get('mean_over_sources'))} "
        f"averaged over sources, {_pct(nested.get('mean_over_people'))} over people)"
    )
    changed = record.get("changed") or []
    if changed:
        line += f"; this run changed {md(', '.join(str(c) for c in changed))}"
    return line


def model_card(predictor: Predictor) -> str:
    """A short markdown card: what answers, on what, how well on real photos, and its decision rule.

    Every value from the run folder or its data (names of the run, classes, features, data sets and
    sources) is shown as text, never as markup (:func:`app.safe_text.markdown_text`).
    """
    run = predictor.run_dir
    real = real_evaluations(run) if run is not None else []
    lines = [
        "### The model",
        (
            f"- **Run:** {md(run.name if run else 'in memory')} · **architecture:** "
            f"{md(predictor.config.get('architecture'))} · **backend:** {md(predictor.backend_name)}"
        ),
        f"- **Classes:** {md(', '.join(predictor.class_names))} · **reads:** {md(_reads(predictor))}",
        *(real_score_line(score, predictor) for score in real),
        *training_lines(predictor, real),
    ]
    options = defaults_line(predictor)
    if options:
        lines.append(options)
    if predictor.threshold is not None:
        lines.append(
            f"- **Decision:** {md(predictor.positive_class)} when its probability ≥ {float(predictor.threshold):.2f}"
            f" (temperature {predictor.temperature:.2f})"
        )
    else:
        lines.append("- **Decision:** the most probable class (no calibrated threshold stored)")
    lines.append(
        "\n*A screening aid, not a diagnosis: the craniovertebral angle measured by a clinician is the reference.*"
    )
    return "\n".join(lines)


__all__ = ["EVAL_REPORTS", "NOT_MEASURED", "RealScore", "model_card", "real_evaluations"]
