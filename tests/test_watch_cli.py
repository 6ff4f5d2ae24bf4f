"""python -m posture.watch: video files (a row per analysed frame, the timeline, the summary, --json, --fps),
the damaged files that must be one error line, and the camera loop (drops frames it has no time for, keys,
Ctrl-C) without a camera. The videos are made here, from frames the stand-in BlazePose reads: bright frames
sit upright, dim ones have the head dropped, black ones show nobody."""

from __future__ import annotations

import io
import itertools
import json
import math
import threading
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from _pose_helpers import FakeDetector, fake_pose_run
from _serving_helpers import make_run
from posture.cli import UserError, run_main
from posture.inference.predict import Predictor
from posture.io.csvcells import read_csv
from posture.io.video import VideoReader
from posture.sitting.camera import NewestFrame, TerminalDisplay, run_live
from posture.sitting.record import COLUMNS
from posture.sitting.session import CALIBRATING, FORWARD, NOT_ASSESSED, PAUSED, UPRIGHT, Session, WatchConfig
from posture.sitting.timeline import STATE_COLOURS, Timeline
from posture.sitting.watch import main, watch_camera, watch_video

pytestmark = pytest.mark.usefixtures("restore_logging")

FPS = 10
SIZE = (64, 48)  # width, height
#: (seconds, brightness): upright, a lasting forward head, nobody in view, upright again.
SCRIPT = [(6.0, 190), (10.0, 45), (5.0, 0), (4.0, 190)]
FRAMES = int(sum(s for s, _ in SCRIPT) * FPS)
#: Short enough for the script: an alert after 4 s of forward head, a baseline after 3 s assessed.
SITTING = [
    "--alert-after",
    "4",
    "--smoothing-seconds",
    "1",
    "--auto-baseline-after",
    "3",
    "--auto-baseline-window",
    "2",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    """A pose run trained on the stand-in BlazePose; the stand-in stays in place for the module's tests."""
    with fake_pose_run(tmp_path_factory.mktemp("watch")) as out:
        yield out


def script_frames(script: list[tuple[float, int]] = SCRIPT, fps: int = FPS) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    frames = []
    for seconds, level in script:
        for _ in range(int(seconds * fps)):
            noise = rng.normal(0, 4, size=(SIZE[1], SIZE[0], 3)) * (level > 0)  # nobody: a black frame
            frames.append(np.clip(level + noise, 0, 255).astype(np.uint8))
    return frames


def write_video(path: Path, frames: list[np.ndarray], fourcc: str = "MJPG", fps: int = FPS) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), float(fps), SIZE)
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} here"
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(scope="module")
def avi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("videos") / "sitting.avi", script_frames())


@pytest.fixture(scope="module")
def mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("videos") / "desk.mp4", script_frames(), fourcc="mp4v")


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


# ------------------------------------------------------------------------------------------ video files


def test_a_video_gives_a_row_per_frame_the_timeline_and_a_summary(run, avi, tmp_path, capsys) -> None:
    out = tmp_path / "records"
    code = run_main(main, [str(avi), "--run", str(run), "--out", str(out), *SITTING])
    assert code == 0
    record = out / "sitting"
    assert sorted(p.name for p in record.iterdir()) == ["frames.csv", "summary.json", "timeline.png"]
    rows = read_csv(record / "frames.csv")
    assert list(rows.columns) == COLUMNS and len(rows) == FRAMES  # one row per frame of the video
    assert np.allclose(rows["time"], np.arange(FRAMES) / FPS, atol=1e-3)
    by_second = rows.set_index("time")["state"]
    assert by_second.loc[5.0] == UPRIGHT and by_second.loc[15.5] == FORWARD
    assert by_second.loc[20.5] == NOT_ASSESSED and rows.loc[rows["time"] == 17.8, "label"].isna().all()
    assert "no person" in rows.loc[rows["time"] == 17.8, "reason"].iloc[0]
    assert by_second.loc[24.9] == UPRIGHT
    alerts = rows[rows["alert"]]
    assert len(alerts) == 1 and 10.0 < alerts["time"].iloc[0] < 16.0 and "forward head for" in alerts["message"].iloc[0]

    summary = json.loads((record / "summary.json").read_text())
    assert summary["video"] == "sitting.avi" and summary["frames"] == summary["frames_analysed"] == FRAMES
    assert summary["frames_read"] == FRAMES and summary["video_fps"] == FPS
    assert summary["duration_seconds"] == pytest.approx(FRAMES / FPS, abs=0.2)
    assert sum(summary["share"].values()) == pytest.approx(1.0, abs=1e-3)
    assert summary["share"][FORWARD] > 0.2 and summary["share"][UPRIGHT] > 0.2 and summary["share"][NOT_ASSESSED] > 0
    assert summary["alerts"] == 1 and summary["baseline"] == "most upright stretch"
    assert summary["config"]["alert_after"] == 4.0

    with Image.open(record / "timeline.png") as png:
        assert png.format == "PNG" and png.width > 400 and png.height > 150
        colours = {tuple(c) for c in np.asarray(png.convert("RGB")).reshape(-1, 3)}
    for state in (UPRIGHT, FORWARD, NOT_ASSESSED):  # the bands of the three states the video went through
        assert tuple(int(STATE_COLOURS[state][i : i + 2], 16) for i in (1, 3, 5)) in colours, state
    printed = capsys.readouterr().out
    assert "alert: forward head for" in printed and "sitting.avi: watched" in printed and "alerts: 1" in printed


def test_fps_analyses_a_subsample_and_every_analysed_frame_has_its_row(run, mp4, tmp_path) -> None:
    code = run_main(main, [str(mp4), "--run", str(run), "--out", str(tmp_path), "--fps", "2.5", *SITTING])
    assert code == 0
    rows = read_csv(tmp_path / "desk" / "frames.csv")
    assert len(rows) == math.ceil(FRAMES * 2.5 / FPS)
    assert np.allclose(np.diff(rows["time"]), 0.4, atol=1e-3)
    summary = json.loads((tmp_path / "desk" / "summary.json").read_text())
    assert summary["frames_read"] == FRAMES and summary["frames_analysed"] == summary["frames"] == len(rows)
    assert summary["analysed_fps"] == 2.5 and sum(summary["share"].values()) == pytest.approx(1.0, abs=1e-3)


def test_json_gives_one_object_per_analysed_frame_and_nothing_else_on_stdout(run, avi, tmp_path, capsys) -> None:
    code = run_main(main, [str(avi), "--run", str(run), "--out", str(tmp_path), "--json", "--fps", "5", *SITTING])
    assert code == 0
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert len(lines) == FRAMES // 2 == len(read_csv(tmp_path / "sitting" / "frames.csv"))
    assert {"video", "time", "label", "reason", "state", "smoothed", "alert", "message"} <= set(lines[0])
    assert all(line["video"] == "sitting.avi" for line in lines)
    unseen = [line for line in lines if line["label"] is None and line["state"] == NOT_ASSESSED and line["time"] > 16]
    assert unseen and all(line["reason"] for line in unseen)
    assert sum(line["alert"] for line in lines) == 1
    assert "sitting.avi: watched" in captured.err  # the summary goes to stderr, beside the frames' lines


def test_calibrate_starts_with_the_sit_upright_step(run, avi) -> None:
    stream = io.StringIO()
    predictor = Predictor.from_run(run, detector=FakeDetector())
    summary = watch_video(
        avi, predictor, WatchConfig(baseline_seconds=2.0), calibrate=True, as_json=True, stream=stream
    )
    rows = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["state"] for r in rows[:15]] == [CALIBRATING] * 15 and "sit upright" in rows[0]["message"]
    assert summary["baseline"] == "calibration step" and summary["frames"] == FRAMES


def test_a_video_ending_before_the_frames_it_declares_is_an_error(avi) -> None:
    reader = VideoReader(avi)
    reader.info = replace(reader.info, frame_count=2 * FRAMES)  # what a file cut short after its header says
    with pytest.raises(UserError, match="damaged or cut short: it declares 500 frames .* only 250 could be decoded"):
        list(reader)


def cut_in_half(source: Path, target: Path) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


def bad_video(case: str, folder: Path, avi: Path, mp4: Path) -> Path:
    """The hostile input ``case``, made in ``folder``."""
    if case == "a truncated avi":
        return cut_in_half(avi, folder / "cut.avi")
    if case == "a truncated mp4":
        return cut_in_half(mp4, folder / "cut.mp4")
    if case == "a zero-byte file":
        (folder / "empty.mp4").write_bytes(b"")
        return folder / "empty.mp4"
    if case == "a text file named .mp4":
        (folder / "notes.mp4").write_text("not a video\n" * 50)
        return folder / "notes.mp4"
    if case == "an unsupported extension":
        (folder / "clip.gif").write_bytes(avi.read_bytes())
        return folder / "clip.gif"
    if case == "a folder":
        (folder / "folder.mp4").mkdir()
        return folder / "folder.mp4"
    assert case == "a missing path"
    return folder / "nowhere.mp4"


BAD_VIDEOS = {
    "a truncated avi": "cut short",
    "a truncated mp4": "not a video OpenCV can read",
    "a zero-byte file": "empty (0 bytes)",
    "a text file named .mp4": "not a video OpenCV can read",
    "a missing path": "no such file",
    "an unsupported extension": "not a video file this command reads",
    "a folder": "not a regular file",
}


@pytest.mark.parametrize("case", list(BAD_VIDEOS))
def test_a_damaged_or_unsupported_video_is_one_error_line_and_exit_2(case, run, avi, mp4, tmp_path, capfd) -> None:
    phrase = BAD_VIDEOS[case]
    (tmp_path / "in").mkdir()
    bad = bad_video(case, tmp_path / "in", avi, mp4)
    out = tmp_path / "records"
    # the bad file comes second: it is named before the first is watched, and nothing is written
    assert run_main(main, [str(avi), str(bad), "--run", str(run), "--out", str(out)]) == 2
    captured = capfd.readouterr()  # the file descriptors: FFmpeg's own complaints would show here
    assert captured.out == "" and "Traceback" not in captured.err
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(bad) in lines[0], captured.err
    assert phrase in lines[0]
    assert not out.exists()


def test_a_record_is_not_replaced_without_overwrite_nor_a_folder_of_other_files(run, avi, tmp_path, capsys) -> None:
    args = [str(avi), "--run", str(run), "--out", str(tmp_path), "--fps", "2"]
    assert run_main(main, args) == 0
    first = (tmp_path / "sitting" / "summary.json").read_text()
    capsys.readouterr()
    assert run_main(main, args) == 2
    refused = f"{tmp_path / 'sitting'} already holds a watch's record; pass --overwrite to replace it"
    assert error_lines(capsys.readouterr().err) == [f"error: --out {tmp_path}: {refused}"]
    assert run_main(main, [*args, "--overwrite", "--fps", "5"]) == 0
    assert (tmp_path / "sitting" / "summary.json").read_text() != first
    (tmp_path / "sitting" / "sitting.avi").write_bytes(avi.read_bytes())  # a video kept beside its record
    capsys.readouterr()
    assert run_main(main, [*args, "--overwrite"]) == 2
    assert "holds other files (sitting.avi)" in capsys.readouterr().err
    assert (tmp_path / "sitting" / "sitting.avi").is_file()


def test_an_interrupted_watch_leaves_the_previous_record_whole(run, avi, tmp_path) -> None:
    class Interrupted(FakeDetector):
        def detect(self, image: np.ndarray) -> np.ndarray | None:
            if self.calls == 100:
                raise KeyboardInterrupt
            return super().detect(image)

    record = tmp_path / "sitting"
    watch_video(avi, Predictor.from_run(run, detector=FakeDetector()), WatchConfig(), fps=2.0, out=record)
    before = {p.name: p.read_bytes() for p in record.iterdir()}
    with pytest.raises(KeyboardInterrupt):
        watch_video(avi, Predictor.from_run(run, detector=Interrupted()), WatchConfig(), out=record)
    assert {p.name: p.read_bytes() for p in record.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["sitting"]  # no half-written staging folder left beside it


def test_usage_mistakes_are_one_error_line(run, avi, tmp_path, capsys) -> None:
    other = tmp_path / "b"
    other.mkdir()
    twin = write_video(other / "sitting.avi", script_frames([(1.0, 190)]))
    cnn = make_run(tmp_path / "cnn")
    cases = {
        "would both write their record to": [str(avi), str(twin), "--run", str(run)],
        "give video files or --camera": ["--run", str(run)],
        "reads no posture geometry": [str(avi), "--run", str(cnn), "--out", str(tmp_path / "o")],
        "--alert-after must be a number, not nan": [str(avi), "--run", str(run), "--alert-after", "nan"],
        "--leave-forward must be <= --enter-forward": [str(avi), "--run", str(run), "--leave-forward", "0.9"],
        "--fps must be a number above 0": [str(avi), "--run", str(run), "--fps", "0"],
        "not a trained run": [str(avi), "--run", str(tmp_path / "none"), "--out", str(tmp_path / "o")],
    }
    for phrase, argv in cases.items():
        assert run_main(main, argv) == 2, phrase
        err = capsys.readouterr().err
        assert len(error_lines(err)) == 1 and phrase in err and "Traceback" not in err, err
    assert not (tmp_path / "o" / "sitting").exists()


def test_without_run_the_newest_under_models_is_used(run, avi, tmp_path, monkeypatch) -> None:
    import shutil

    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="no trained run under models/"):
        main([str(avi)])
    shutil.copytree(run, tmp_path / "models" / "pose")
    assert main([str(avi), "--fps", "1", "-q"]) == 0
    assert (tmp_path / "watch" / "sitting" / "frames.csv").is_file()


def test_help_explains_both_modes_and_every_option_of_the_sitting(capsys) -> None:
    from dataclasses import fields

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for name in [f.name for f in fields(WatchConfig)]:
        assert f"--{name.replace('_', '-')}" in text
    assert "--camera INDEX" in text and "--fps" in text and "frames.csv" in text and "timeline.png" in text
    assert "(default: )" not in text  # the videos have no default to show


# --------------------------------------------------------------------------- memory that does not grow


def test_a_session_that_writes_its_rows_keeps_none_and_still_counts_them(run) -> None:
    session = Session(Predictor.from_run(run, detector=FakeDetector()), keep_rows=0)
    frame = np.full((48, 64, 3), 190, np.uint8)
    for i in range(1000):
        session.update(frame, i / FPS)
        assert len(session.rows) <= 64
    assert session.summary()["frames"] == 1000


def test_the_timeline_stays_bounded_and_keeps_the_shares_and_the_alerts() -> None:
    from posture.sitting.session import FrameResult

    timeline = Timeline(capacity=64)
    for i in range(10_000):
        state = FORWARD if i % 10 < 3 else UPRIGHT  # 30 % forward head, in short stretches
        timeline.add(FrameResult(i / 10, None, None, None, state, 0.7 if state == FORWARD else 0.2, alert=i == 5000))
    assert len(timeline.bins) <= 64
    assert sum(sum(b.states) for b in timeline.bins) == 10_000
    forward = sum(b.states[1] for b in timeline.bins) / 10_000
    assert forward == pytest.approx(0.3)
    assert timeline.alerts == [500.0] and timeline.duration == pytest.approx(999.9)
    assert np.nanmean([b.smoothed for b in timeline.bins]) == pytest.approx(0.35, abs=0.01)


# ---------------------------------------------------------------------------------------- the camera


class FastCamera:
    """A stand-in webcam that delivers frames as fast as it is read: ``total`` of them, then none (unplugged);
    ``None``: for ever. Each frame carries its number in its first pixel (blue, green: low and high byte)."""

    def __init__(self, total: int | None, level: int = 190, paced: bool = False) -> None:
        self.total, self.level = total, level
        self.count = 0
        self.changed = threading.Condition()
        #: Paced: the next frame comes once the display has shown the last (:meth:`allow_one`), one read each.
        self.allowed = 1 if paced else None
        self.stopped = False

    def read(self) -> tuple[bool, np.ndarray | None]:
        with self.changed:
            if self.allowed is not None:
                self.changed.wait_for(lambda: self.count < self.allowed or self.stopped, timeout=30)
            if self.stopped or (self.total is not None and self.count >= self.total):
                return False, None
            self.count += 1
            number = self.count
            self.changed.notify_all()
        frame = np.full((SIZE[1], SIZE[0], 3), self.level, np.uint8)
        frame[0, 0, :2] = (number % 256, number // 256)
        return True, frame

    def wait_until(self, count: int) -> None:
        with self.changed:
            self.changed.wait_for(lambda: self.count >= count or self.count == self.total, timeout=30)

    def allow_one(self) -> None:
        with self.changed:
            self.allowed = (self.allowed or 0) + 1
            self.changed.notify_all()

    def stop(self) -> None:
        with self.changed:
            self.stopped = True
            self.changed.notify_all()

    def release(self) -> None:
        self.stop()


class SlowDetector(FakeDetector):
    """Answers a frame only once the camera has delivered ``lag`` more: an analysis slower than the camera."""

    def __init__(self, camera: FastCamera, lag: int) -> None:
        super().__init__()
        self.camera, self.lag = camera, lag
        self.seen: list[int] = []

    def detect(self, image: np.ndarray) -> np.ndarray | None:
        self.seen.append(int(image[0, 0, 2]) + 256 * int(image[0, 0, 1]))  # RGB here: blue is last
        self.camera.wait_until(self.camera.count + self.lag)
        return super().detect(image)


class ScriptedDisplay:
    """A display that records what it was shown (and passes it on to ``inner``), presses ``keys`` when it has
    shown so many frames, and raises Ctrl-C's KeyboardInterrupt once it has shown ``interrupt_at``. With a
    paced ``camera``, each frame shown lets the camera deliver the next (one read per frame: a fake clock
    read per frame then gives every frame its own time)."""

    def __init__(self, keys=None, interrupt_at=None, inner=None, camera: FastCamera | None = None) -> None:
        self.keys, self.interrupt_at, self.inner, self.camera = keys or {}, interrupt_at, inner, camera
        self.shown: list = []
        self.closed = False

    def show(self, rgb, analysis, result) -> None:
        self.shown.append(result)
        if self.inner is not None:
            self.inner.show(rgb, analysis, result)
        if self.interrupt_at is not None and len(self.shown) >= self.interrupt_at:
            self.camera and self.camera.stop()
            raise KeyboardInterrupt
        self.camera and self.camera.allow_one()

    def poll_key(self) -> str | None:
        key = self.keys.pop(len(self.shown), None)
        if key == "q":
            self.camera and self.camera.stop()
        return key

    def close(self) -> None:
        self.closed = True
        if self.inner is not None:
            self.inner.close()


def quarter_seconds():
    """A fake clock: every reading is a quarter of a second after the last."""
    ticks = itertools.count()
    return lambda: next(ticks) * 0.25


def test_frames_the_loop_has_no_time_for_are_dropped_never_queued(run) -> None:
    camera = FastCamera(total=400)
    detector = SlowDetector(camera, lag=5)
    session = Session(Predictor.from_run(run, detector=detector), WatchConfig(), keep_rows=0)
    display = ScriptedDisplay()
    stats = run_live(camera, session, display, on_row=lambda row: None)
    assert stats.frames_read == 400 and stats.frames_analysed == len(display.shown) == len(detector.seen)
    assert stats.frames_analysed + stats.frames_dropped == stats.frames_read  # each frame analysed or dropped
    assert stats.frames_analysed <= 400 // 4 + 2 and stats.frames_dropped >= 290
    assert stats.most_held == 1  # the backlog never grew past the newest frame
    # Each analysis took the newest frame, not the next one in a queue: the camera had read 5 more during it,
    # so the newest was at least 4 on (the 5th may be read but not yet handed over); the last one excepted,
    # when the camera ran out.
    assert (np.diff(detector.seen)[:-1] >= 4).all()
    assert display.closed


def test_newest_frame_keeps_one_and_counts_what_it_replaced() -> None:
    holder = NewestFrame()
    for i in range(5):
        holder.put(np.full((2, 2, 3), i, np.uint8), float(i))
    frame, stamp = holder.take(timeout=0.0)
    assert stamp == 4.0 and frame[0, 0, 0] == 4 and holder.dropped == 4 and holder.pending == 0
    assert holder.take(timeout=0.0) is None and not holder.finished
    holder.close()
    assert holder.finished


def test_keys_calibrate_pause_and_quit_and_the_record_is_written(run, tmp_path) -> None:
    camera = FastCamera(total=None, paced=True)
    predictor = Predictor.from_run(run, detector=FakeDetector())
    display = ScriptedDisplay(keys={2: "c", 30: "p", 40: "p", 60: "q"}, camera=camera)
    config = WatchConfig(baseline_seconds=5.0)
    summary = watch_camera(camera, predictor, config, display, out=tmp_path / "cam", clock=quarter_seconds())
    states = [r.state for r in display.shown]
    assert len(states) == 60  # q quit after the 60th frame
    assert [round(r.time, 2) for r in display.shown[:3]] == [0.25, 0.5, 0.75]  # a frame's time: when it was read
    assert states[2] == CALIBRATING and states[29] != PAUSED and set(states[30:40]) == {PAUSED}
    assert states[40] != PAUSED and summary["baseline"] == "calibration step"
    rows = read_csv(tmp_path / "cam" / "frames.csv")
    assert len(rows) == 60 and list(rows["state"]) == states
    assert summary["frames_analysed"] == summary["frames"] == 60
    assert json.loads((tmp_path / "cam" / "summary.json").read_text())["frames_analysed"] == 60


def test_ctrl_c_ends_the_camera_with_the_summary_and_the_record(run, tmp_path) -> None:
    camera = FastCamera(total=None, level=45, paced=True)
    predictor = Predictor.from_run(run, detector=FakeDetector())
    display = ScriptedDisplay(interrupt_at=25, camera=camera)
    summary = watch_camera(camera, predictor, WatchConfig(), display, out=tmp_path / "cam", clock=quarter_seconds())
    assert summary["frames_analysed"] == 25 and summary["frames_read"] == 25 and display.closed
    assert len(read_csv(tmp_path / "cam" / "frames.csv")) == 25
    assert (tmp_path / "cam" / "timeline.png").is_file()


def test_a_camera_that_gives_no_frames_or_none_at_all_is_one_error_line(run, tmp_path, capsys) -> None:
    predictor = Predictor.from_run(run, detector=FakeDetector())
    with pytest.raises(UserError, match="gave no frames"):
        watch_camera(FastCamera(total=0), predictor, WatchConfig(), ScriptedDisplay(), out=tmp_path / "cam")
    assert not (tmp_path / "cam").exists()
    assert run_main(main, ["--camera", "97", "--run", str(run), "--no-window"]) == 2
    assert error_lines(capsys.readouterr().err) == [
        "error: camera 97 cannot be opened: there is no camera with that number, or another program is using it"
    ]


def test_the_terminal_shows_a_line_per_change_and_rings_on_an_alert(run) -> None:
    camera = FastCamera(total=None, level=45, paced=True)
    stream = io.StringIO()
    display = ScriptedDisplay(interrupt_at=80, inner=TerminalDisplay(stream, keys=False), camera=camera)
    predictor = Predictor.from_run(run, detector=FakeDetector())
    config = WatchConfig(alert_after=3.0, smoothing_seconds=0.5, auto_baseline_after=1000)
    watch_camera(camera, predictor, config, display, clock=quarter_seconds())
    lines = stream.getvalue().splitlines()
    assert any(line.startswith("\a") and "alert: forward head for" in line for line in lines)
    assert len(lines) <= 3  # a line per change (and the alert's), not one per frame
    assert any("forward head" in line for line in lines if not line.startswith("\a"))


def test_a_terminal_status_line_is_rewritten_in_place() -> None:
    from posture.sitting.session import FrameResult

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    display = TerminalDisplay(stream, keys=False)
    for i in range(3):
        display.show(None, None, FrameResult(float(i), "normal", None, 0.1, UPRIGHT, 0.2, message="upright"))
    display.close()
    assert stream.getvalue() == "\rupright | p(forward head) 0.20" * 3 + "\n"


def test_the_window_shows_the_frame_with_the_landmarks_the_state_and_an_alert(run, monkeypatch) -> None:
    from posture.sitting.camera import WindowDisplay

    shown: list[np.ndarray] = []
    monkeypatch.setattr(cv2, "imshow", lambda title, image: shown.append(image))
    monkeypatch.setattr(cv2, "waitKey", lambda delay: ord("p"))
    monkeypatch.setattr(cv2, "getWindowProperty", lambda title, prop: 1.0)
    monkeypatch.setattr(cv2, "destroyWindow", lambda title: None)
    predictor = Predictor.from_run(run, detector=FakeDetector())
    session = Session(predictor, WatchConfig(alert_after=0.5, smoothing_seconds=0.0))
    rgb = np.full((240, 320, 3), 45, np.uint8)
    analysis = predictor.analyse(rgb, within_training=False)
    display = WindowDisplay()
    display.show(rgb, analysis, session.update_analysis(analysis, 0.0))
    alert = session.update_analysis(analysis, 1.0)
    assert alert.alert
    display.show(rgb, analysis, alert)
    assert display.poll_key() == "p"
    display.close()
    plain, alerted = shown
    assert plain.shape == (240, 320, 3) and (plain != rgb[..., ::-1]).any()  # the landmarks and the state drawn
    assert tuple(alerted[120, 1]) == (0, 0, 255)  # a red frame around the picture (BGR)
