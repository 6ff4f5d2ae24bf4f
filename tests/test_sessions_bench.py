"""bench/sessions.py's mechanics on stand-ins: which subjects become sessions and in what order, the
replay's baseline and conditions, the scores and the bars, and that no run sees its own source."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import test_sitting
from _pose_helpers import FakeDetector, make_pose_dataset
from bench.sessions import (
    CONDITIONS,
    SessionsConfig,
    main,
    natural_key,
    plan_sessions,
    replay_session,
    score,
    summarise,
    to_markdown,
    train_runs,
)
from posture.inference.predict import Predictor
from posture.training.selection import NOT_ASSESSED
from test_sitting import person

FH, N = "forward_head", "normal"
#: The stand-in run test_sitting trains (a module fixture), shared rather than trained twice.
run = test_sitting.run


def _frame(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    """(source, subject, label, file name) rows laid out as the ingested manifest is."""
    return pd.DataFrame(
        [
            {"path": f"images/{i}.jpg", "label": label, "source": source, "subject": subject, "source_path": name}
            for i, (source, subject, label, name) in enumerate(rows)
        ]
    )


def test_a_session_is_a_subject_in_file_name_order_with_enough_photos_and_several_people_apart() -> None:
    cfg = SessionsConfig(real=Path("."), work=Path("."), baseline_photos=3, min_per_class=2)
    rows = [("techneck", "techneck-CWK", N, f"normal/techneck-CWK{k}.jpg") for k in (10, 9, 2, 1, 11)]
    rows += [("techneck", "techneck-CWK", FH, f"forward_head/techneck-CWK{k}.jpg") for k in (60, 51)]
    rows += [("techneck", "techneck-BAS", N, f"normal/techneck-BAS-0-{k}.jpg") for k in range(4)]  # one short
    rows += [("techneck", "techneck-BAS", FH, f"forward_head/techneck-BAS-1-{k}.jpg") for k in range(5)]
    # snowsuno: person A's frames 0-176 upright, B's 192-464; forward head A 0-32, B 352-576
    rows += [("snowsuno", "snowsuno-dataset1", N, f"normal/snowsuno-dataset1-0-{k:04d}.jpg") for k in range(0, 96, 16)]
    rows += [("snowsuno", "snowsuno-dataset1", N, f"normal/snowsuno-dataset1-0-{k:04d}.jpg") for k in (192, 208)]
    rows += [("snowsuno", "snowsuno-dataset1", FH, f"forward_head/snowsuno-dataset1-1-{k:04d}.jpg") for k in (0, 16)]
    rows += [("snowsuno", "snowsuno-dataset1", FH, f"forward_head/snowsuno-dataset1-1-{k:04d}.jpg") for k in (352,)]
    frame = _frame(rows)
    plans, skipped = plan_sessions(frame, cfg)
    by_name = {p.name: p for p in plans}
    cwk = by_name["techneck-CWK"]
    files = [Path(frame.at[i, "source_path"]).name for i in cwk.rows]
    assert files == [f"techneck-CWK{k}.jpg" for k in (1, 2, 9, 10, 11, 51, 60)]  # numbers read as numbers
    assert cwk.several_people is None and cwk.person is None
    assert "techneck-BAS" not in by_name and skipped["techneck-BAS"] == "4 normal (needs 5)"
    whole = by_name["snowsuno-dataset1"]
    assert whole.several_people is not None and "three people" in whole.several_people
    a = by_name["snowsuno-dataset1 / A (round glasses, blue cardigan)"]
    assert a.person is not None and len(a.rows) == 8  # six upright and two forward-head photos of A, no one else's
    assert all(int(frame.at[i, "source_path"][-8:-4]) <= 176 for i in a.rows)
    assert skipped["snowsuno-dataset1 / B (long hair, glasses)"] == "2 normal (needs 5), 1 forward_head (needs 2)"
    assert natural_key("x-9.jpg") < natural_key("x-10.jpg")


class ByPhoto(FakeDetector):
    """A stand-in BlazePose that answers by which photo it is shown (its first pixel holds the photo's number)."""

    def __init__(self, marks: list[np.ndarray | None]) -> None:
        super().__init__()
        self.marks = marks

    def detect(self, image: np.ndarray) -> np.ndarray | None:
        return self.marks[int(image[0, 0, 0])]


def test_the_replay_takes_the_first_measurable_upright_photos_as_the_baseline_and_scores_the_rest(run) -> None:
    out, _ = run
    # this person's camera makes their upright look dropped (0.55): uncalibrated, it reads as forward head
    upright, slumped, passer_by = person(0.55), person(1.0), person(0.55, dx=150.0, size=0.6)
    script = [(FH, slumped), (N, None), (N, upright), (N, upright), (N, upright), (N, passer_by)]
    script += [(FH, slumped), (N, upright), (FH, slumped)]
    photos = [np.full((300, 400, 3), k, np.uint8) for k in range(len(script))]
    predictor = Predictor.from_run(out, detector=ByPhoto([marks for _, marks in script]))
    replay = replay_session(predictor, photos, [label for label, _ in script], baseline_photos=3)
    assert replay is not None
    assert replay.baseline == [2, 3, 4]  # photo 1 shows nobody: not a baseline photo, scored (not assessed)
    assert replay.scored == [0, 1, 5, 6, 7, 8]
    y = np.array([0, 1, 1, 0, 1, 0])
    answers = {c: replay.labels(c).tolist() for c in CONDITIONS}
    assert answers["baseline"] == [0, NOT_ASSESSED, 1, 0, 1, 0]
    assert answers["no_baseline"] == [0, NOT_ASSESSED, 0, 0, 0, 0]  # the camera's offset, uncorrected
    # as a stream, the photo whose shoulders jumped is someone else's and is not assessed
    assert answers["stream"] == [0, NOT_ASSESSED, NOT_ASSESSED, 0, 1, 0]
    assert replay.rows["stream"][2].event == "another_person" and not replay.baseline_dropped
    assert score(y, replay.labels("baseline"))["balanced_accuracy"] == pytest.approx((1.0 + 2 / 3) / 2, abs=1e-4)
    assert score(y, replay.labels("no_baseline"))["balanced_accuracy"] == 0.5
    assert replay.views == ["front", "none", "front", "front", "front", "front"]
    assert replay_session(predictor, photos, [label for label, _ in script], baseline_photos=6) is None


def test_scores_count_a_photo_not_assessed_as_wrong_and_the_report_states_each_bar() -> None:
    y, pred = np.array([0, 0, 1, 1]), np.array([0, NOT_ASSESSED, 1, 0])
    s = score(y, pred)
    assert s["balanced_accuracy"] == 0.5 and s["coverage"] == 0.75
    assert s["confusion"] == [[1, 0, 1], [1, 1, 0]]
    assert score(np.array([0, 0]), np.array([0, 0]))["balanced_accuracy"] is None  # one class: no balanced accuracy

    def session(name: str, with_baseline: float, without: float, several: str | None = None) -> dict:
        scored = {"balanced_accuracy": with_baseline, "coverage": 1.0, "n": 10, "confusion": [[5, 0, 0], [0, 5, 0]]}
        plain = {**scored, "balanced_accuracy": without}
        return {
            "session": name,
            "source": name,
            "person": None,
            "several_people": several,
            "scored": {FH: 5, N: 5},
            "views": {"side": 10},
            "baseline": scored,
            "no_baseline": plain,
            "stream": plain,
            "median_p_forward_with_baseline": {FH: 0.45, N: 0.1},
            "stream_events": {"another_person": 0, "camera_moved": 0, "baseline_dropped": False},
            "no_baseline_agrees_with_photo_path": 1.0,
        }

    sessions = [session("one", 0.99, 0.7), session("two", 0.92, 0.8), session("crowd", 0.5, 0.5, "many people")]
    summary = summarise(sessions)
    assert summary["one_person_sessions"] == 2  # the crowd is reported apart, not in the bars
    assert summary["baseline"] == {"worst": 0.92, "mean": 0.955} and summary["no_baseline"]["mean"] == 0.75
    assert summary["bar_every_session_090"] and summary["bar_mean_095"]
    payload = {
        "protocol": {"baseline_photos": 3, "min_per_class_scored": 2, "run": "the defaults"},
        "ingest": {"kept": 30},
        "sessions": sessions,
        "skipped": {"solo": "1 normal (needs 5)"},
        "summary": summary,
        "per_view": {"one_person": {}, "several_people": {}},
        "seconds_total": 1.0,
        "machine": {"cpu_count": 2, "load_average_at_start": (1.0, 1.0, 1.0)},
    }
    text = to_markdown(payload)
    assert "worst 0.920 (bar ≥ 0.90: **met**), mean 0.955 (bar ≥ 0.95: **met**)" in text
    assert text.index("| crowd |") > text.index("## Several people")
    sessions[1]["baseline"] = {**sessions[1]["baseline"], "balanced_accuracy": 0.8}
    text = to_markdown({**payload, "summary": summarise(sessions)})
    assert "**not met**" in text and "Below 0.90 with the baseline: two" in text


def test_no_run_sees_the_source_whose_sessions_it_replays(tmp_path: Path) -> None:
    data = make_pose_dataset(tmp_path / "data", sources=3)
    frame = pd.read_csv(data / "manifest.csv")
    seen: dict[str, set[str]] = {}

    def spy(candidate, fold_dir, run_dir, rows, cfg, detector):  # type: ignore[no-untyped-def]
        fold = pd.read_csv(fold_dir / "manifest.csv")
        source = str(rows["source"].iloc[0])
        seen[source] = set(fold.loc[fold["split"] != "test", "source"])
        assert set(rows["source"]) == {source} and candidate.options == {}  # the defaults, no option
        return np.zeros(len(rows), dtype=int)

    cfg = SessionsConfig(real=tmp_path, work=tmp_path / "work")
    runs = train_runs(cfg, frame, data, ["session0", "session2"], None, trainer=spy)
    assert seen == {"session0": {"session1", "session2"}, "session2": {"session0", "session1"}}
    assert set(runs["session0"][1]) == set(np.flatnonzero(frame["source"] == "session0"))


def test_a_folder_without_the_real_photos_is_one_error_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, restore_logging: None
) -> None:
    with caplog.at_level(logging.ERROR, logger="bench.sessions"):
        assert main(["--real", str(tmp_path), "--no-write"]) == 2
    assert caplog.messages[-1].startswith("error: ") and "manifest.csv" in caplog.messages[-1]
