"""Real photos of people the model never saw: nested leave-one-source-out, a protocol that cannot fool itself.

Why nested: ``../shared/data/real`` holds a few capture sources (SOURCES.md), several of them one
person each. Choosing the defaults by the same leave-one-source-out folds that then score them
measured the choice, not the product (0.93 on four sources, 0.66 on seventy other people). Here
every choice the defaults make is made by the product's own procedure (:mod:`posture.training.selection`:
each candidate trained with ``posture.finetune`` and answered by the ``Predictor``) *inside* each
outer fold, from its training sources alone (inner leave-one-source-out); the held-out source only
scores. The defaults that ship are the same procedure applied to all the sources
(``procedure_on_all``).

Reported per grid of candidates (``geometry``, ``cnn``, ``fusion``, :data:`posture.training.selection.GRIDS`):

* the outer answers' balanced accuracy per source and per view (front / oblique / side, as the
  landmarks say), the mean over sources and the mean over people (every person weighs the same),
  with 95 % intervals by person (a bootstrap over subjects) and the coverage (a photo the run cannot
  assess counts as wrong in the means, and is shown as coverage beside them);
* per outer fold, the candidate the procedure picked, its inner score and its outer score: the gap
  shows how much the choosing fitted noise;
* each candidate's plain (non-nested) leave-one-source-out score, for reference only: it is the
  number a choice made on the scoring folds would report.

Writes ``bench/results/real_photos.json|md``; folds, runs and caches stay under ``--work``.

    python -m bench.real_photos                          # every grid (about 1.5 h on 2 cores, cold)
    python -m bench.real_photos --grids geometry --no-reference
"""

from __future__ import annotations

import argparse
import logging
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench.common import ROOT, finish, machine, real_folder, real_photos_parser
from posture.cli import UserError
from posture.data.datasets import read_manifest
from posture.data.labels import CLASS_NAMES
from posture.io.formats import MANIFEST_NAME
from posture.training.selection import (
    GRIDS,
    NOT_ASSESSED,
    Candidate,
    SelectionConfig,
    balanced_accuracy,
    loso_answers,
    person_weights,
    pick,
    score,
    select,
    train_and_answer,
    write_fold,
)

log = logging.getLogger("bench.real_photos")
#: Synthetic pictures for the candidates that train on them too (``posture.synth``, mixed views).
SYNTHETIC_N, SYNTHETIC_SEED = 600, 1
#: ``postural`` is labelled for rounded shoulders, not forward head (SOURCES.md): reported, exempt from the floor.
EXEMPT = ("postural",)


@dataclass
class BenchConfig:
    real: Path
    work: Path
    grids: list[str]
    seed: int = 0
    bootstrap: int = 2000
    reference: bool = True
    synthetic: bool = True


# --------------------------------------------------------------------------- data


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"{' '.join(cmd[1:4])} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")


def ingest(real: Path, out: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The product's ingest (exact duplicates removed), subject and source from the folder's manifest."""
    cmd = [sys.executable, "-m", "posture.ingest", str(real), "--out", str(out), "--labels", str(real / MANIFEST_NAME)]
    _run(cmd + ["--near-dup-threshold", "-1", "--no-progress", "-q", "--overwrite"])
    frame = read_manifest(out)
    counts = (frame["source"].astype(str) + "/" + frame["label"].astype(str)).value_counts().sort_index()
    info = {
        "kept": len(frame),
        "by_source_label": {str(key): int(n) for key, n in counts.items()},
        "people": int(frame["subject"].nunique()),
        "sources": sorted(frame["source"].astype(str).unique()),
    }
    return frame, info


def synthetic_dataset(work: Path) -> Path:
    """``posture.synth`` pictures, ingested: the second training source some candidates use."""
    out = work / "synthetic"
    if (out / MANIFEST_NAME).is_file():
        return out
    raw = work / "synthetic-raw"
    _run([sys.executable, "-m", "posture.synth", str(raw), "--n", str(SYNTHETIC_N), "--seed", str(SYNTHETIC_SEED)])
    _run([sys.executable, "-m", "posture.ingest", str(raw), "--out", str(out), "--no-progress", "-q", "--overwrite"])
    return out


def photo_views(frame: pd.DataFrame, images: Path, cache: Path, detector: Any) -> np.ndarray:
    """Each photo's view as BlazePose's landmarks say (``none`` where it finds nobody)."""
    from posture.models.features import FeatureCache, frame_paths
    from posture.pose.geometry import view_of
    from posture.pose.landmarks import detect_landmarks

    paths, shas = frame_paths(images, frame)
    marks = detect_landmarks(paths, shas, FeatureCache(cache), detector=detector, progress=False)
    return np.array([view_of(lm) if lm is not None else "none" for lm in marks.landmarks])


# --------------------------------------------------------------------------- scoring


def labels_of(frame: pd.DataFrame) -> np.ndarray:
    return frame["label"].map(CLASS_NAMES.index).to_numpy()


def interval_by_person(
    y: np.ndarray, pred: np.ndarray, subjects: np.ndarray, n: int, seed: int, weigh_people: bool = False
) -> list[float] | None:
    """95 % interval of the balanced accuracy, resampling whole people (cluster bootstrap); ``None`` for
    fewer than two people. ``weigh_people``: every person weighs the same inside each resample too."""
    people = np.unique(subjects)
    if len(people) < 2 or n < 1:
        return None
    rows = {p: np.flatnonzero(subjects == p) for p in people}
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        idx = np.concatenate([rows[p] for p in rng.choice(people, size=len(people), replace=True)])
        value = balanced_accuracy(y[idx], pred[idx], person_weights(subjects[idx]) if weigh_people else None)
        if value is not None:
            values.append(value)
    return [round(float(np.percentile(values, 2.5)), 4), round(float(np.percentile(values, 97.5)), 4)]


def _group(y: np.ndarray, pred: np.ndarray, subjects: np.ndarray, cfg: BenchConfig) -> dict[str, Any]:
    value = balanced_accuracy(y, pred)
    seen = pred != NOT_ASSESSED
    assessed = balanced_accuracy(y[seen], pred[seen]) if seen.any() else None
    return {
        "n": int(len(y)),
        "people": int(len(np.unique(subjects))),
        "coverage": round(float(seen.mean()), 4) if len(y) else None,
        "balanced_accuracy": None if value is None else round(value, 4),
        "balanced_accuracy_assessed": None if assessed is None else round(assessed, 4),
        "interval_by_person": interval_by_person(y, pred, subjects, cfg.bootstrap, cfg.seed),
        "confusion": [[int(((y == t) & (pred == p)).sum()) for p in (0, 1, NOT_ASSESSED)] for t in (0, 1)],
    }


def summarise(cfg: BenchConfig, frame: pd.DataFrame, pred: np.ndarray, views: np.ndarray) -> dict[str, Any]:
    """Per source, per view, the means over sources and over people, coverage (not assessed = wrong)."""
    y, subjects = labels_of(frame), frame["subject"].astype(str).to_numpy()
    sources = frame["source"].astype(str).to_numpy()
    per_source = {
        s: _group(y[sources == s], pred[sources == s], subjects[sources == s], cfg) for s in np.unique(sources)
    }
    per_view = {v: _group(y[views == v], pred[views == v], subjects[views == v], cfg) for v in np.unique(views)}
    people = balanced_accuracy(y, pred, person_weights(subjects))
    scored = [r["balanced_accuracy"] for r in per_source.values() if r["balanced_accuracy"] is not None]
    floor = [r["balanced_accuracy"] for s, r in per_source.items() if s not in EXEMPT and r["balanced_accuracy"]]
    seen = pred != NOT_ASSESSED
    assessed = [r["balanced_accuracy_assessed"] for r in per_source.values() if r["balanced_accuracy_assessed"]]
    people_assessed = balanced_accuracy(y[seen], pred[seen], person_weights(subjects[seen]))
    return {
        "mean_over_sources": round(float(np.mean(scored)), 4) if scored else None,
        "mean_over_people": None if people is None else round(people, 4),
        "assessed_only": {
            "mean_over_sources": round(float(np.mean(assessed)), 4) if assessed else None,
            "mean_over_people": None if people_assessed is None else round(people_assessed, 4),
        },
        "people_interval": interval_by_person(y, pred, subjects, cfg.bootstrap, cfg.seed, weigh_people=True),
        "worst_source": round(float(min(floor)), 4) if floor else None,
        "coverage": round(float((pred != NOT_ASSESSED).mean()), 4),
        "pooled": _group(y, pred, subjects, cfg),
        "per_source": per_source,
        "per_view": per_view,
    }


# --------------------------------------------------------------------------- the protocol


@dataclass
class OuterFold:
    """One outer fold: the held-out source, its fold folder, the inner scores of every candidate (chosen
    from the other sources alone) and, once trained, each candidate's answers on the held-out rows."""

    source: str
    test: np.ndarray
    fold_dir: Path
    scores: dict[str, float]
    answers: dict[str, np.ndarray] = field(default_factory=dict)


def outer_folds(
    cfg: BenchConfig,
    frame: pd.DataFrame,
    images: Path,
    candidates: tuple[Candidate, ...],
    sel_cfg: SelectionConfig,
    detector: Any,
    trainer: Callable[..., np.ndarray] = train_and_answer,
) -> list[OuterFold]:
    """Outer leave-one-source-out; inside each outer fold the procedure scores every candidate on the training
    sources only (inner leave-one-source-out). Every grid then picks among its own candidates from those scores.

    ``trainer`` trains a candidate on a fold folder and answers rows
    (:func:`posture.training.selection.train_and_answer`; a test passes a spy to prove that no photo of
    the outer fold reaches the selection)."""
    folds = []
    for source in sorted(frame["source"].astype(str).unique()):
        test = (frame["source"].astype(str) == source).to_numpy()
        slug = re.sub(r"[^A-Za-z0-9_.-]", "_", source)
        pool = frame[~test].reset_index(drop=True)  # the selection never receives a row of the outer fold
        inner_cfg = SelectionConfig(**{**sel_cfg.__dict__, "work": cfg.work / f"outer_{slug}" / "inner"})
        chosen = select(pool, images, candidates, inner_cfg, detector, trainer)
        fold_dir = cfg.work / f"outer_{slug}" / "fold"
        write_fold(frame, images, fold_dir, test, cfg.seed)
        folds.append(OuterFold(source, test, fold_dir, chosen.scores))
        log.info("outer %s: inner scores %s", source, {k: round(v, 3) for k, v in chosen.scores.items()})
    return folds


def nested(
    frame: pd.DataFrame,
    folds: list[OuterFold],
    candidates: tuple[Candidate, ...],
    sel_cfg: SelectionConfig,
    detector: Any,
    trainer: Callable[..., np.ndarray] = train_and_answer,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The grid's nested answers: in each outer fold its pick (among ``candidates``, by the inner scores) is
    trained on the fold's training sources and answers the held-out source, which only scores."""
    pred = np.full(len(frame), NOT_ASSESSED)
    records = []
    for fold in folds:
        usable = [c for c in candidates if c.name in fold.scores]
        chosen = pick(usable, fold.scores, sel_cfg.tolerance)
        if chosen.name not in fold.answers:
            run = fold.fold_dir.parent / "runs" / chosen.name
            fold.answers[chosen.name] = trainer(chosen, fold.fold_dir, run, frame[fold.test], sel_cfg, detector)
        pred[fold.test] = fold.answers[chosen.name]
        outer = score(frame[fold.test].reset_index(drop=True), pred[fold.test], sel_cfg.how)
        inner = fold.scores[chosen.name]
        records.append(
            {
                "held_out": fold.source,
                "pick": chosen.name,
                "inner_score": round(inner, 4),
                "outer_score": round(outer, 4),
                "gap": round(inner - outer, 4),
                "inner_scores": {c.name: round(fold.scores[c.name], 4) for c in usable},
            }
        )
    return pred, records


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    from posture.pose.detector import PoseDetector

    cfg.work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    images = cfg.work / "ingested"
    frame, info = ingest(cfg.real, images)
    detector = PoseDetector(cache_size=8192)  # one BlazePose graph, and its answers, for every run of the bench
    views = photo_views(frame, images, cfg.work / "cache", detector)
    info["views"] = {str(k): int(v) for k, v in pd.Series(views).value_counts().items()}
    synthetic = synthetic_dataset(cfg.work) if cfg.synthetic else None
    sel_cfg = SelectionConfig(
        work=cfg.work / "all",
        cache_dir=str(cfg.work / "cache"),
        seed=cfg.seed,
        synthetic=str(synthetic) if synthetic else None,
    )
    union = tuple({c.name: c for g in cfg.grids for c in GRIDS[g]}.values())
    folds = outer_folds(cfg, frame, images, union, sel_cfg, detector)
    on_all = select(frame, images, union, sel_cfg, detector)
    reference = {}
    if cfg.reference:  # each candidate's plain leave-one-source-out (what a non-nested choice would report)
        ref_cfg = SelectionConfig(**{**sel_cfg.__dict__, "work": cfg.work / "reference"})
        for c in union:
            if c.needs_synthetic and synthetic is None:
                continue
            s = summarise(cfg, frame, loso_answers(frame, images, c, ref_cfg, detector), views)
            reference[c.name] = {k: s[k] for k in ("mean_over_sources", "mean_over_people", "worst_source", "coverage")}
            reference[c.name]["per_source"] = {k: v["balanced_accuracy"] for k, v in s["per_source"].items()}
    payload: dict[str, Any] = {"ingest": info, "grids": {}}
    for grid in cfg.grids:
        candidates = tuple(c for c in GRIDS[grid] if c.name in on_all.scores)
        pred, records = nested(frame, folds, candidates, sel_cfg, detector)
        chosen = pick(candidates, on_all.scores, sel_cfg.tolerance)
        g: dict[str, Any] = {
            "candidates": {
                c.name: {"options": c.options, "note": c.note, "threshold": c.threshold_policy} for c in candidates
            },
            "nested": {
                **summarise(cfg, frame, pred, views),
                "mean_gap": round(float(np.mean([r["gap"] for r in records])), 4),
            },
            "outer_folds": records,
            "procedure_on_all": {
                **on_all.to_dict(),
                "pick": chosen.name,
                "options": chosen.options,
                "threshold_policy": chosen.threshold_policy,
                "scores": {c.name: round(on_all.scores[c.name], 4) for c in candidates},
            },
        }
        if reference:
            g["reference"] = {c.name: reference[c.name] for c in candidates if c.name in reference}
        payload["grids"][grid] = g
        log.info(
            "%s: nested mean over sources %s, over people %s",
            grid,
            g["nested"]["mean_over_sources"],
            g["nested"]["mean_over_people"],
        )
    payload["seconds_total"] = round(time.perf_counter() - t_start, 1)
    payload["machine"] = machine()
    return payload


# --------------------------------------------------------------------------- report


def _f(x: Any) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _iv(iv: list[float] | None) -> str:
    return f" [{iv[0]:.2f}, {iv[1]:.2f}]" if iv else ""


_HEADER = (
    "| {what} | photos | people | balanced acc. [95 % by person] | coverage | forward head → fh/normal/n.a. "
    "| normal → fh/normal/n.a. |"
)
_RULE = "|---|---:|---:|---:|---:|---|---|"


def _group_row(name: str, r: dict[str, Any]) -> str:
    c = r["confusion"]
    return (
        f"| {name} | {r['n']} | {r['people']} | {_f(r['balanced_accuracy'])}{_iv(r['interval_by_person'])} | "
        f"{_f(r['coverage'])} | {c[0][0]}/{c[0][1]}/{c[0][2]} | {c[1][0]}/{c[1][1]}/{c[1][2]} |"
    )


def grid_markdown(name: str, g: dict[str, Any]) -> list[str]:
    n = g["nested"]
    lines = [
        f"## Grid `{name}`: {len(g['candidates'])} candidates",
        "",
        f"**Nested leave-one-source-out: mean over sources {_f(n['mean_over_sources'])}, mean over people "
        f"{_f(n['mean_over_people'])}{_iv(n['people_interval'])}, worst source (postural exempt) "
        f"{_f(n['worst_source'])}, coverage {_f(n['coverage'])}; mean inner−outer gap {n['mean_gap']:+.3f}.** "
        "On the assessed photos only (coverage beside): mean over sources "
        f"{_f(n['assessed_only']['mean_over_sources'])}, over people {_f(n['assessed_only']['mean_over_people'])}.",
        "",
        _HEADER.format(what="held-out source"),
        _RULE,
    ]
    lines += [_group_row(s, r) for s, r in n["per_source"].items()]
    lines += [_group_row("**pooled**", n["pooled"]), "", "Per view (as BlazePose's landmarks say):", ""]
    lines += [
        _HEADER.format(what="view"),
        _RULE,
    ]
    lines += [_group_row(v, r) for v, r in n["per_view"].items()]
    lines += [
        "",
        "What the procedure picked in each outer fold, from the other sources alone (score: mean of the mean over "
        "sources and the mean over people, not-assessed counted wrong):",
        "",
        "| held-out source | pick | inner score | outer score | gap |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [
        f"| {f['held_out']} | `{f['pick']}` | {f['inner_score']:.3f} | {f['outer_score']:.3f} | {f['gap']:+.3f} |"
        for f in g["outer_folds"]
    ]
    pa = g["procedure_on_all"]
    lines += [
        "",
        f"The procedure on all {len(pa['folds'])} sources (what ships): **`{pa['pick']}`** (inner score "
        f"{pa['scores'][pa['pick']]:.3f}); every candidate's inner score: "
        + ", ".join(f"`{k}` {v:.3f}" for k, v in sorted(pa["scores"].items(), key=lambda kv: -kv[1]))
        + ".",
    ]
    if "reference" in g:
        sources = list(n["per_source"])
        lines += [
            "",
            "For reference only, each candidate's plain leave-one-source-out on all sources (a choice made on these "
            "folds would report the best row; the nested score above is the honest one):",
            "",
            "| candidate | mean over sources | mean over people | worst (postural exempt) | coverage | "
            + " | ".join(sources)
            + " |",
            "|---|---:|---:|---:|---:|" + "---:|" * len(sources),
        ]
        for cname, r in g["reference"].items():
            lines.append(
                f"| `{cname}` | {_f(r['mean_over_sources'])} | {_f(r['mean_over_people'])} | {_f(r['worst_source'])} | "
                f"{_f(r['coverage'])} | " + " | ".join(_f(r["per_source"].get(s)) for s in sources) + " |"
            )
    lines += ["", "Candidates: " + "; ".join(f"`{k}`: {v['note']}" for k, v in g["candidates"].items()) + ".", ""]
    return lines


def to_markdown(p: dict[str, Any]) -> str:
    info = p["ingest"]
    lines = [
        "# Real photos of unseen people: nested leave-one-source-out",
        "",
        f"`python -m bench.real_photos` on `../shared/data/real`: {info['kept']} photos of {info['people']} people "
        f"from {len(info['sources'])} sources ({', '.join(f'{k} {v}' for k, v in info['by_source_label'].items())}); "
        f"views by the landmarks: {', '.join(f'{k} {v}' for k, v in info['views'].items())}. Exact duplicates removed "
        "by the product's ingest. Every run is `posture.finetune`, every answer `posture.inference.predict.Predictor`, "
        "uncalibrated (no upright photo of the test person). Every choice is made by "
        "`posture.training.selection` inside each "
        "outer fold from its training sources (inner leave-one-source-out); the held-out source only scores. "
        "Balanced accuracy counts a photo the run cannot assess as wrong; coverage is beside it. Mean over people: "
        "every person weighs the same. Intervals: 95 % by person (bootstrap over subjects); a one-person source has "
        "none. Confusion cells: answers forward head / normal / not assessed.",
        "",
    ]
    for name, g in p["grids"].items():
        lines += grid_markdown(name, g)
    lines += [
        f"Compute time {p['seconds_total']:.0f} s on {p['machine']['cpu_count']} cores "
        f"(load average at start {p['machine']['load_average_at_start'][0]:.1f})."
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = real_photos_parser(
        __doc__.split("\n\n")[0], Path("/tmp/posture_real_photos"), "scratch folder for folds, runs and caches"
    )
    parser.add_argument(
        "--grids", default=",".join(GRIDS), help=f"comma-separated grids of candidates ({', '.join(GRIDS)})"
    )
    parser.add_argument("--no-reference", action="store_true", help="skip each candidate's plain (non-nested) LOSO")
    parser.add_argument(
        "--no-synthetic", action="store_true", help="skip the candidates that also train on synthetic pictures"
    )
    return parser


#: Quieted to warnings while the folds train (posture.training.finetune further, below).
QUIET = (
    "posture",
    "posture.models.features",
    "posture.pose.landmarks",
    "posture.training.finetune",
    "posture.training.loop",
    "posture.inference.calibrate",
    "posture.data.datasets",
    "posture.training.selection",
)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    real = real_folder(args.real, log, QUIET, logging.WARNING)
    # "N photos cannot be assessed", once per run
    logging.getLogger("posture.training.finetune").setLevel(logging.ERROR)
    if real is None:
        return 2
    unknown = [g for g in args.grids.split(",") if g not in GRIDS]
    if unknown:
        log.error("error: unknown grid(s) %s; choose from %s", unknown, ", ".join(GRIDS))
        return 2
    torch.set_num_threads(2)
    cfg = BenchConfig(
        real=real,
        work=args.work,
        grids=args.grids.split(","),
        reference=not args.no_reference,
        synthetic=not args.no_synthetic,
    )
    payload = run_bench(cfg)
    return finish("real_photos", payload, to_markdown(payload), args.no_write, log)


if __name__ == "__main__":
    raise SystemExit(main())
