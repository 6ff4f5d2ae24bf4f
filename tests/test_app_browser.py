"""End to end in a real browser: open the demo, upload a photo, see the label, keep a screenshot."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from _serving_helpers import CHROMIUM, CLASSES, REAL_DATA, AppServer, chromium_page, make_run, write_photo

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    run = make_run(tmp_path_factory.mktemp("browser") / "run", input_size=96)
    app = AppServer(run, tmp_path_factory.mktemp("browser-server"), "--examples", "2")
    try:
        app.wait_ready()
        yield app
    finally:
        app.stop()


def _a_photo(tmp_path: Path) -> Path:
    """A real side-view photo when the team's folder is there, else a synthetic picture."""
    real = sorted((REAL_DATA / "forward_head").glob("*.jpg")) if REAL_DATA.is_dir() else []
    if real:
        return real[0]
    return write_photo(tmp_path / "photo.png", seed=1, size=(240, 180))


def test_upload_a_photo_and_see_the_label(server: AppServer, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with chromium_page(1280, 1000) as page:
        page.goto(server.url, wait_until="networkidle")
        page.locator("#photo input[type=file]").set_input_files(str(_a_photo(tmp_path)))
        page.locator("#photo img").first.wait_for(timeout=60_000)  # the upload preview
        page.locator("#check").click()
        note = page.locator("#note")
        expect(note).to_contain_text("confidence", timeout=120_000)
        expect(page.locator("#overlay img").first).to_be_visible(timeout=60_000)
        label_text = page.locator("#label").inner_text()
        assert any(c in label_text for c in CLASSES)
        assert any(c in note.inner_text() for c in CLASSES)
        shot = tmp_path / "app.png"
        page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    shutil.copy(shot, "/tmp/app_screenshot.png")  # for people reviewing the run


def test_a_non_image_upload_shows_a_friendly_error(server: AppServer, tmp_path: Path) -> None:
    """The page itself may refuse the file (its input accepts images only) or our message appears;
    either way no answer is shown for it and the page keeps working for the next photo."""
    from playwright.sync_api import expect

    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is not a png")
    with chromium_page(1280, 1000) as page:
        page.goto(server.url, wait_until="networkidle")
        page.locator("#photo input[type=file]").set_input_files(str(bad))
        page.wait_for_timeout(1500)
        page.locator("#check").click()
        expect(
            page.get_by_text("not an image we can read").or_(page.get_by_text("upload a photo")).first
        ).to_be_visible(timeout=60_000)
        page.screenshot(path=str(tmp_path / "error.png"), full_page=True)
        expect(page.locator("#note")).not_to_contain_text("confidence")


def test_check_the_same_photo_again_and_toggle_the_explanation(server: AppServer, tmp_path: Path) -> None:
    """The page keeps the uploaded photo's server path and sends it with every click; each click
    must get a fresh answer, never "the upload could not be read"."""
    from playwright.sync_api import expect

    with chromium_page(1280, 1000) as page:
        page.goto(server.url, wait_until="networkidle")
        page.locator("#photo input[type=file]").set_input_files(str(_a_photo(tmp_path)))
        page.locator("#photo img").first.wait_for(timeout=60_000)
        note = page.locator("#note")
        explain = page.get_by_label("Show where the model looked")
        page.locator("#check").click()
        expect(note).to_contain_text("Warm colours", timeout=120_000)  # first answer, with Grad-CAM
        explain.uncheck()
        page.locator("#check").click()  # the same photo again, without the explanation
        expect(note).not_to_contain_text("Warm colours", timeout=60_000)
        expect(note).to_contain_text("confidence")
        explain.check()
        page.locator("#check").click()  # and a third time, with it
        expect(note).to_contain_text("Warm colours", timeout=60_000)
        expect(page.get_by_text("could not be read")).to_have_count(0)
        expect(page.get_by_text("no longer on the server")).to_have_count(0)
