"""The web demo's Live tab without a browser (app.live, app.live_page): one sitting per tab, fed frames on a
fake clock through the stand-in BlazePose; what the page gets back, the alert, the baseline step, pause,
the CSV, and each tab's sitting freed when the tab goes."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from _pose_helpers import FakeDetector, fake_pose_run
from _serving_helpers import make_run
from app.config import AppConfig
from app.live import (
    ALERT_SHOWN_SECONDS,
    CSV_COLUMNS,
    LIVE_DIR,
    OVERLAY_SIDE,
    LiveError,
    LiveSession,
    LiveSessions,
    LiveView,
)
from app.live_timeline import Timeline
from posture.cli import UserError, run_main
from posture.inference.predict import Predictor
from posture.io.csvcells import read_csv
from posture.sitting.session import CALIBRATING, FORWARD, NOT_ASSESSED, PAUSED, UPRIGHT, WatchConfig

FPS = 5
#: The stand-in BlazePose reads a bright frame as an upright head, a dim one as a dropped head.
UPRIGHT_LEVEL, FORWARD_LEVEL = 190, 40


class CountingDetector(FakeDetector):
    """The stand-in BlazePose, counting how often it was closed (a real one frees its graph then)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__()
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


class Clock:
    """A fake monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with fake_pose_run(tmp_path_factory.mktemp("live"), CountingDetector) as out:
        yield Predictor.from_run(out, backend="torch")


def sessions(predictor: Predictor, **watch: float) -> tuple[LiveSessions, Clock]:
    clock = Clock()
    return LiveSessions(predictor, WatchConfig(**watch), clock=clock, detector_factory=CountingDetector), clock


def frame(level: int) -> np.ndarray:
    return np.full((120, 160, 3), level, np.uint8)


def feed(live: LiveSession, clock: Clock, level: int, seconds: float, muted: bool = False) -> list[LiveView]:
    views = []
    for _ in range(round(seconds * FPS)):
        views.append(live.frame(frame(level), muted=muted))
        clock.now += 1.0 / FPS
    return views


def attribute(markup: str, name: str) -> str:
    found = re.search(rf'{name}="([^"]*)"', markup)
    assert found, f"no {name} in {markup[:200]}"
    return found.group(1)


def test_each_frame_shows_the_state_the_landmarks_inline_and_a_timeline_that_grows(predictor: Predictor) -> None:
    live_sessions, clock = sessions(predictor, smoothing_seconds=1.0)
    live = live_sessions.get("tab")
    views = feed(live, clock, UPRIGHT_LEVEL, 4.0)
    assert attribute(views[-1].status, "data-state") == UPRIGHT
    assert "Upright" in views[-1].status and attribute(views[-1].status, "data-frames") == str(len(views))
    assert float(attribute(views[-1].status, "data-fps")) == pytest.approx(FPS, rel=0.01)
    # the picture travels inside the HTML, a JPEG of at most OVERLAY_SIDE pixels, with the landmarks drawn
    src = attribute(views[-1].overlay or "", "src")
    assert src.startswith("data:image/jpeg;base64,")
    drawn = np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB"))
    assert max(drawn.shape[:2]) <= OVERLAY_SIDE and not np.all(drawn == UPRIGHT_LEVEL)
    # the timeline is redrawn about once a second (not every frame), each time with more of the sitting
    drawn_timelines = [v.timeline for v in views if v.timeline is not None]
    assert 3 <= len(drawn_timelines) <= 6
    points = [int(attribute(t, "data-points")) for t in drawn_timelines]
    seconds = [float(attribute(t, "data-seconds")) for t in drawn_timelines]
    assert points == sorted(points) and points[-1] > points[0]
    assert seconds == sorted(seconds) and seconds[0] == 0.0 and seconds[-1] >= 3.0
    assert "<polyline" in drawn_timelines[-1]


def test_the_alert_banner_comes_after_the_configured_stretch_stays_a_while_and_beeps_unless_muted(
    predictor: Predictor,
) -> None:
    live_sessions, clock = sessions(predictor, alert_after=3.0, cooldown=60.0, smoothing_seconds=1.0)
    live = live_sessions.get("tab")
    feed(live, clock, UPRIGHT_LEVEL, 4.0)
    views = feed(live, clock, FORWARD_LEVEL, 15.0)
    states = [attribute(v.status, "data-state") for v in views]
    entered = states.index(FORWARD) / FPS
    banners = [(i / FPS, v.alert) for i, v in enumerate(views) if v.alert is not None]
    shown = [t for t, markup in banners if 'class="live-alert"' in markup]
    assert len(shown) == 1  # the banner is sent when it changes, not with every frame
    assert shown[0] == pytest.approx(entered + 3.0, abs=1.0 / FPS + 1e-9)
    banner = dict(banners)[shown[0]]
    assert attribute(banner, "data-alert") == "1" and attribute(banner, "data-sound") == "on"
    assert 'role="alert"' in banner and "sit back and lift your head" in banner
    hidden = [t for t, markup in banners if "live-alert-none" in markup and t > shown[0]]
    assert hidden and hidden[0] == pytest.approx(shown[0] + ALERT_SHOWN_SECONDS, abs=1.0 / FPS + 1e-9)
    assert attribute(views[-1].status, "data-alerts") == "1"
    # muting changes the banner (so the page hears of it) and turns its sound off
    muted = feed(live, clock, FORWARD_LEVEL, 0.4, muted=True)
    assert muted[0].alert is not None and attribute(muted[0].alert, "data-sound") == "off"
    assert muted[1].alert is None


def test_the_baseline_step_counts_down_then_compares_the_person_with_themselves(predictor: Predictor) -> None:
    live_sessions, clock = sessions(predictor, baseline_seconds=3.0, smoothing_seconds=0.5)
    live = live_sessions.get("tab")
    assert "No baseline yet" in feed(live, clock, UPRIGHT_LEVEL, 1.0)[-1].status
    assert "3 seconds" in live.calibrate()
    steps = feed(live, clock, 120, 4.0)  # this person's upright looks half dropped to the run
    assert attribute(steps[0].status, "data-state") == CALIBRATING
    countdown = [re.search(r"calibrating, (\d) s left", v.status) for v in steps]
    left = [int(m.group(1)) for m in countdown if m]
    assert left[0] == 3 and left == sorted(left, reverse=True) and 0 in left
    assert live.session.baseline_source == "calibration step"
    after = feed(live, clock, 120, 3.0)
    assert attribute(after[-1].status, "data-state") == UPRIGHT  # their own upright is upright
    assert "Baseline: your own upright posture (calibration step)" in after[-1].status


def test_pause_ignores_frames_and_stops_the_clock_until_resumed(predictor: Predictor) -> None:
    live_sessions, clock = sessions(predictor, smoothing_seconds=0.5)
    live = live_sessions.get("tab")
    feed(live, clock, UPRIGHT_LEVEL, 3.0)
    watched = live.summary()["watched_seconds"]
    calls = live.detector.calls
    assert live.toggle_pause() is True
    paused = feed(live, clock, FORWARD_LEVEL, 30.0)
    assert {attribute(v.status, "data-state") for v in paused} == {PAUSED}
    assert live.detector.calls == calls  # no frame analysed while paused
    assert live.summary()["watched_seconds"] == watched
    assert live.toggle_pause() is False
    resumed = feed(live, clock, UPRIGHT_LEVEL, 2.0)
    assert attribute(resumed[-1].status, "data-state") == UPRIGHT
    assert live.summary()["watched_seconds"] == pytest.approx(watched + 2.0, abs=0.5)


def test_a_new_sitting_forgets_the_record_and_the_baseline(predictor: Predictor) -> None:
    live_sessions, clock = sessions(predictor, baseline_seconds=1.0)
    live = live_sessions.get("tab")
    live.calibrate()
    feed(live, clock, UPRIGHT_LEVEL, 3.0)
    assert live.session.baseline is not None and live.session.rows
    live.reset()
    assert live.session.baseline is None and not live.session.rows and not live.timeline.points
    assert attribute(feed(live, clock, UPRIGHT_LEVEL, 0.2)[0].status, "data-frames") == "1"


def test_the_csv_holds_one_row_per_frame_in_words_and_numbers_and_no_picture(
    predictor: Predictor, tmp_path: Path
) -> None:
    live_sessions, clock = sessions(predictor, smoothing_seconds=1.0)
    live = live_sessions.get("tab")
    with pytest.raises(LiveError, match="Nothing has been watched yet"):
        live.write_csv(tmp_path / LIVE_DIR)
    assert not (tmp_path / LIVE_DIR).exists()  # nothing is written before it is asked for and possible
    feed(live, clock, UPRIGHT_LEVEL, 2.0)
    feed(live, clock, 0, 4.0)  # nobody in the picture
    path, rows = live.write_csv(tmp_path / LIVE_DIR)
    assert path.parent == tmp_path / LIVE_DIR and path.suffix == ".csv" and rows == 30
    table = read_csv(path)
    assert list(table.columns) == CSV_COLUMNS and len(table) == rows
    assert list(table["state"].iloc[[0, -1]]) == [UPRIGHT, NOT_ASSESSED]
    assert table["label"].iloc[0] == "normal" and table["reason"].iloc[-1]  # why the last frames were not assessed
    assert table["time"].iloc[0] == 0.0 and table["time"].iloc[-1] == pytest.approx(29 / FPS)
    text = path.read_bytes()
    assert max(len(line) for line in text.splitlines()) < 400  # words and numbers, no encoded picture
    assert b"base64" not in text and b"\xff\xd8" not in text
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [path.name]


def test_each_tab_has_its_own_sitting_and_a_closed_tab_frees_it_and_its_blazepose_graph(
    predictor: Predictor,
) -> None:
    live_sessions, clock = sessions(predictor)
    first, second = live_sessions.get("tab-1"), live_sessions.get("tab-2")
    assert first is not second and first.detector is not second.detector and len(live_sessions) == 2
    assert first.predictor.detector is first.detector and second.predictor.detector is second.detector
    assert first.predictor.model is predictor.model  # one network for every tab, a graph each
    assert live_sessions.get("tab-1") is first
    feed(first, clock, FORWARD_LEVEL, 1.0)
    assert first.session.rows and not second.session.rows  # tabs share nothing
    live_sessions.release(first)  # gr.State's delete callback: the tab's state expired
    assert len(live_sessions) == 1 and first.detector.closed == 1 and first.closed
    live_sessions.release(first)  # a second release (unload, then expiry) closes nothing twice
    assert first.detector.closed == 1
    with pytest.raises(LiveError, match="closed"):
        first.frame(frame(UPRIGHT_LEVEL))
    live_sessions.release_key("tab-2")  # Blocks.unload: the tab was closed
    live_sessions.release_key("never-opened")
    live_sessions.release(None)
    assert len(live_sessions) == 0 and second.detector.closed == 1
    assert live_sessions.get("tab-1") is not first  # the same tab reloaded starts afresh


def test_the_number_of_open_sittings_is_bounded(predictor: Predictor) -> None:
    clock = Clock()
    live_sessions = LiveSessions(predictor, WatchConfig(), max_open=2, clock=clock, detector_factory=CountingDetector)
    live_sessions.get("a")
    live_sessions.get("b")
    with pytest.raises(LiveError, match="2 live sessions are open"):
        live_sessions.get("c")
    live_sessions.release_key("a")
    live_sessions.get("c")
    live_sessions.close_all()
    assert len(live_sessions) == 0


def test_the_timeline_keeps_the_whole_sitting_in_a_bounded_number_of_points() -> None:
    timeline = Timeline(max_points=50, step=0.5)
    for i in range(10_000):  # an hour at about 3 frames a second
        t = i * 0.36
        timeline.add(t, 0.5 + 0.4 * np.sin(t / 60), FORWARD if np.sin(t / 60) > 0 else UPRIGHT, alert=i == 4_321)
    assert len(timeline.points) <= 50
    assert timeline.start == 0.0 and timeline.points[0].time <= timeline.step  # from the start...
    assert timeline.points[-1].time == pytest.approx(9_999 * 0.36)  # ...to the last frame
    assert sum(p.alert for p in timeline.points) == 1  # an alert is never merged away
    svg = timeline.svg(0.6, 0.4)
    assert svg.startswith("<svg") and svg.count('class="alert-mark"') == 1
    assert attribute(svg, "data-points") == str(len(timeline.points)) and len(svg) < 20_000


# ------------------------------------------------------------------------------------------- the page


@pytest.fixture()
def page(predictor: Predictor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The whole demo page around the pose run, built as `python -m app` builds it."""
    import posture.pose.detector as pose
    from app.demo import build_demo

    monkeypatch.setattr(pose, "PoseDetector", CountingDetector)
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    config = AppConfig(live_alert_after=3.0, live_fps=8.0, live_sessions=3, cam=False)
    return build_demo(predictor, config, tmp_path / "work"), tmp_path


def _event(demo: Any, api_name: str) -> Any:
    return next(fn for fn in demo.fns.values() if fn.api_name == api_name)


def _jpeg(level: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame(level)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_the_page_streams_frames_that_are_dropped_not_queued_and_frees_a_closed_tabs_sitting(page: Any) -> None:
    import gradio as gr

    demo, tmp_path = page
    stream = _event(demo, "live_frame")
    assert stream.connection == "stream"  # Gradio keeps only the newest frame of a stream: late ones drop
    assert stream.stream_every == pytest.approx(1 / 8.0) and stream.concurrency_limit == 3
    assert stream.time_limit and stream.time_limit > 0  # turns end, so waiting tabs get theirs
    (state,) = [b for b in stream.inputs if isinstance(b, gr.State)]
    sessions = state.delete_callback.__self__
    assert isinstance(sessions, LiveSessions) and 0 < state.time_to_live < float("inf")
    assert sessions.watch.alert_after == 3.0
    unload = [fn for fn in demo.fns.values() if any(t[1] == "unload" for t in fn.targets)]
    assert len(unload) == 1

    request = SimpleNamespace(session_hash="tab-a")
    overlay, status, _, _, live = stream.fn(_jpeg(UPRIGHT_LEVEL), None, False, request)
    assert overlay.startswith('<img class="live-overlay"') and "data:image/jpeg;base64," in overlay
    assert attribute(status, "data-frames") == "1" and len(sessions) == 1
    assert stream.fn(_jpeg(UPRIGHT_LEVEL), live, False, request)[-1] is live  # the tab keeps its sitting
    refused = stream.fn(b"%PDF-1.4 not a frame", live, False, request)
    assert "could not be read" in refused[1] and refused[-1] is live
    unload[0].fn(SimpleNamespace(session_hash="tab-b"))  # another tab closing frees nothing of this one
    assert len(sessions) == 1
    unload[0].fn(request)
    assert len(sessions) == 0 and live.closed and live.detector.closed == 1
    # frames never became files: not in Gradio's cache, not in the app's folder, not anywhere under tmp
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_the_page_buttons_calibrate_pause_and_download(page: Any) -> None:
    demo, tmp_path = page
    stream = _event(demo, "live_frame")
    request = SimpleNamespace(session_hash="tab")
    live, note = _event(demo, "live_calibrate").fn(None, request)  # before any frame: the sitting opens
    assert isinstance(live, LiveSession) and "Sit upright" in note
    assert "calibrating" in stream.fn(_jpeg(UPRIGHT_LEVEL), live, False, request)[1]
    _, button, note = _event(demo, "live_pause").fn(live, request)
    assert button.value == "Resume" and "Paused" in note
    assert attribute(stream.fn(_jpeg(UPRIGHT_LEVEL), live, False, request)[1], "data-state") == PAUSED
    _, button, _ = _event(demo, "live_pause").fn(live, request)
    assert button.value == "Pause"
    _, csv_path, note = _event(demo, "live_download").fn(live, request)
    assert Path(csv_path).parent == tmp_path / "work" / LIVE_DIR and "2 rows" in note
    _, button, note = _event(demo, "live_reset").fn(live, request)
    assert not live.session.rows and "new sitting" in note.lower()


def test_a_run_that_reads_no_geometry_gets_a_note_instead_of_the_live_tab(tmp_path: Path) -> None:
    import gradio as gr

    from app.live_page import live_tab

    cnn = Predictor.from_run(make_run(tmp_path / "cnn"), backend="torch")
    with gr.Blocks() as demo:
        assert live_tab(cnn, AppConfig(), tmp_path) is None
    notes = [b.value for b in demo.blocks.values() if isinstance(b, gr.Markdown)]
    assert any("needs a pose-based run" in str(n) for n in notes)
    with pytest.raises(UserError, match="pose-based run"):
        LiveSessions(cnn, WatchConfig())


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--live-fps", "0"], "--live-fps"),
        (["--live-fps", "500"], "--live-fps"),
        (["--live-sessions", "0"], "--live-sessions"),
        (["--live-alert-after", "-1"], "--live-alert-after"),
        (["--live-alert-after", "nan"], "--live-alert-after"),
    ],
)
def test_live_options_refuse_values_no_server_can_use(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.__main__ import main

    assert run_main(main, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and flag in err and "Traceback" not in err
