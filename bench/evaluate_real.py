"""The demo run on real photos: does a model trained on synthetic pictures work on photographs?

A run (by default ``models/sample``, the README demo: ``posture.synth`` pictures → ingest →
finetune with the default backbone → calibrate) is evaluated through ``posture.evaluate`` on the
real photos in ``../shared/data/real`` (see its SOURCES.md), with the run's *stored* calibration;
nothing is fitted on the real photos. Reported overall and **per source** (a new person, room and
camera each), with 95 % intervals by person: a bootstrap that resamples *subjects* (people), not
photos, because photos of one person are not independent. A source holding one person has no
interval by person (resampling one person gives the same photos back), and the table says so.

The main evaluation is written into the run, ``RUN/eval_real/`` (the app's model card headlines
it; retraining the run removes it with the model it described). ``--dedup`` also evaluates the
folder after ``posture.ingest`` dropped near-duplicate video frames (the honest count of distinct
pictures), under ``--work``. Writes ``bench/results/eval_real.json|md`` and
``bench/results/eval_real_confusion_matrix.png``.

    python -m bench.evaluate_real                       # models/sample on ../shared/data/real
    python -m bench.evaluate_real --run models/other --bootstrap 2000 --dedup
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.common import RESULTS, machine, write_results
from posture.evaluation.provenance import describe_words
from posture.inference.evaluate import EvalConfig, evaluate
from posture.io.formats import CONFIG_NAME, MANIFEST_NAME, WEIGHTS_NAME
from posture.runs.checkpoint import read_config

log = logging.getLogger("bench.evaluate_real")
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REAL = ROOT.parent / "shared" / "data" / "real"
#: Where the main evaluation goes inside the run (the model card reads RUN/eval*/report.json).
RUN_EVAL_DIR = "eval_real"
#: What issue 25 asks of the demo run (synthetic pictures only) on all the real photos (issue 15 asked 0.80 / 0.70).
TARGET_OVERALL, TARGET_PER_SOURCE = 0.92, 0.80


def ingest_real(real: Path, out: Path) -> tuple[Path | None, str]:
    """Ingest the real folder with its own manifest as the labels CSV (keeps subject and source)."""
    cmd = [sys.executable, "-m", "posture.ingest", str(real), "--out", str(out), "--no-progress", "-q", "--overwrite"]
    if (real / MANIFEST_NAME).is_file():
        cmd[4:4] = ["--labels", str(real / MANIFEST_NAME)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not (out / MANIFEST_NAME).is_file():
        return None, (proc.stderr.strip().splitlines() or ["ingest failed"])[-1]
    return out, " ".join(cmd[1:]).replace(str(real), "REAL").replace(str(out), "TMP")


def balanced_accuracy(frame: pd.DataFrame) -> float | None:
    """Mean recall over the classes present (``label`` vs ``predicted``); None without rows."""
    if frame.empty:
        return None
    correct = frame["label"] == frame["predicted"]
    return float(np.mean([correct[frame["label"] == c].mean() for c in sorted(frame["label"].unique())]))


def subject_bootstrap(predictions: pd.DataFrame, n_boot: int, seed: int = 0) -> dict[str, Any]:
    """95 % intervals for accuracy and balanced accuracy, resampling subjects with replacement.

    ``None`` intervals when fewer than two people: resampling one person gives the same photos back.
    """
    groups = predictions["subject"].fillna(predictions["path"]).astype(str)
    by_group = [frame for _, frame in predictions.groupby(groups)]
    if len(by_group) < 2:
        return {"accuracy": None, "balanced_accuracy": None, "subjects": len(by_group)}
    rng = np.random.default_rng(seed)
    accs: list[float] = []
    baccs: list[float] = []
    for _ in range(n_boot):
        sample = pd.concat([by_group[i] for i in rng.integers(0, len(by_group), len(by_group))])
        accs.append(float((sample["label"] == sample["predicted"]).mean()))
        bacc = balanced_accuracy(sample)  # never None: a resample of two or more groups has rows
        if bacc is not None:
            baccs.append(bacc)

    def interval(values: list[float]) -> list[float]:
        return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]

    return {"accuracy": interval(accs), "balanced_accuracy": interval(baccs), "subjects": len(by_group)}


def roc_auc(frame: pd.DataFrame, positive: str) -> float | None:
    """ROC AUC of ``p_<positive>`` (whether the ranking carries over, whatever the threshold); None with one class."""
    from sklearn.metrics import roc_auc_score

    if frame["label"].nunique() < 2:
        return None
    return float(roc_auc_score(frame["label"] == positive, frame[f"p_{positive}"]))


def per_source(
    predictions: pd.DataFrame, not_assessed: list[dict[str, Any]], sources: pd.Series, n_boot: int, positive: str
) -> list[dict[str, Any]]:
    """One row per source: photos, people, coverage, balanced accuracy with its interval by person, ROC AUC."""
    unassessed = pd.Series([sources.get(r["path"], "(none)") for r in not_assessed], dtype=object)
    rows = []
    for name in sorted(set(predictions["source"].fillna("(none)")) | set(unassessed)):
        part = predictions[predictions["source"].fillna("(none)") == name]
        missed = int((unassessed == name).sum()) if len(unassessed) else 0
        boot = subject_bootstrap(part, n_boot) if len(part) else {"balanced_accuracy": None, "subjects": 0}
        counts = pd.crosstab(part["label"], part["predicted"]) if len(part) else pd.DataFrame()
        rows.append(
            {
                "source": name,
                "n": len(part),
                "not_assessed": missed,
                "coverage": len(part) / (len(part) + missed) if len(part) + missed else None,
                "subjects": part["subject"].nunique() if len(part) else 0,
                "accuracy": float((part["label"] == part["predicted"]).mean()) if len(part) else None,
                "balanced_accuracy": balanced_accuracy(part),
                "interval": boot["balanced_accuracy"],
                "roc_auc": roc_auc(part, positive) if len(part) else None,
                "labels": " ".join(f"{k}:{v}" for k, v in part["label"].value_counts().sort_index().items()),
                "confusion": {str(t): {str(p): int(v) for p, v in row.items()} for t, row in counts.iterrows()},
            }
        )
    return rows


def target_met(overall: float | None, per_source: list[float | None]) -> bool:
    """Issue 25's bar: balanced accuracy >= TARGET_OVERALL overall and >= TARGET_PER_SOURCE on every source."""
    scored = [b for b in per_source if b is not None]
    return overall is not None and overall >= TARGET_OVERALL and bool(scored) and min(scored) >= TARGET_PER_SOURCE


def meets_target_at(predictions: pd.DataFrame, positive: str, threshold: float) -> bool:
    """Whether the target holds when ``positive`` is predicted at ``p_<positive> >= threshold``."""
    negative = next((c for c in sorted(predictions["label"].unique()) if c != positive), positive)
    moved = predictions.assign(predicted=np.where(predictions[f"p_{positive}"] >= threshold, positive, negative))
    by_source = moved.groupby(moved["source"].fillna("(none)"))
    return target_met(balanced_accuracy(moved), [balanced_accuracy(part) for _, part in by_source])


def target_window(predictions: pd.DataFrame, positive: str, threshold: float | None) -> dict[str, Any]:
    """How far the run's decision threshold could move before the target is lost.

    A model trained on synthetic pictures alone places its threshold from synthetic geometry, and
    the real sources sit at different offsets: the target can hold only for thresholds inside a
    band. Reporting that band beside the verdict says whether "met" is robust or a near miss:
    ``low``/``high`` bound the thresholds on ``p_<positive>`` (predict positive at ``p >= t``) that
    meet it, ``None`` when none does; ``holds`` is whether the run's own threshold (0.5 for
    argmax) is inside.
    """
    frame = predictions[predictions[f"p_{positive}"].notna()]
    used = 0.5 if threshold is None else float(threshold)
    scores = np.sort(frame[f"p_{positive}"].to_numpy(dtype=float))
    # one candidate per distinct outcome: midpoints between neighbouring scores, plus both ends
    candidates = np.unique(np.concatenate([[0.0], (scores[1:] + scores[:-1]) / 2, [np.nextafter(1.0, 2.0)], [used]]))
    ok = [meets_target_at(frame, positive, float(t)) for t in candidates]
    bands, start = [], None
    for i, good in enumerate([*ok, False]):
        if good and start is None:
            start = i
        elif not good and start is not None:
            bands.append((float(candidates[start]), float(candidates[i - 1])))
            start = None
    if not bands:
        return {"threshold": used, "low": None, "high": None, "holds": False}
    # the band around the run's threshold when it holds there, else the widest one
    band = next((b for b in bands if b[0] <= used <= b[1]), max(bands, key=lambda b: b[1] - b[0]))
    return {"threshold": used, "low": band[0], "high": min(band[1], 1.0), "holds": band[0] <= used <= band[1]}


def run_variant(name: str, run: Path, data: Path, out: Path, top_k: int, n_boot: int) -> dict[str, Any]:
    """One ``posture.evaluate`` of every row of ``data`` with the run's stored calibration, plus intervals."""
    start = time.perf_counter()
    report = evaluate(EvalConfig(run=run, data=data, split="all", out=out, calibration="keep", top_k=top_k))
    seconds = time.perf_counter() - start
    predictions = pd.read_csv(out / "predictions.csv", dtype={"subject": str, "source": str, "path": str})
    manifest = pd.read_csv(data / "manifest.csv", dtype={"path": str, "source": str})
    sources = manifest.set_index("path")["source"] if "source" in manifest.columns else pd.Series(dtype=object)
    majority = predictions["label"].value_counts(normalize=True)
    by_source = per_source(predictions, report["not_assessed"], sources, n_boot, report["positive_class"])
    scored = [s["balanced_accuracy"] for s in by_source if s["balanced_accuracy"] is not None]
    return {
        "name": name,
        "data": shown(data),
        "eval_dir": shown(out),
        "seconds": round(seconds, 1),
        "n": report["n"],
        "n_not_assessed": report["n_not_assessed"],
        "coverage": report["coverage"],
        "n_skipped": report["n_skipped"],
        "classes": report["classes"],
        "positive_class": report["positive_class"],
        "provenance": report["data_provenance"],
        **{
            k: report[k]
            for k in (
                "accuracy",
                "balanced_accuracy",
                "roc_auc",
                "average_precision",
                "log_loss",
                "ece",
                "per_class",
                "confusion_matrix",
                "calibration",
            )
        },
        "uncalibrated": {k: report["uncalibrated"][k] for k in ("accuracy", "balanced_accuracy", "roc_auc")},
        "majority_class": majority.index[0],
        "majority_baseline_accuracy": float(majority.iloc[0]),
        "bootstrap_by_subject": subject_bootstrap(predictions, n_boot),
        "by_source": by_source,
        "mean_source_balanced_accuracy": float(np.mean(scored)) if scored else None,
        "target_window": target_window(predictions, report["positive_class"], report["calibration"].get("threshold")),
    }


def shown(path: Path) -> str:
    """A path as the results show it: relative to the repository when it is beside it, else absolute."""
    full = Path(path).resolve()
    return os.path.relpath(full, ROOT) if full.is_relative_to(ROOT.parent) else str(full)


def _f(value: Any, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ci(values: list[float] | None, subjects: int) -> str:
    if values:
        return f" [{values[0]:.2f}, {values[1]:.2f}]"
    return " (1 person: no interval by person)" if subjects == 1 else ""


def target_verdict(v: dict[str, Any]) -> str:
    """Issue 15's bar for the demo run, met or not, in one sentence."""
    worst = min(
        (s for s in v["by_source"] if s["balanced_accuracy"] is not None),
        key=lambda s: s["balanced_accuracy"],
        default=None,
    )
    met = target_met(v["balanced_accuracy"], [s["balanced_accuracy"] for s in v["by_source"]])
    return (
        f"Target (balanced accuracy >= {TARGET_OVERALL:.2f} overall and >= {TARGET_PER_SOURCE:.2f} on every "
        f"source): **{'met' if met else 'not met'}** (overall "
        f"{_f(v['balanced_accuracy'])}, worst source {worst['source'] if worst else 'n/a'} "
        f"{_f(worst['balanced_accuracy'] if worst else None)})"
    )


def window_sentence(window: dict[str, Any], positive: str) -> str:
    """The target's threshold band in words: is "met" robust or a near miss?"""
    used = f"the run's threshold on p({positive}) is {window['threshold']:.3f}"
    if window["low"] is None:
        return f"No decision threshold meets the target ({used}): the sources need different ones."
    band = f"{window['low']:.3f}–{window['high']:.3f}"
    if window["holds"]:
        return f"The target holds for thresholds {band}; {used}."
    return f"The target would hold for thresholds {band}, but {used}."


def variant_lines(v: dict[str, Any]) -> list[str]:
    """The overall row, the per-source table and the confusion matrix of one evaluation."""
    boot = v["bootstrap_by_subject"]
    names = v["classes"]
    overall = (
        f"| all sources | {v['n']} | {_f(v['balanced_accuracy'])}"
        f"{_ci(boot['balanced_accuracy'], boot['subjects'])} | {_f(v['accuracy'])}"
        f"{_ci(boot['accuracy'], boot['subjects'])} | {_f(v['roc_auc'], 3)} | "
        f"{_f(v['uncalibrated']['balanced_accuracy'])} | {_f(v['majority_baseline_accuracy'])} "
        f"({v['majority_class']}) |"
    )
    scored = f"Scored: {describe_words(v['provenance'])}; {v['n']} assessed, coverage {_f(v['coverage'], 3)}."
    lines = [
        f"## {v['name']}",
        "",
        f"{scored} {target_verdict(v)}. {window_sentence(v['target_window'], v['positive_class'])}",
        "",
        (
            "| | n | balanced acc. [95% CI by person] | accuracy [95% CI] | ROC AUC | uncalibrated bal. acc. | "
            "majority baseline |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|",
        overall,
        "",
        f"Mean over sources: balanced accuracy {_f(v['mean_source_balanced_accuracy'])}.",
        "",
        (
            "| source | photos assessed | not assessed | people | balanced acc. [95% CI by person] | accuracy | "
            "ROC AUC | labels |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in v["by_source"]:
        lines.append(
            f"| {s['source']} | {s['n']} | {s['not_assessed']} | {s['subjects']} | "
            f"{_f(s['balanced_accuracy'])}{_ci(s['interval'], s['subjects'])} | {_f(s['accuracy'])} | "
            f"{_f(s['roc_auc'], 3)} | "
            f"{s['labels']} |"
        )
    lines += [
        "",
        "Confusion matrix (rows true, columns predicted):",
        "",
        "| true \\ predicted | " + " | ".join(names) + " | recall |",
        "|---|" + "---:|" * (len(names) + 1),
    ]
    for name, row in zip(names, v["confusion_matrix"], strict=True):
        lines.append(f"| {name} | " + " | ".join(str(c) for c in row) + f" | {v['per_class'][name]['recall']:.2f} |")
    return lines + [""]


def markdown(payload: dict[str, Any]) -> str:
    cal = payload["calibration"]
    threshold = cal.get("threshold")
    fitted = (
        f", {cal.get('policy')} fitted on {cal.get('fitted_on')} of `{Path(str(cal.get('data'))).name}`"
        if cal.get("policy")
        else ""
    )
    intro = (
        f"Run `{payload['run']}` ({payload['architecture']}), trained on {payload['trained_on_words']} "
        f"(`{payload['trained_on']}`), evaluated with `posture.evaluate` on `{payload['real']}` using the run's "
        f"stored calibration (temperature {_f(cal.get('temperature'), 3)}, threshold "
        f"{'argmax' if threshold is None else _f(threshold, 3)}{fitted}); nothing was fitted on the real photos. "
        "Scores are on the photos the run could assess, with coverage beside them; intervals are 95 % "
        f"bootstraps over people ({payload['bootstrap']} resamples), not photos."
    )
    lines = ["# The demo run on real photos", "", intro, ""]
    if payload["overlap"]:
        lines += [
            (
                f"**Caution:** the run was trained on photos of these sources too "
                f"({', '.join(payload['overlap'])}): these are not new people."
            ),
            "",
        ]
    for v in payload["variants"]:
        lines += variant_lines(v)
    timing = ", ".join(f"{v['seconds']} s ({v['name']})" for v in payload["variants"])
    lines += [
        "![confusion matrix](eval_real_confusion_matrix.png)",
        "",
        "## Reading these numbers",
        "",
        (
            "- Each source is one capture setting (camera, room, viewpoint) and most hold one person, so the "
            "per-source rows are what a new user sees; the pooled interval resamples the people of all sources."
        ),
        (
            "- The threshold band: a run trained on synthetic pictures places its decision threshold from "
            "synthetic geometry, and each real source sits at its own offset, so the target holds only for "
            "thresholds inside a band. A narrow band means the verdict is fragile: another generator seed or "
            "version can move the run's threshold out of it while the ranking (ROC AUC) stays as good."
        ),
        (
            f"- The main evaluation is kept in the run (`{payload['run_eval_dir']}`), where the app's model card "
            "shows it."
        ),
        "",
        (
            f"Machine: {payload['machine']['cpu_count']} cores, load average "
            f"{payload['machine']['load_average_at_start'][0]:.1f} at start; evaluation took {timing}."
        ),
    ]
    if payload.get("ingest"):
        lines.append(f"Ingest (near-duplicates): `{payload['ingest']}`.")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, default=ROOT / "models" / "sample")
    parser.add_argument("--real", type=Path, default=DEFAULT_REAL)
    parser.add_argument("--work", type=Path, default=None, help="where --dedup's folders go (default: a tmp dir)")
    parser.add_argument(
        "--dedup", action="store_true", help="also evaluate after posture.ingest dropped near-duplicate frames"
    )
    parser.add_argument("--top-k", type=int, default=12)
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--name", default="eval_real", help="results file stem (default eval_real)")
    return parser


def payload_for(
    run: Path,
    real: Path,
    config: dict[str, Any],
    variants: list[dict[str, Any]],
    ingest: str | None,
    info: dict[str, Any],
    n_boot: int,
) -> dict[str, Any]:
    trained = config.get("trained_on") or {}
    real_sources = {s["source"] for s in variants[0]["by_source"]}
    overlap = sorted(real_sources & {s["name"] for s in trained.get("sources", []) if not s.get("synthetic")})
    return {
        "run": shown(run),
        "architecture": config.get("architecture"),
        "trained_on": str((config.get("training") or {}).get("data")),
        "trained_on_words": describe_words(trained or None, "train"),
        "trained_on_record": trained or None,
        "overlap": overlap,
        "real": shown(real),
        "calibration": config.get("calibration") or {},
        "ingest": ingest,
        "variants": variants,
        "run_eval_dir": f"{shown(run / RUN_EVAL_DIR)}/",
        "bootstrap": n_boot,
        "machine": info,
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not (args.real / "manifest.csv").is_file():
        print(f"skipped: no real photos (manifest.csv) at {args.real}")
        return 0
    if not (args.run / CONFIG_NAME).is_file():
        print(f"skipped: no trained run at {args.run} (the README demo command makes models/sample)")
        return 0
    weights = args.run / WEIGHTS_NAME
    stamp = (weights.stat().st_mtime_ns, weights.stat().st_size)
    info, config = machine(), read_config(args.run)
    variants = [run_variant("all photos", args.run, args.real, args.run / RUN_EVAL_DIR, args.top_k, args.bootstrap)]
    ingest_note = None
    if args.dedup:
        work = args.work or Path(tempfile.mkdtemp(prefix="posture_eval_real_"))
        ingested, ingest_note = ingest_real(args.real, work / "ingested_data")
        if ingested is not None:
            variants.append(
                run_variant(
                    "near-duplicate frames removed", args.run, ingested, work / "eval_dedup", args.top_k, args.bootstrap
                )
            )
        else:
            log.warning("ingest failed (%s); only the folder as it is was evaluated", ingest_note)
    if (weights.stat().st_mtime_ns, weights.stat().st_size) != stamp or read_config(args.run) != config:
        print(f"error: {args.run} changed while it was being evaluated (retrained?); run the benchmark again")
        return 1
    payload = payload_for(args.run, args.real, config, variants, ingest_note, info, args.bootstrap)
    RESULTS.mkdir(parents=True, exist_ok=True)
    figure = RESULTS / f"{args.name}_confusion_matrix.png"
    shutil.copyfile(args.run / RUN_EVAL_DIR / "confusion_matrix.png", figure)
    jpath, mpath = write_results(args.name, payload, markdown(payload))
    print(mpath.read_text())
    print(f"wrote {jpath}, {mpath}, {figure}; the evaluation stays in {variants[0]['eval_dir']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
