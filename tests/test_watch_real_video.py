"""python -m posture.watch with the real BlazePose on a video made of real photos. Apart from
tests/test_watch_cli.py on purpose: that module keeps the stand-in BlazePose in place for all its
tests (a module-scoped run), which would answer this video's frames instead of the real one."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from _pose_helpers import needs_pose, real_fold
from _serving_helpers import REAL_DATA
from posture.io.csvcells import read_csv
from posture.sitting.session import WatchConfig
from posture.sitting.watch import watch_video

FPS = 10


@needs_pose
@pytest.mark.real_data
@pytest.mark.slow
def test_real_blazepose_watches_a_video_made_of_real_photos(tmp_path, one_torch_thread) -> None:
    """A video of one seated person at a webcam (the ``posenet`` source: its upright photos, then its
    forward-head ones, each held for half a second), watched with the real BlazePose in tracking mode by a
    run trained on the other sources: BlazePose finds the person in every frame, the calibration step
    takes the upright stretch as the baseline, the record has a row per frame, and the forward photos
    read as further forward than the upright ones. (Whether the state flips is not asserted: on this
    session the slouch narrows the shoulders by up to a third, which the sitting's main-person check
    reads as a jump, and the calibrated p(forward head) of the slouch stays near 0.5.)"""
    from posture.io.images import load_rgb_array
    from posture.sitting.watch import stream_predictor
    from posture.training.finetune import FinetuneConfig, run_finetune

    manifest = pd.read_csv(REAL_DATA / "manifest.csv")
    held_out = "posenet"
    split = np.where(manifest["source"] == held_out, "test", "train")
    pool = np.flatnonzero(split == "train")
    split[pool[::5]] = "val"
    data = real_fold(tmp_path / "fold", REAL_DATA, split)
    run_finetune(
        FinetuneConfig(
            data=str(data), out=str(tmp_path / "run"), workers=0, progress=False, cache_dir=str(tmp_path / "c")
        )
    )
    session = manifest[manifest["source"] == held_out].sort_values("path")
    upright = [load_rgb_array(REAL_DATA / p) for p in session.loc[session["label"] == "normal", "path"]]
    forward = [load_rgb_array(REAL_DATA / p) for p in session.loc[session["label"] == "forward_head", "path"]]
    height, width = upright[0].shape[:2]
    frames = [cv2.resize(f, (width, height)) for f in upright + forward for _ in range(5)]
    video = tmp_path / "posenet.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), float(FPS), (width, height))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()

    config = WatchConfig(baseline_seconds=len(upright) * 0.5 * 0.6, smoothing_seconds=1.0, alert_after=2.0)
    summary = watch_video(video, stream_predictor(tmp_path / "run"), config, out=tmp_path / "rec", calibrate=True)
    rows = read_csv(tmp_path / "rec" / "frames.csv")
    assert len(rows) == len(frames) and summary["baseline"] == "calibration step"
    assert not rows["reason"].fillna("").str.contains("no person").any(), rows["reason"].value_counts()
    upright_end = len(upright) * 0.5
    scored = rows.dropna(subset=["p_forward"])
    upright_part = scored[scored["time"] < upright_end]["p_forward"]
    forward_part = scored[scored["time"] >= upright_end]["p_forward"]
    assert len(upright_part) >= 10 and len(forward_part) >= 20
    assert forward_part.mean() > upright_part.mean() + 0.15, (upright_part.describe(), forward_part.describe())
    assert (tmp_path / "rec" / "timeline.png").stat().st_size > 1000
