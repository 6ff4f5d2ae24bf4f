"""The web demo serving a pose run, in a real browser: the answer with its landmarks and numbers,
then the optional calibration with an upright photo on the main tab."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _pose_helpers import real_fold
from _serving_helpers import CHROMIUM, REAL_DATA, AppServer, chromium_page
from posture.pose.detector import pose_available

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)"),
    pytest.mark.skipif(not pose_available(), reason="MediaPipe is not installed"),
    pytest.mark.real_data,
]


def _pose_run(tmp: Path) -> Path:
    """A default (pose) run trained on the real photos, every source in train/val (fast: landmarks only)."""
    from posture.training.finetune import FinetuneConfig, run_finetune

    n = len(pd.read_csv(REAL_DATA / "manifest.csv"))
    data = real_fold(tmp / "data", REAL_DATA, np.where(np.arange(n) % 5 == 0, "val", "train"))
    run = tmp / "run"
    run_finetune(FinetuneConfig(data=str(data), out=str(run), workers=0, progress=False, cache_dir=str(tmp / "cache")))
    return run


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    run = _pose_run(tmp_path_factory.mktemp("pose-browser"))
    app = AppServer(run, tmp_path_factory.mktemp("pose-browser-server"), "--examples", "0")
    try:
        app.wait_ready()
        yield app
    finally:
        app.stop()


def test_a_pose_answer_shows_landmarks_numbers_and_calibrates(server: AppServer, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    upright = sorted((REAL_DATA / "normal").glob("posenet*.jpg"))[0]
    slouched, later = sorted((REAL_DATA / "forward_head").glob("posenet*.jpg"))[:2]
    with chromium_page(1280, 1400) as page:
        page.goto(server.url, wait_until="load")  # a page with per-visitor state never goes network-idle
        page.locator("#check").wait_for(timeout=60_000)
        page.locator("#photo input[type=file]").set_input_files(str(slouched))
        page.locator("#photo img").first.wait_for(timeout=60_000)
        page.locator("#check").click()
        note = page.locator("#note")
        expect(note).to_contain_text("confidence", timeout=120_000)
        expect(note).to_contain_text("landmarks")
        expect(note).to_contain_text(" cm ")  # the numbers that decided it, in centimetres
        expect(page.locator("#overlay img").first).to_be_visible(timeout=60_000)

        page.get_by_text("Optional: calibrate with an upright photo of yourself").click()
        page.locator("#upright input[type=file]").set_input_files(str(upright))
        page.locator("#upright img").first.wait_for(timeout=60_000)
        page.locator("#calibrate").click()
        expect(page.locator("#calibration_note")).to_contain_text("Calibrated", timeout=120_000)
        page.locator("#photo input[type=file]").set_input_files(str(later))  # another photo, same camera
        page.locator("#photo img").first.wait_for(timeout=60_000)
        page.locator("#check").click()
        expect(note).to_contain_text("Calibrated with your upright photo", timeout=120_000)
        shot = tmp_path / "pose_app.png"
        page.screenshot(path=str(shot), full_page=True)
        page.locator("#reset").click()
        expect(page.locator("#calibration_note")).to_contain_text("forgotten", timeout=60_000)
    assert shot.stat().st_size > 10_000
    shutil.copy(shot, "/tmp/pose_app_screenshot.png")  # for people reviewing the run
