"""bench/watch_speed.py's mechanics: the rate and latency arithmetic, frames letterboxed to a webcam's size,
the side-by-side timing, the newest-frame-only holder at a webcam's pace, the live loop's step, the report."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import test_sitting
from bench.watch_speed import (
    LiveLoop,
    NewestFrame,
    SpeedConfig,
    letterbox,
    main,
    milliseconds,
    rate,
    session_frames,
    side_by_side,
    to_markdown,
    webcam,
)
from posture.sitting.session import FrameResult
from test_sitting import person

#: The stand-in run test_sitting trains (a module fixture), shared rather than trained twice.
run = test_sitting.run


def test_rate_is_frames_over_their_total_time_and_latency_is_per_frame() -> None:
    seconds = [0.02] * 18 + [0.1, 0.2]  # 20 frames in 0.66 s
    r = rate(seconds)
    assert r["frames"] == 20 and r["fps"] == pytest.approx(20 / 0.66, abs=0.01)
    assert r["ms_p50"] == 20.0 and r["ms_max"] == 200.0 and r["ms_mean"] == 33.0
    assert r["ms_p95"] == pytest.approx(np.percentile(np.array(seconds) * 1000, 95), abs=0.01)
    assert milliseconds([0.5]) == {"ms_mean": 500.0, "ms_p50": 500.0, "ms_p95": 500.0, "ms_max": 500.0}


def test_frames_are_letterboxed_to_640x480_whole_and_centred() -> None:
    square = np.full((224, 224, 3), 200, np.uint8)
    frame = letterbox(square)
    assert frame.shape == (480, 640, 3)
    assert frame[:, :80].max() == 0 and frame[:, -80:].max() == 0  # black bars left and right
    assert frame[240, 320].tolist() == [200, 200, 200]
    wide = letterbox(np.full((384, 512, 3), 90, np.uint8))  # 4:3 fills the frame
    assert wide.shape == (480, 640, 3) and wide.min() == 90


def _real_like(root: Path, n: int) -> Path:
    names = [f"normal/webcam-{k}.jpg" for k in range(n)]
    (root / "normal").mkdir(parents=True)
    for k, name in enumerate(names):
        Image.fromarray(np.full((224, 224, 3), k, np.uint8)).save(root / name)
    pd.DataFrame({"path": names, "label": "normal", "source": "cam", "subject": "cam-p1"}).to_csv(
        root / "manifest.csv", index=False
    )
    return root


def test_frames_are_photos_spread_over_the_session_each_repeated_as_a_clip(tmp_path: Path) -> None:
    real = _real_like(tmp_path / "real", 10)
    cfg = SpeedConfig(real=real, work=tmp_path, source="cam", subject="cam-p1", photos=3, repeat=4)
    frames, names = session_frames(cfg)
    assert names == ["normal/webcam-0.jpg", "normal/webcam-3.jpg", "normal/webcam-6.jpg"]  # numbers as numbers
    assert len(frames) == 12 and all(f.shape == (480, 640, 3) for f in frames)
    assert frames[3] is frames[0] and frames[4] is not frames[0]


def test_a_session_with_no_photo_is_one_error_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, restore_logging: None
) -> None:
    real = _real_like(tmp_path / "real", 2)
    fake_run = tmp_path / "run"
    fake_run.mkdir()
    (fake_run / "config.json").write_text("{}")
    argv = ["--real", str(real), "--run", str(fake_run), "--subject", "nobody", "--no-write"]
    with caplog.at_level(logging.ERROR, logger="bench.watch_speed"):
        assert main(argv) == 2
    assert caplog.messages[-1] == "error: no photo of subject 'nobody' in source 'posenet'"


def test_side_by_side_gives_every_step_the_same_frames_in_order_alternating_who_goes_first() -> None:
    frames = [np.full((2, 2, 3), k, np.uint8) for k in range(6)]
    calls: list[tuple[str, int]] = []

    def step(name: str):  # type: ignore[no-untyped-def]
        def call(frame: np.ndarray, stamp: float) -> int:
            calls.append((name, int(frame[0, 0, 0])))
            return int(frame[0, 0, 0])

        return call

    seconds, answers = side_by_side(frames, 2, {"a": step("a"), "b": step("b")})
    assert answers == {"a": list(range(6)), "b": list(range(6))}
    assert len(seconds["a"]) == len(seconds["b"]) == 6 and min(seconds["a"] + seconds["b"]) >= 0
    firsts = [calls[k][0] for k in range(0, 12, 4)]
    assert firsts == ["a", "b", "a"]  # clip by clip, the order swaps


def test_the_holder_keeps_only_the_newest_frame_and_counts_what_it_replaced() -> None:
    holder = NewestFrame()
    for k in range(3):
        holder.put(np.full((1, 1, 3), k, np.uint8), float(k))
    frame, stamp = holder.take(timeout=0.0) or (None, None)
    assert frame is not None and frame[0, 0, 0] == 2 and stamp == 2.0
    assert (holder.offered, holder.taken, holder.dropped, holder.most_held) == (3, 1, 2, 1)
    assert holder.take(timeout=0.0) is None and not holder.finished
    holder.close()
    assert holder.finished


def test_a_loop_slower_than_the_camera_drops_frames_and_never_queues_them() -> None:
    frames = [np.zeros((2, 2, 3), np.uint8)]
    release = threading.Event()
    seen: list[float] = []

    def slow(frame: np.ndarray, stamp: float) -> None:
        seen.append(stamp)
        release.wait(0.02)  # far slower than the camera's frame every millisecond

    result = webcam(frames, slow, fps=1000.0, seconds=0.1)
    assert result["shown"] == 100
    assert result["shown"] == result["processed"] + result["dropped"] and result["dropped"] > 0
    assert result["most_held"] == 1 and result["processed"] == len(seen)
    assert seen == sorted(seen)  # every answer is for a newer frame than the last
    assert result["age_ms"]["ms_p50"] >= 0 and result["age_ms_p95_last_tenth"] is not None


def test_the_live_loop_answers_relative_to_the_baseline_and_draws(run, monkeypatch: pytest.MonkeyPatch) -> None:
    import posture.pose.drawing as drawing

    out, _ = run
    drawn: list[tuple[int, ...]] = []
    real_draw = drawing.draw_landmarks

    def draw(rgb: np.ndarray, landmarks: np.ndarray | None, caption: str | None = None) -> np.ndarray:
        drawn.append(rgb.shape)
        return real_draw(rgb, landmarks, caption)

    monkeypatch.setattr(drawing, "draw_landmarks", draw)
    loop = LiveLoop(out)
    frame = np.full((300, 400, 3), 128, np.uint8)
    script = loop.predictor.detector
    script.detect = lambda image: person(0.55)  # type: ignore[method-assign]  # their upright reads as dropped
    loop.calibrate(frame)
    assert loop.session.baseline is not None
    result = loop(frame, time.monotonic())
    assert isinstance(result, FrameResult) and result.label == "normal" and drawn == [(300, 400, 3)]
    loop.close()


def test_the_report_leaves_the_browser_number_to_its_own_measurement() -> None:
    timing = {"fps": 40.0, "ms_mean": 25.0, "ms_p50": 24.0, "ms_p95": 30.0, "ms_max": 50.0, "frames": 10}
    load = {"wall_s": 1.0, "cores_used": 1.0, "other_programs_cores": 0.5}
    rnd = {"bare": {**timing, "fps": 44.0}, "loop": timing, "ratio": 1.1, "load": load}
    payload = {
        "frames": {"photos": ["a.jpg"], "size": "640x480", "repeat": 10, "count": 10, "assessed_by_the_loop": 10},
        "rounds": [rnd],
        "median_round": rnd,
        "webcam": {
            "shown": 300,
            "processed": 280,
            "dropped": 20,
            "most_held": 1,
            "processed_fps": 28.0,
            "age_ms": {"ms_mean": 30.0, "ms_p50": 30.0, "ms_p95": 40.0, "ms_max": 60.0},
            "age_ms_p95_first_tenth": 40.0,
            "age_ms_p95_last_tenth": 41.0,
            "load": load,
        },
        "browser": {"fps": None, "note": "measured by the Live tab's browser test"},
        "machine": {"cpu_count": 2, "load_average_at_start": (1.0, 1.0, 1.0)},
    }
    text = to_markdown(payload)
    assert "**40.0** **met**" in text and "**1.10×** **met**" in text and "p95 30.0 ms" in text
    assert "not measured in this run" in text and "--browser-fps" in text
    assert "backlog ≤ 1: **met**" in text
    text = to_markdown({**payload, "browser": {"fps": 12.5, "note": "the Live tab"}})
    assert "**12.5** frames analysed per second (the Live tab)" in text
