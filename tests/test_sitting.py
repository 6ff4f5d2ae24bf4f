"""Watching a sitting (posture.sitting.session.Session): hysteresis, alert timing on a fake clock, the personal
baseline, the camera moving, the main person kept when someone walks past, pause, the record."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pytest

from _pose_helpers import FakeDetector, fake_pose_run, frontal_landmarks
from posture.cli import UserError
from posture.inference.predict import Predictor
from posture.sitting.session import CALIBRATING, FORWARD, NOT_ASSESSED, PAUSED, UPRIGHT, Session, WatchConfig

FRAME = np.full((300, 400, 3), 128, np.uint8)
FPS = 5


class Scripted(FakeDetector):
    """A stand-in BlazePose that answers from a script: one landmark array (or None) per frame."""

    def __init__(self) -> None:
        super().__init__()
        self.script: list[np.ndarray | None] = []

    def detect(self, image: np.ndarray) -> np.ndarray | None:
        return self.script.pop(0)


def person(drop: float, dx: float = 0.0, size: float = 1.0) -> np.ndarray:
    """The stand-in person: ``drop`` 0 upright ... 1 head fully dropped; moved by ``dx`` px, scaled by ``size``."""
    lm = frontal_landmarks(400, 300, drop)
    lm[:, :2] = (lm[:, :2] - [200.0, 150.0]) * size + [200.0 + dx, 150.0]
    return lm


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    with fake_pose_run(tmp_path_factory.mktemp("sitting")) as out:
        yield out, None


def session(run, **options: float) -> tuple[Session, Scripted]:
    out, _ = run
    detector = Scripted()
    return Session(Predictor.from_run(out, detector=detector), WatchConfig(**options)), detector


def feed(s: Session, detector: Scripted, frames: Iterable[np.ndarray | None], start: float) -> list:
    results = []
    for i, lm in enumerate(frames):
        detector.script.append(lm)
        results.append(s.update(FRAME, start + i / FPS))
    return results


def test_a_glance_away_flips_nothing_and_a_lasting_forward_head_does(run) -> None:
    s, det = session(run, smoothing_seconds=3.0)
    upright = feed(s, det, [person(0.0)] * (10 * FPS), 0.0)
    assert upright[-1].state == UPRIGHT
    glance = feed(s, det, [person(0.75)] + [person(0.0)] * (5 * FPS), 10.0)
    assert glance[0].label == FORWARD  # the frame itself says forward head...
    assert all(r.state == UPRIGHT for r in glance)  # ...the sitting does not
    slump = feed(s, det, [person(0.75)] * (10 * FPS), 20.0)
    first = next(r.time for r in slump if r.state == FORWARD)
    assert 20.0 < first < 25.0  # it takes a few seconds of smoothing to call it
    assert slump[-1].state == FORWARD and slump[-1].forward_for == pytest.approx(slump[-1].time - first)


def test_an_alert_comes_after_the_configured_stretch_then_waits_out_the_cooldown(run) -> None:
    s, det = session(run, alert_after=10.0, cooldown=30.0, smoothing_seconds=1.0)
    feed(s, det, [person(0.0)] * (5 * FPS), 0.0)
    rows = feed(s, det, [person(0.75)] * (60 * FPS), 5.0)
    entered = next(r.time for r in rows if r.state == FORWARD)
    alerts = [r.time for r in rows if r.alert]
    assert alerts[0] == pytest.approx(entered + 10.0, abs=1.0 / FPS + 1e-9)
    assert alerts[1] - alerts[0] == pytest.approx(30.0, abs=1.0 / FPS + 1e-9)  # the cooldown
    assert "forward head for" in next(r for r in rows if r.alert).message
    assert s.summary()["alerts"] == len(alerts) == 2


def test_no_alert_when_the_head_comes_back_before_the_stretch_ends(run) -> None:
    s, det = session(run, alert_after=10.0, smoothing_seconds=1.0)
    rows = feed(s, det, ([person(0.75)] * (6 * FPS) + [person(0.0)] * (6 * FPS)) * 3, 0.0)
    assert not any(r.alert for r in rows)
    assert s.summary()["longest_forward_seconds"] < 10.0


def test_the_calibration_step_sets_a_personal_baseline_that_answers_are_relative_to(run) -> None:
    s, det = session(run, baseline_seconds=3.0, smoothing_seconds=0.5)
    s.calibrate()
    steps = feed(s, det, [person(0.3)] * (4 * FPS), 0.0)  # this person's camera makes upright look dropped
    assert steps[0].state == CALIBRATING and "sit upright" in steps[0].message
    assert s.baseline is not None and s.baseline_source == "calibration step"
    after = feed(s, det, [person(0.3)] * (3 * FPS), 10.0)
    assert after[-1].state == UPRIGHT  # their own upright is upright
    worse = feed(s, det, [person(1.0)] * (5 * FPS), 20.0)  # beyond any training photo: still an answer
    assert worse[-1].state == FORWARD
    assert "than your upright baseline" in worse[-1].deviation and " cm " in worse[-1].deviation


def test_without_the_step_the_most_upright_stretch_becomes_the_baseline(run) -> None:
    s, det = session(run, auto_baseline_after=20.0, auto_baseline_window=4.0)
    feed(s, det, [person(0.8)] * (10 * FPS) + [person(0.1)] * (6 * FPS) + [person(0.8)] * (6 * FPS), 0.0)
    assert s.baseline_source == "most upright stretch"
    det.script.append(person(0.1))  # the upright stretch's own geometry
    reference = s.base.analyse(FRAME).geometry
    np.testing.assert_allclose(s.baseline, reference, atol=1e-6)


def test_someone_walking_past_changes_nothing_and_a_moved_camera_asks_to_calibrate_again(run) -> None:
    s, det = session(run, camera_moved_seconds=3.0, smoothing_seconds=1.0)
    det.script.append(person(0.0))
    s.set_baseline(s.base.analyse(FRAME).geometry)
    feed(s, det, [person(0.0)] * (5 * FPS), 0.0)
    passer = feed(s, det, [person(0.75, dx=150.0, size=0.6)] * 2 + [person(0.0)] * (2 * FPS), 5.0)
    assert passer[0].label is None and passer[0].event == "another_person" and "someone else" in passer[0].reason
    assert all(r.state == UPRIGHT for r in passer)  # the main person's state held
    assert s.baseline is not None
    moved = feed(s, det, [person(0.0, dx=60.0, size=1.4)] * (5 * FPS), 10.0)
    events = [r.event for r in moved if r.event]
    assert events[0] == "another_person" and "camera_moved" in events
    assert s.baseline is None  # the baseline belonged to the old camera
    assert any("calibrate again" in e["event"] for e in s.summary()["events"])
    assert moved[-1].event is None  # the new place is the anchor now


def test_pause_stops_the_clock_and_the_record_adds_up(run) -> None:
    s, det = session(run, smoothing_seconds=0.5)
    feed(s, det, [person(0.0)] * (10 * FPS), 0.0)
    s.pause()
    paused = [s.update(FRAME, 10.0 + i) for i in range(100)]
    assert all(r.state == PAUSED for r in paused) and not det.script
    s.resume()
    feed(s, det, [person(0.75)] * (10 * FPS) + [None] * (10 * FPS), 200.0)
    summary = s.summary()
    assert summary["watched_seconds"] == pytest.approx((10 * FPS - 1) / FPS + (20 * FPS - 1) / FPS)
    assert sum(summary["share"].values()) == pytest.approx(1.0, abs=1e-3)
    assert summary["share"][NOT_ASSESSED] > 0.1 and summary["share"][FORWARD] > 0.2
    assert s.rows[-1].state == NOT_ASSESSED and s.rows[-1].reason == "no person found in the photo"
    assert set(s.rows[-1].to_dict()) >= {"time", "label", "reason", "state", "smoothed", "alert"}


def test_a_run_without_geometry_cannot_watch(tmp_path) -> None:
    class CnnOnly:
        uses_pose = False
        config = {"architecture": "efficientnet_lite0"}

    with pytest.raises(UserError, match="pose-based run"):
        Session(CnnOnly())
    with pytest.raises(UserError, match="leave-forward"):
        WatchConfig(enter_forward=0.3, leave_forward=0.6)
