"""The labeling tool on a hostile folder: special files and odd names never hang or block a session."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import pytest

from app.label import LabelPage
from app.label_session import LabelConfig, LabelSession, list_images
from posture.io.labelstore import read_labels
from tests._label_helpers import make_photos
from tests._markup_helpers import shown_text
from tests._serving_helpers import AppServer


def _session(images: Path, tmp_path: Path) -> LabelSession:
    return LabelSession(LabelConfig(images=images, out=tmp_path / "labels.csv", labeler="ann"))


@pytest.mark.timeout(60)  # a hang is the failure this guards against
def test_fifos_devices_and_symlink_loops_are_left_out_with_a_reason(tmp_path: Path) -> None:
    photos = make_photos(tmp_path / "photos", ["a.jpg", "c.jpg"])
    os.mkfifo(photos / "b.jpg")
    os.symlink("loop.jpg", photos / "loop.jpg")
    with contextlib.suppress(OSError):  # /dev/zero, where allowed
        os.mknod(photos / "zero.jpg", 0o644 | 0o020000, os.makedev(1, 5))
    assert list_images(photos) == ["a.jpg", "c.jpg"]
    s = _session(photos, tmp_path)
    reasons = dict(s.skipped)
    assert reasons["b.jpg"].startswith("not_a_regular_file") and reasons["loop.jpg"].startswith("symlink_loop")
    s.close()


@pytest.mark.timeout(60)
def test_a_photo_replaced_by_a_fifo_after_listing_does_not_hang_the_page(tmp_path: Path) -> None:
    photos = make_photos(tmp_path / "photos", ["a.jpg", "b.jpg"])
    s = _session(photos, tmp_path)
    (photos / "a.jpg").unlink()
    os.mkfifo(photos / "a.jpg")
    view = s.view("a.jpg")
    assert view.error and "not_a_regular_file" in view.error
    assert s.view("b.jpg").error is None
    s.close()


def test_names_the_label_csv_cannot_hold_are_skipped_with_a_visible_reason(tmp_path: Path) -> None:
    latin1 = os.fsdecode(b"caf\xe9.jpg")
    photos = make_photos(tmp_path / "photos", ["a.jpg", "b\nc.jpg", "e\rf.jpg", latin1, "d.jpg", "=g.jpg"])
    page = LabelPage(_session(photos, tmp_path))
    out = page.load()
    shown = []
    while out[5]["file"] is not None:  # answer every photo the page offers, as a labeler would
        shown.append(out[5]["file"])
        out = page.answer_class(out[5], "normal")
    assert shown == ["=g.jpg", "a.jpg", "d.jpg"]  # the session went on past the bad names
    assert "Done" in out[1]
    for text in ("b\\x0ac.jpg", "e\\x0df.jpg", "caf\\xe9.jpg"):
        assert text in shown_text(out[1])  # the labeler sees which files were left out, and why
    assert "rename" in out[1]
    assert sorted(read_labels(tmp_path / "labels.csv")) == ["=g.jpg", "a.jpg", "d.jpg"]
    page.session.close()


@pytest.mark.slow
def test_shown_photos_stay_in_a_private_folder_that_is_removed_at_exit(tmp_path: Path) -> None:
    from gradio_client import Client

    photos = make_photos(tmp_path / "photos", ["private-a.jpg", "private-b.jpg"])
    tmp = tmp_path / "tmp"
    server = AppServer(
        None,
        tmp,
        "--images",
        str(photos),
        "--out",
        str(tmp_path / "labels.csv"),
        "--labeler",
        "ann",
        module="app.label",
        private_prefix="posture-label-",
    )
    try:
        server.wait_ready()
        client = Client(server.url, verbose=False, download_files=str(tmp_path / "downloads"))
        client.predict(api_name="/load")  # the page shows the first photo: Gradio writes a PNG copy of it
        (private,) = server.private_dirs()
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
        assert list(private.rglob("*.png"))  # the copies are in the private folder ...
        assert not (tmp / "gradio").exists()  # ... not in the shared /tmp/gradio
    finally:
        server.stop()  # SIGTERM, as a service manager stops it
    assert server.private_dirs() == []
