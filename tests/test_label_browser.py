"""The labeling page in a real (headless) browser: two clicks, accept, and the row is in the CSV."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.label import build_app, launch_kwargs
from app.label_session import LabelConfig, LabelSession
from posture.data.cva import craniovertebral_angle
from posture.io.labelstore import read_labels
from tests._label_helpers import make_photos

CHROMIUM = os.environ.get("POSTURE_CHROMIUM", "/usr/bin/chromium")
SCREENSHOT = Path("/tmp/label_screenshot.png")

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(predicate, what: str, limit_s: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    """Poll until ``predicate()``; the limit only guards against a hang, it is not a speed check."""
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def page_url(tmp_path: Path) -> Iterator[tuple[str, LabelSession]]:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api")
    make_photos(tmp_path / "photos", ["p1.jpg", "p2.jpg", "p3.jpg"], size=(1200, 900))
    cfg = LabelConfig(
        images=tmp_path / "photos", out=tmp_path / "labels.csv", labeler="ann", display_max=600, port=_free_port()
    )
    session = LabelSession(cfg)
    demo = build_app(session)
    demo.launch(prevent_thread_lock=True, quiet=True, **launch_kwargs(cfg))
    try:
        yield f"http://127.0.0.1:{cfg.port}/", session
    finally:
        demo.close()
        session.close()


def test_click_two_points_accept_and_find_the_row(page_url: tuple[str, LabelSession]) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, session = page_url
    csv_path = session.config.out
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            img = page.locator("#lbl-image img")
            img.wait_for(timeout=60_000)
            expect(page.locator("#lbl-info")).to_contain_text("p1.jpg", timeout=60_000)

            def click_at(x: int, y: int) -> None:
                """Click natural-image pixel (x, y), wherever CSS put and scaled the picture."""
                box = img.bounding_box()
                nat_w, nat_h = img.evaluate("e => [e.naturalWidth, e.naturalHeight]")
                assert (nat_w, nat_h) == (600, 450)  # the 1200×900 photo, shown at half size
                r = min(box["width"] / nat_w, box["height"] / nat_h, 1.0)
                ox, oy = (box["width"] - nat_w * r) / 2, (box["height"] - nat_h * r) / 2
                img.click(position={"x": ox + (x + 0.5) * r, "y": oy + (y + 0.5) * r})  # pixel centre

            click_at(500, 127)  # tragus
            expect(page.locator("#lbl-info")).to_contain_text("C7", timeout=30_000)
            click_at(200, 300)  # C7
            expect(page.locator("#lbl-info")).to_contain_text("forward head", timeout=30_000)
            page.screenshot(path=str(SCREENSHOT))
            page.locator("#lbl-accept").click()
            _wait_for(lambda: csv_path.exists() and "p1.jpg" in read_labels(csv_path), "the accepted row")
            expect(page.locator("#lbl-info")).to_contain_text("p2.jpg", timeout=30_000)
            page.keyboard.press("n")  # quick mode by keyboard: normal, no points
            _wait_for(lambda: "p2.jpg" in read_labels(csv_path), "the keyboard answer")
            expect(page.locator("#lbl-progress")).to_contain_text("2 / 3 done", timeout=30_000)
        finally:
            browser.close()

    rows = read_labels(csv_path)
    row = rows["p1.jpg"]
    # display pixel x is original 2x + 0.5 (pixel centres at scale 2); sub-pixel layout in the
    # browser may move a click by one display pixel, i.e. two original pixels
    assert (row.ear_x, row.ear_y, row.c7_x, row.c7_y) == pytest.approx((1000.5, 254.5, 400.5, 600.5), abs=2.0)
    assert row.label == "forward_head" and row.labeler == "ann"
    assert row.cva_deg == pytest.approx(craniovertebral_angle(row.ear_x, row.ear_y, row.c7_x, row.c7_y), abs=0.01)
    assert row.cva_deg == pytest.approx(29.97, abs=0.3)
    assert rows["p2.jpg"].label == "normal" and rows["p2.jpg"].cva_deg is None
    assert SCREENSHOT.stat().st_size > 0
