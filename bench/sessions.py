"""Every capture session of the real photos replayed as a sitting: the personal baseline's worth, per session.

Why: across people and cameras a posture model is guessing at what "upright" looks like from this
camera; within one sitting (one person, one camera) the person's own upright photos say it. This
measures what :class:`posture.sitting.session.Session` makes of a real session when it is told the person's
upright baseline, against the same run answering without it (the uncalibrated default), with a run
that never saw the session's source.

The protocol (fixed before any replay; nothing here was picked by looking at its results):

* **data**: ``../shared/data/real`` through the product's ingest (``bench.real_photos.ingest``);
* **sessions**: a ``subject`` is one capture set-up (SOURCES.md), so one session; replayed when it has
  at least ``baseline_photos`` upright photos for the baseline and ``min_per_class`` of each class
  left to score. Sources SOURCES.md says hold several people under one subject (``snowsuno``: three;
  ``turtlecam``: runs that may hold two) are reported apart; snowsuno's three people are also told
  apart by eye (:data:`PEOPLE_BY_EYE`) and replayed once per person, each with their own baseline;
* **runs**: for every source with a session, ``posture.finetune`` with its defaults (no option) trained
  on the other sources (:func:`posture.training.selection.write_fold` +
  :func:`~posture.training.selection.train_and_answer`);
* **replay**: the session's photos in their natural order (file names, numbers read as numbers: the
  frames of a clip), one every ``seconds_per_photo`` seconds, through a ``Session`` over a
  still-photo ``PoseDetector`` (photos are not consecutive video frames). The first
  ``baseline_photos`` upright photos BlazePose can measure become the baseline (their median
  geometry, as the calibration step takes it) and are not scored; every other photo is scored by its
  own answer (``FrameResult.label``), a photo that cannot be assessed counting as wrong;
* **conditions**, on the same photos: ``baseline`` (the sitting with the person's baseline),
  ``no_baseline`` (the same run, uncalibrated; the learnt baseline switched off) and ``stream`` (the
  baseline with :class:`~posture.sitting.session.WatchConfig`'s defaults, as a camera stream would run). The
  first two switch off the main-person check, since photos of one session come from several clips
  in which the person stands in different places (a stream's defence against passers-by,
  tested in tests/test_sitting.py); ``stream`` keeps it and reports what it refused.

Writes ``bench/results/sessions.json|md``; folds, runs and caches stay under ``--work``.

    python -m bench.sessions            # about 10 minutes on 2 cores, cold
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.common import finish, machine, real_folder, real_photos_parser
from bench.real_photos import ingest
from posture.data.labels import CLASS_NAMES
from posture.sitting.session import FORWARD, FrameResult, Session, WatchConfig
from posture.training.selection import (
    NOT_ASSESSED,
    Candidate,
    SelectionConfig,
    balanced_accuracy,
    train_and_answer,
    write_fold,
)

log = logging.getLogger("bench.sessions")
NORMAL = "normal"
#: The run every session is replayed with: ``posture.finetune``'s defaults, no option.
DEFAULTS = Candidate("defaults", {}, "posture.finetune's defaults (no option)")
#: Sources whose subjects hold more than one person, and what SOURCES.md says of them.
SEVERAL_PEOPLE = {
    "snowsuno": "three people under one subject (SOURCES.md)",
    "turtlecam": "a run may hold two people whose numbers interleave (SOURCES.md; contact sheets of r06 and r14 show "
    "more, each seen by more than one camera)",
}
#: snowsuno-dataset1's three people, told apart by eye from a contact sheet of its 88 photos (clothes,
#: glasses, hair) before any replay: per person, (label, first frame, last frame) of the file names'
#: frame numbers (``snowsuno-dataset1-<0 normal|1 forward>-<frame>.jpg``).
PEOPLE_BY_EYE: dict[str, dict[str, list[tuple[str, int, int]]]] = {
    "snowsuno-dataset1": {
        "A (round glasses, blue cardigan)": [(NORMAL, 0, 176), (FORWARD, 0, 32), (FORWARD, 96, 336)],
        "B (long hair, glasses)": [(NORMAL, 192, 464), (FORWARD, 352, 576)],
        "C (grey sweatshirt)": [(NORMAL, 480, 720), (FORWARD, 48, 80), (FORWARD, 592, 656)],
    }
}
#: The conditions every session is replayed under (module docstring).
CONDITIONS = ("baseline", "no_baseline", "stream")
#: Switches off what does not apply to a replay of photos: the main-person check (photos of one
#: session come from several clips) and, for ``no_baseline``, the baseline learnt from the most upright stretch.
REPLAY = WatchConfig(jump_distance=math.inf, jump_size=math.inf, auto_baseline_after=math.inf)
REPLAY_DEFAULTS = WatchConfig()


@dataclass
class SessionsConfig:
    real: Path
    work: Path
    baseline_photos: int = 3
    min_per_class: int = 2
    seconds_per_photo: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class SessionPlan:
    """One session to replay: rows of the ingested frame in natural order, and whether it holds several people."""

    name: str
    source: str
    subject: str
    rows: tuple[int, ...]
    several_people: str | None = None
    person: str | None = None


# --------------------------------------------------------------------------- sessions


def natural_key(name: str) -> list[Any]:
    """File-name order with numbers read as numbers (``CWK9`` before ``CWK10``): the frames of a clip."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", Path(name).name)]


def _frame_number(name: str) -> int:
    return int(re.findall(r"\d+", Path(name).stem)[-1])


def people_by_eye(
    frame: pd.DataFrame, rows: Sequence[int], people: dict[str, list[tuple[str, int, int]]]
) -> dict[str, list[int]]:
    """``rows`` split by person (:data:`PEOPLE_BY_EYE`), each in the session's order; a photo no range
    names is left out (and logged), never guessed. No people named: nothing to split."""
    out: dict[str, list[int]] = {name: [] for name in people}
    for i in rows if people else ():
        label, number = str(frame.at[i, "label"]), _frame_number(str(frame.at[i, "source_path"]))
        owners = [n for n, spans in people.items() if any(lab == label and a <= number <= b for lab, a, b in spans)]
        if len(owners) == 1:
            out[owners[0]].append(i)
        else:
            log.warning("%s: %d people by eye, left out", frame.at[i, "source_path"], len(owners))
    return out


def plan_sessions(frame: pd.DataFrame, cfg: SessionsConfig) -> tuple[list[SessionPlan], dict[str, str]]:
    """Every subject with enough photos of both classes, in natural order; and why the others were skipped."""
    plans: list[SessionPlan] = []
    skipped: dict[str, str] = {}
    need = {NORMAL: cfg.baseline_photos + cfg.min_per_class, FORWARD: cfg.min_per_class}

    def enough(name: str, rows: Sequence[int]) -> bool:
        counts = frame.loc[list(rows), "label"].value_counts()
        short = [f"{int(counts.get(c, 0))} {c} (needs {n})" for c, n in need.items() if counts.get(c, 0) < n]
        if short:
            skipped[name] = ", ".join(short)
        return not short

    for subject, group in frame.groupby("subject", sort=True):
        rows = tuple(sorted(group.index, key=lambda i: natural_key(str(frame.at[i, "source_path"]))))
        source = str(group["source"].iloc[0])
        several = SEVERAL_PEOPLE.get(source)
        if enough(str(subject), rows):
            plans.append(SessionPlan(str(subject), source, str(subject), rows, several))
        for person, own in people_by_eye(frame, rows, PEOPLE_BY_EYE.get(str(subject)) or {}).items():
            name = f"{subject} / {person}"
            if enough(name, own):
                plans.append(SessionPlan(name, source, str(subject), tuple(own), None, person))
    return plans, skipped


# --------------------------------------------------------------------------- replay


@dataclass
class Replay:
    """What one session's replay said: which photos made the baseline, and the sitting's row for each
    scored photo under each condition (:data:`CONDITIONS`)."""

    baseline: list[int]
    scored: list[int]
    rows: dict[str, list[FrameResult]]
    baseline_dropped: bool = False

    def labels(self, condition: str) -> np.ndarray:
        """Class index per scored photo, :data:`~posture.training.selection.NOT_ASSESSED` where it was not assessed."""
        return np.array(
            [CLASS_NAMES.index(r.label) if r.label is not None else NOT_ASSESSED for r in self.rows[condition]],
            dtype=int,
        )

    @property
    def views(self) -> list[str]:
        return [r.view or "none" for r in self.rows["baseline"]]


def replay_session(
    predictor: Any,
    photos: Sequence[np.ndarray],
    labels: Sequence[str],
    baseline_photos: int,
    seconds_per_photo: float = 1.0,
) -> Replay | None:
    """Replay one session's ``photos`` (natural order) under every condition (module docstring);
    ``None`` when fewer than ``baseline_photos`` upright photos can be measured."""
    baseline: list[int] = []
    geometries = []
    for i, label in enumerate(labels):
        if label != NORMAL or len(baseline) == baseline_photos:
            continue
        geometry = predictor.analyse(photos[i], within_training=False).geometry
        if geometry is not None:  # an upright photo BlazePose cannot measure is scored like any other
            baseline.append(i)
            geometries.append(geometry)
    if len(baseline) < baseline_photos:
        return None
    sessions = {
        "baseline": Session(predictor, REPLAY),
        "no_baseline": Session(predictor, REPLAY),
        "stream": Session(predictor, REPLAY_DEFAULTS),
    }
    clock = 0.0
    for i in baseline:  # the sitting sees the baseline photos first, as during the calibration step
        for s in sessions.values():
            s.update(photos[i], clock)
        clock += seconds_per_photo
    reference = np.median(np.stack(geometries), axis=0)
    for name in ("baseline", "stream"):
        sessions[name].set_baseline(reference, f"the first {baseline_photos} upright photos")
    scored = [i for i in range(len(photos)) if i not in baseline]
    rows: dict[str, list[FrameResult]] = {name: [] for name in sessions}
    for i in scored:
        for name, s in sessions.items():
            rows[name].append(s.update(photos[i], clock))
        clock += seconds_per_photo
    return Replay(baseline, scored, rows, baseline_dropped=sessions["stream"].baseline is None)


# --------------------------------------------------------------------------- scoring


def score(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """Balanced accuracy (a photo not assessed counts as wrong; ``None`` with one class), coverage, and
    the confusion rows (truth forward head, normal) × answers (forward head, normal, not assessed)."""
    value = balanced_accuracy(y, pred) if len(y) else None
    return {
        "n": int(len(y)),
        "balanced_accuracy": None if value is None else round(value, 4),
        "coverage": round(float((pred != NOT_ASSESSED).mean()), 4) if len(y) else None,
        "confusion": [[int(((y == t) & (pred == p)).sum()) for p in (0, 1, NOT_ASSESSED)] for t in (0, 1)],
    }


@dataclass
class Scored:
    """Every scored photo of a group of sessions, so per-view tables pool them."""

    y: list[int] = field(default_factory=list)
    views: list[str] = field(default_factory=list)
    pred: dict[str, list[int]] = field(default_factory=lambda: {c: [] for c in CONDITIONS})

    def add(self, y: np.ndarray, views: Sequence[str], pred: dict[str, np.ndarray]) -> None:
        self.y += [int(v) for v in y]
        self.views += list(views)
        for c in CONDITIONS:
            self.pred[c] += [int(v) for v in pred[c]]

    def per_view(self) -> dict[str, dict[str, Any]]:
        y, views = np.array(self.y, dtype=int), np.array(self.views)
        return {
            v: {c: score(y[views == v], np.array(self.pred[c], dtype=int)[views == v]) for c in CONDITIONS}
            for v in sorted(set(self.views))
        }


def _median_p(rows: list[FrameResult], y: np.ndarray, label: str) -> float | None:
    values = [r.p_forward for r, t in zip(rows, y, strict=True) if t == CLASS_NAMES.index(label) and r.p_forward]
    return round(float(np.median(values)), 3) if values else None


def session_result(
    plan: SessionPlan, frame: pd.DataFrame, replay: Replay, photo_answers: dict[int, int]
) -> tuple[dict[str, Any], np.ndarray, dict[str, np.ndarray]]:
    """One session's scores per condition, what the stream refused, and each scored photo's answers."""
    rows = [plan.rows[i] for i in replay.scored]
    y = frame.loc[rows, "label"].map(CLASS_NAMES.index).to_numpy()
    pred = {c: replay.labels(c) for c in CONDITIONS}
    photo = np.array([photo_answers[r] for r in rows], dtype=int)
    events = pd.Series([r.event for r in replay.rows["stream"] if r.event], dtype=str).value_counts()
    result = {
        "session": plan.name,
        "source": plan.source,
        "subject": plan.subject,
        "person": plan.person,
        "several_people": plan.several_people,
        "baseline_photos": [str(frame.at[plan.rows[i], "source_path"]) for i in replay.baseline],
        "scored": {c: int((y == CLASS_NAMES.index(c)).sum()) for c in CLASS_NAMES},
        "views": {str(k): int(v) for k, v in pd.Series(replay.views).value_counts().items()},
        **{c: score(y, pred[c]) for c in CONDITIONS},
        # how far the answers sit from the boundary: median p(forward head) per true class, with the baseline
        "median_p_forward_with_baseline": {
            label: _median_p(replay.rows["baseline"], y, label) for label in (FORWARD, NORMAL)
        },
        "stream_events": {
            "another_person": int(events.get("another_person", 0)),
            "camera_moved": int(events.get("camera_moved", 0)),
            "baseline_dropped": replay.baseline_dropped,
        },
        # the uncalibrated sitting answers each photo as bench.real_photos' photo path does
        "no_baseline_agrees_with_photo_path": round(float((pred["no_baseline"] == photo).mean()), 4),
        "photos": [
            {
                "file": str(frame.at[row, "source_path"]),
                "label": str(frame.at[row, "label"]),
                "view": replay.views[k],
                **{c: replay.rows[c][k].label for c in CONDITIONS},
                "p_forward_with_baseline": replay.rows["baseline"][k].to_dict()["p_forward"],
                "stream_event": replay.rows["stream"][k].event,
            }
            for k, row in enumerate(rows)
        ],
    }
    return result, y, pred


def summarise(sessions: list[dict[str, Any]]) -> dict[str, Any]:
    """The bars: with the baseline, the worst and the mean over one-person sessions; without it, beside."""
    one = [s for s in sessions if s["several_people"] is None and s["person"] is None]

    def values(condition: str) -> list[float]:
        return [s[condition]["balanced_accuracy"] for s in one if s[condition]["balanced_accuracy"] is not None]

    out: dict[str, Any] = {"one_person_sessions": len(one)}
    for c in CONDITIONS:
        v = values(c)
        out[c] = {
            "worst": round(min(v), 4) if v else None,
            "mean": round(float(np.mean(v)), 4) if v else None,
        }
    out["bar_every_session_090"] = bool(out["baseline"]["worst"] is not None and out["baseline"]["worst"] >= 0.90)
    out["bar_mean_095"] = bool(out["baseline"]["mean"] is not None and out["baseline"]["mean"] >= 0.95)
    return out


# --------------------------------------------------------------------------- the run


def train_runs(
    cfg: SessionsConfig,
    frame: pd.DataFrame,
    images: Path,
    sources: Sequence[str],
    detector: Any,
    trainer: Callable[..., np.ndarray] = train_and_answer,
) -> dict[str, tuple[Path, dict[int, int]]]:
    """Per source: a run of the defaults trained on the other sources, and its photo-path answers on that source."""
    sel_cfg = SelectionConfig(work=cfg.work, cache_dir=str(cfg.work / "cache"), seed=cfg.seed)
    runs = {}
    for source in sources:
        test = (frame["source"].astype(str) == source).to_numpy()
        slug = re.sub(r"[^A-Za-z0-9_.-]", "_", source)
        fold_dir, run = cfg.work / "folds" / slug, cfg.work / "runs" / slug
        write_fold(frame, images, fold_dir, test, cfg.seed)
        answers = trainer(DEFAULTS, fold_dir, run, frame[test], sel_cfg, detector)
        runs[source] = (run, dict(zip(np.flatnonzero(test).tolist(), answers.tolist(), strict=True)))
        log.info("run without %s trained", source)
    return runs


def run_bench(cfg: SessionsConfig) -> dict[str, Any]:
    from posture.inference.predict import Predictor
    from posture.io.images import load_rgb_array
    from posture.pose.detector import PoseDetector

    t0 = time.perf_counter()
    cfg.work.mkdir(parents=True, exist_ok=True)
    images = cfg.work / "ingested"
    frame, info = ingest(cfg.real, images)
    plans, skipped = plan_sessions(frame, cfg)
    detector = PoseDetector(cache_size=8192)  # still photos: no tracking state, so one graph serves every session
    runs = train_runs(cfg, frame, images, sorted({p.source for p in plans}), detector)
    sessions, pools = [], {"one_person": Scored(), "several_people": Scored()}
    for plan in plans:
        run, photo_answers = runs[plan.source]
        predictor = Predictor.from_run(run, backend="torch", detector=detector)
        photos = [load_rgb_array(images / str(frame.at[i, "path"])) for i in plan.rows]
        labels = [str(frame.at[i, "label"]) for i in plan.rows]
        replay = replay_session(predictor, photos, labels, cfg.baseline_photos, cfg.seconds_per_photo)
        if replay is None:
            skipped[plan.name] = f"fewer than {cfg.baseline_photos} upright photos BlazePose can measure"
            continue
        result, y, pred = session_result(plan, frame, replay, photo_answers)
        sessions.append(result)
        if plan.person is None:  # a per-person replay repeats its subject's photos
            pools["one_person" if plan.several_people is None else "several_people"].add(y, replay.views, pred)
        log.info("%s: with baseline %s, without %s", plan.name, result["baseline"], result["no_baseline"])
    return {
        "protocol": {
            "baseline_photos": cfg.baseline_photos,
            "min_per_class_scored": cfg.min_per_class,
            "seconds_per_photo": cfg.seconds_per_photo,
            "run": DEFAULTS.note,
            "replay_config": {k: str(v) for k, v in asdict(REPLAY).items()},
            "stream_config": "WatchConfig() defaults",
        },
        "ingest": info,
        "sessions": sessions,
        "skipped": skipped,
        "summary": summarise(sessions),
        "per_view": {name: pool.per_view() for name, pool in pools.items()},
        "seconds_total": round(time.perf_counter() - t0, 1),
        "machine": machine(),
    }


# --------------------------------------------------------------------------- report


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _cells(r: dict[str, Any]) -> str:
    return f"{_f(r['balanced_accuracy'])} / {r['coverage']:.2f}" if r["coverage"] is not None else "n/a"


_SESSION_HEADER = [
    "| session | views | scored fh/normal | **with baseline** | without baseline | as a stream (defaults) | "
    "median p(fh) with baseline: fh / upright photos | stream: refused as another person, camera moved |",
    "|---|---|---:|---:|---:|---:|---:|---|",
]


def _session_row(s: dict[str, Any]) -> str:
    ev, p = s["stream_events"], s["median_p_forward_with_baseline"]
    views = ", ".join(f"{k} {v}" for k, v in s["views"].items())
    return (
        f"| {s['session']} | {views} | {s['scored'][FORWARD]}/{s['scored'][NORMAL]} | **{_cells(s['baseline'])}** | "
        f"{_cells(s['no_baseline'])} | {_cells(s['stream'])} | {_f(p[FORWARD])} / {_f(p[NORMAL])} | "
        f"{ev['another_person']}, {ev['camera_moved']}"
        f"{' (baseline dropped)' if ev['baseline_dropped'] else ''} |"
    )


def _view_table(per_view: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| view | photos | with baseline | without baseline | as a stream |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {v} | {r['baseline']['n']} | {_cells(r['baseline'])} | {_cells(r['no_baseline'])} | {_cells(r['stream'])} |"
        for v, r in per_view.items()
    ]
    return lines


def _limits(one: list[dict[str, Any]]) -> list[str]:
    """What holds a session below the bar, in the results' own terms (no session named by hand)."""
    below = [s for s in one if (s["baseline"]["balanced_accuracy"] or 0.0) < 0.90]
    refused = sum(s["stream_events"]["another_person"] for s in one)
    dropped = [s["session"] for s in one if s["stream_events"]["baseline_dropped"]]
    lines = []
    if below:
        lines.append(
            "Below 0.90 with the baseline: "
            + ", ".join(
                f"{s['session']} (its forward-head photos' median p(forward head) "
                f"{_f(s['median_p_forward_with_baseline'][FORWARD])})"
                for s in below
            )
            + ". The baseline moves the person's own upright onto the upright of the people the run was trained "
            "on; how far from upright counts as a forward head is still the run's boundary, learnt across people. "
            "A forward head milder than that boundary (median p near or under 0.5) stays upright however well the "
            "baseline fits; no threshold was changed for it here."
        )
        lines.append("")
    lines.append(
        f"As a stream, the main-person check refused {refused} scored photos of these sessions as someone else "
        f"(shoulders more than {REPLAY_DEFAULTS.jump_distance} shoulder widths from the running anchor, or "
        f"{REPLAY_DEFAULTS.jump_size:.0%} larger or smaller)"
        + (
            f", and in {', '.join(dropped)} a jump that lasted {REPLAY_DEFAULTS.camera_moved_seconds:.0f} s (photos) "
            "counted as a moved camera and dropped the baseline"
            if dropped
            else ""
        )
        + ". Consecutive photos of these sessions are not consecutive frames, so a stream would move less "
        "between two frames; the photos' own answers are in bench/results/sessions.json."
    )
    return lines


def _skipped_by_source(skipped: dict[str, str]) -> str:
    """``postural: 9 subjects``-style counts; a source with few skipped subjects names them."""
    by_source: dict[str, list[str]] = {}
    for name in skipped:
        by_source.setdefault(name.split("-")[0], []).append(name)
    return "; ".join(
        f"{source}: {len(names)} subjects" + (f" ({', '.join(names)})" if len(names) <= 8 else "")
        for source, names in sorted(by_source.items())
    )


def to_markdown(p: dict[str, Any]) -> str:
    proto, summary = p["protocol"], p["summary"]
    one = [s for s in p["sessions"] if s["several_people"] is None and s["person"] is None]
    several = [s for s in p["sessions"] if s not in one]
    met = {True: "**met**", False: "**not met**"}
    lines = [
        "# Capture sessions replayed as a sitting: with the person's baseline and without",
        "",
        f"`python -m bench.sessions` on `../shared/data/real` ({p['ingest']['kept']} photos after the product's "
        f"ingest). Each subject (one capture set-up) with ≥ {proto['baseline_photos'] + proto['min_per_class_scored']}"
        f" upright and ≥ {proto['min_per_class_scored']} forward-head photos is replayed through "
        "`posture.sitting.session.Session` in file-name order (numbers as numbers), one photo a second, with a run of "
        f"{proto['run']} trained on the *other* sources. The first {proto['baseline_photos']} upright photos "
        "BlazePose can measure are the baseline (median geometry) and are not scored; every other photo is scored "
        "by its own answer, a photo that cannot be assessed counting as wrong (coverage beside it). *With baseline* "
        "and *without baseline* are the same run on the same photos, the main-person check and the learnt "
        "baseline switched off (photos of a session come from several clips); *as a stream* is the baseline with "
        "`WatchConfig()`'s defaults, main-person check on. Views as BlazePose's landmarks say "
        "(`posture.pose.geometry.view_of`; `none`: nobody measurable).",
        "",
        f"**One-person sessions ({summary['one_person_sessions']}): with the baseline, worst "
        f"{_f(summary['baseline']['worst'])} (bar ≥ 0.90: {met[summary['bar_every_session_090']]}), mean "
        f"{_f(summary['baseline']['mean'])} (bar ≥ 0.95: {met[summary['bar_mean_095']]}); without it, worst "
        f"{_f(summary['no_baseline']['worst'])}, mean {_f(summary['no_baseline']['mean'])}; as a stream, mean "
        f"{_f(summary['stream']['mean'])}.**",
        "",
        *_SESSION_HEADER,
        *map(_session_row, one),
        "",
        *_limits(one),
        "",
        "Per view, the one-person sessions' scored photos pooled:",
        "",
        *_view_table(p["per_view"]["one_person"]),
        "",
        "## Several people under one subject (reported apart: one baseline does not fit them)",
        "",
        "Rows with a person are snowsuno's three people told apart by eye (`PEOPLE_BY_EYE` in bench/sessions.py, "
        "from a contact sheet of the photos, before any replay), each replayed with their own baseline.",
        "",
        *_SESSION_HEADER,
        *map(_session_row, several),
        "",
        "Per view, the several-people subjects' scored photos pooled (per-person rows not repeated):",
        "",
        *_view_table(p["per_view"]["several_people"]),
        "",
        "Why each subject was replayed apart: "
        + "; ".join(sorted({f"{s['source']}: {s['several_people']}" for s in several if s["several_people"]}))
        + ".",
        "",
        "Not replayed (too few photos of a class for a baseline and a score; each subject's counts are in the "
        "JSON): " + _skipped_by_source(p["skipped"]) + ".",
        "",
        "The uncalibrated sitting answers each photo as the photo path of `bench.real_photos` does: agreement "
        + ", ".join(f"{s['session']} {s['no_baseline_agrees_with_photo_path']:.2f}" for s in p["sessions"])
        + ".",
        "",
        f"Compute time {p['seconds_total']:.0f} s on {p['machine']['cpu_count']} cores (load average at start "
        f"{p['machine']['load_average_at_start'][0]:.1f}).",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the command (watch_speed's too)

#: Where the replays' folds, runs and caches go (watch_speed trains its run here too).
DEFAULT_WORK = Path("/tmp/posture_sessions")


def build_parser() -> argparse.ArgumentParser:
    parser = real_photos_parser(__doc__.split("\n\n")[0], DEFAULT_WORK, "scratch folder for folds, runs and caches")
    parser.add_argument(
        "--baseline-photos", type=int, default=3, help="upright photos that make the baseline (default %(default)s)"
    )
    parser.add_argument(
        "--min-per-class",
        type=int,
        default=2,
        help="photos of each class a session must have left to score (default %(default)s)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    import torch

    args = build_parser().parse_args(argv)
    real = real_folder(args.real, log)
    if real is None:
        return 2
    if args.baseline_photos < 1 or args.min_per_class < 1:
        log.error("error: --baseline-photos and --min-per-class must be at least 1")
        return 2
    torch.set_num_threads(2)
    cfg = SessionsConfig(
        real=real, work=args.work, baseline_photos=args.baseline_photos, min_per_class=args.min_per_class
    )
    payload = run_bench(cfg)
    return finish("sessions", payload, to_markdown(payload), args.no_write, log)


if __name__ == "__main__":
    raise SystemExit(main())
