"""The labeling tool's rules, without a browser: order, resume, click mapping, answers, model assist."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from app.label import LabelPage, build_parser
from app.label_overlay import draw_points
from app.label_session import LabelConfig, LabelSession, list_images, uncertainty_order
from posture.cli import UserError, config_from_args
from posture.data.cva import craniovertebral_angle
from posture.io.images import open_rgb
from posture.io.labelstore import read_labels, read_records
from tests._label_helpers import FakePredictor, make_photos, make_tiny_run, write_exif_rotated_jpeg
from tests._markup_helpers import shown_text

REPO = Path(__file__).resolve().parents[1]


def _session(tmp_path: Path, names: list[str] | None = None, **kw: object) -> LabelSession:
    images = tmp_path / "photos"
    if not images.exists():
        make_photos(images, names or ["b.jpg", "a.jpg", "c.png"])
    predictor = kw.pop("predictor", None)
    cfg = LabelConfig(images=images, out=tmp_path / "labels.csv", labeler=str(kw.pop("labeler", "ann")), **kw)  # type: ignore[arg-type]
    return LabelSession(cfg, predictor=predictor)


def test_list_images_is_sorted_recursive_and_skips_non_images(tmp_path: Path) -> None:
    make_photos(tmp_path, ["z.jpg", "sub/a.png", ".hidden/x.jpg", "sub/.y.jpg"])
    (tmp_path / "notes.txt").write_text("not a photo")
    (tmp_path / "labels.csv").write_text("filename,label\n")
    assert list_images(tmp_path) == ["sub/a.png", "z.jpg"]


def test_walks_the_folder_in_order_and_resumes_where_it_stopped(tmp_path: Path) -> None:
    s = _session(tmp_path)
    assert s.next_pending() == "a.jpg"
    s.answer_points("a.jpg", (60, 10), (10, 60))
    s.answer_class("b.jpg", "normal")
    assert s.next_pending() == "c.png"
    p = s.progress()
    assert (p.done, p.total, p.remaining, p.per_label) == (2, 3, 1, {"forward_head": 1, "normal": 1})
    assert "2 / 3 done" in p.format()
    s.close()
    again = _session(tmp_path)  # reopen the same folder and CSV
    assert again.next_pending() == "c.png"
    again.answer_class("c.png", "unusable")
    assert again.next_pending() is None
    assert again.progress().per_label["unusable"] == 1
    again.close()


def test_resume_counts_only_this_labelers_answers(tmp_path: Path) -> None:
    s = _session(tmp_path, labeler="ann")
    s.answer_class("a.jpg", "normal")
    s.close()
    bob = _session(tmp_path, labeler="bob")  # same CSV, another person: starts from the beginning
    assert bob.next_pending() == "a.jpg"
    bob.close()


def test_answer_points_stores_angle_label_and_original_pixels(tmp_path: Path) -> None:
    s = _session(tmp_path, threshold=40.0)
    rec = s.answer_points("a.jpg", (100.04, 20.0), (40.0, 80.0))  # 45 degrees: normal at 40
    assert rec.label == "normal" and rec.cva_deg == pytest.approx(45.0) and rec.labeler == "ann"
    rec = s.answer_points("b.jpg", (100.0, 60.0), (40.0, 80.0))  # ~18 degrees
    assert rec.label == "forward_head"
    s.close()
    row = read_labels(tmp_path / "labels.csv")["a.jpg"]
    assert (row.ear_x, row.ear_y, row.c7_x, row.c7_y) == (100.0, 20.0, 40.0, 80.0)
    assert row.cva_deg == pytest.approx(craniovertebral_angle(100.0, 20.0, 40.0, 80.0), abs=0.005)


def test_unknown_files_and_labels_are_refused(tmp_path: Path) -> None:
    s = _session(tmp_path)
    with pytest.raises(ValueError, match="not an image of this session"):
        s.answer_class("../elsewhere.jpg", "normal")
    with pytest.raises(ValueError, match="unknown label"):
        s.answer_class("a.jpg", "turtle")
    with pytest.raises(ValueError, match="same point"):
        s.answer_points("a.jpg", (5, 5), (5, 5))
    s.close()
    assert read_records(tmp_path / "labels.csv") == []


def test_previous_walks_back_and_a_relabel_supersedes(tmp_path: Path) -> None:
    s = _session(tmp_path)
    assert s.previous_of("a.jpg") is None
    s.answer_class("a.jpg", "normal")
    s.answer_class("b.jpg", "normal")
    assert s.previous_of("c.png") == "b.jpg"  # from the unanswered current image
    assert s.previous_of("b.jpg") == "a.jpg"
    assert s.previous_of("a.jpg") is None
    s.answer_class("a.jpg", "forward_head")  # relabel after *previous*
    assert s.answer("a.jpg").label == "forward_head"  # type: ignore[union-attr]
    assert s.next_pending() == "c.png"
    s.close()
    assert read_labels(tmp_path / "labels.csv")["a.jpg"].label == "forward_head"
    assert len(read_records(tmp_path / "labels.csv")) == 3


def test_clicks_on_a_downscaled_copy_land_on_original_pixels(tmp_path: Path) -> None:
    make_photos(tmp_path / "photos", ["big.jpg"], size=(1200, 900))
    s = _session(tmp_path, display_max=300)
    view = s.view("big.jpg")
    assert view.display.shape[:2] == (225, 300) and view.original_size == (1200, 900)
    assert view.scale == pytest.approx((4.0, 4.0))
    assert view.to_original(0, 0) == (1.5, 1.5)  # the centre of display pixel 0 covers originals 0..3
    assert view.to_original(299, 224) == (1197.5, 897.5)
    assert view.to_original(-10, 10_000) == (0.0, 899.0)  # clamped into the photo
    ear, c7 = view.to_original(200, 40), view.to_original(100, 140)
    assert craniovertebral_angle(*ear, *c7) == pytest.approx(craniovertebral_angle(200, 40, 100, 140))
    assert view.to_display(*view.to_original(123, 45)) == pytest.approx((123, 45))
    s.close()


def test_exif_orientation_is_applied_like_ingest(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    write_exif_rotated_jpeg(photos / "phone.jpg", stored_size=(200, 100), orientation=6)
    s = _session(tmp_path)
    view = s.view("phone.jpg")
    assert view.original_size == open_rgb(photos / "phone.jpg").size == (100, 200)  # portrait, as shown
    assert view.display.shape[:2] == (960, 480)  # small photos are enlarged to display_max for clicking
    assert view.to_original(0, 0) == pytest.approx((0.0, 0.0), abs=0.01)  # the portrait frame's corners
    assert view.to_original(479, 959) == (99.0, 199.0)  # clamped to the last pixel centre
    s.close()


def test_rounded_display_size_keeps_x_and_y_scales_apart(tmp_path: Path) -> None:
    make_photos(tmp_path / "photos", ["wide.png"], size=(1000, 333))
    s = _session(tmp_path, display_max=600)
    view = s.view("wide.png")
    assert view.display.shape[:2] == (200, 600)
    assert view.scale == pytest.approx((1000 / 600, 333 / 200))
    # the last display pixel's centre is the centre of the last 1.67 x 1.67 block of originals
    assert view.to_original(599, 199) == pytest.approx((599.5 * 1000 / 600 - 0.5, 199.5 * 333 / 200 - 0.5))
    s.close()


def test_unreadable_file_can_still_be_skipped(tmp_path: Path) -> None:
    photos = make_photos(tmp_path / "photos", ["good.jpg"])
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    s = _session(tmp_path)
    view = s.view("broken.jpg")
    assert view.error and view.display.ndim == 3
    s.answer_class("broken.jpg", "unusable")
    s.close()


def test_uncertainty_order_puts_the_hardest_first(tmp_path: Path) -> None:
    probs = {"a.jpg": 0.95, "b.jpg": 0.52, "c.png": 0.2, "d.jpg": 0.6}
    fake = FakePredictor(probs)
    make_photos(tmp_path / "photos", list(probs))
    s = _session(tmp_path, run=None, predictor=fake)
    assert s.files == ["a.jpg", "b.jpg", "c.png", "d.jpg"]  # order=name: untouched
    s.close()
    assert uncertainty_order(list(probs), {k: fake.predict(k) for k in probs}, "forward_head", 0.5) == [
        "b.jpg",
        "d.jpg",
        "c.png",
        "a.jpg",
    ]
    # with a calibrated threshold the distance is measured from it, not from 0.5
    assert uncertainty_order(list(probs), {k: fake.predict(k) for k in probs}, "forward_head", 0.9)[0] == "a.jpg"
    assert uncertainty_order(["x.jpg", "b.jpg"], {"b.jpg": fake.predict("b.jpg")}, "forward_head", 0.5) == [
        "b.jpg",
        "x.jpg",
    ]  # unreadable (no prediction) goes last


@pytest.mark.slow
def test_model_assist_with_a_real_tiny_run(tmp_path: Path) -> None:
    from posture.inference.predict import Predictor

    run = make_tiny_run(tmp_path / "run")
    make_photos(tmp_path / "photos", ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    predictor = Predictor.from_run(run)
    s = _session(tmp_path, run=run, order="uncertainty", predictor=predictor)
    assert set(s.predictions) == {"a.jpg", "b.jpg", "c.jpg", "d.jpg"}
    margins = [abs(s.predictions[f].probabilities["forward_head"] - 0.5) for f in s.files]
    assert margins == sorted(margins)
    assert s.next_pending() == s.files[0]
    page = LabelPage(s)
    assert "Model's guess" in page.load()[3]
    s.close()


def test_config_mistakes_are_user_errors(tmp_path: Path) -> None:
    make_photos(tmp_path / "photos", ["a.jpg"])
    base = {"images": tmp_path / "photos", "out": tmp_path / "l.csv"}
    for bad, match in [
        ({"images": tmp_path / "nope"}, "not a folder"),
        ({"threshold": 95}, "between 0 and 90"),
        ({"order": "uncertainty"}, "needs a model"),
        ({"labeler": "a,b"}, "plain name"),
        ({"run": tmp_path}, "not a trained run"),
        ({"out": tmp_path}, "is a folder"),
    ]:
        with pytest.raises(UserError, match=match):
            LabelConfig(**{**base, **bad}).check_paths()  # type: ignore[arg-type]
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images found"):
        LabelSession(LabelConfig(images=tmp_path / "empty", out=tmp_path / "l.csv"))


def test_cli_parses_into_the_config(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["--images", "x", "--out", "y.csv", "--threshold", "48", "--labeler", "ann", "--port", "7999"]
    )
    cfg = config_from_args(LabelConfig, args)
    assert (cfg.images, cfg.out, cfg.threshold, cfg.labeler, cfg.port, cfg.order) == (
        Path("x"),
        Path("y.csv"),
        48.0,
        "ann",
        7999,
        "name",
    )
    helptext = build_parser().format_help()
    assert "tragus" in helptext and "--order" in helptext and "resume" in helptext


def test_cli_bad_folder_is_one_error_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "app.label", "--images", str(tmp_path / "nope"), "--out", str(tmp_path / "l.csv")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope'}: not a folder of images"]


def test_page_handlers_click_accept_redo_previous(tmp_path: Path) -> None:
    """The page logic the browser test drives, checked directly (fast)."""
    make_photos(tmp_path / "photos", ["a.jpg", "b.jpg"], size=(400, 300))
    s = _session(tmp_path, display_max=200)  # shown at half size
    page = LabelPage(s)
    image, info, progress, model, message, state = page.load()
    assert state["file"] == "a.jpg" and "tragus" in info and "0 / 2 done" in progress and model == ""
    assert image.shape == (150, 200, 3)
    *_, state = page.click(state, SimpleNamespace(index=[150, 20]))
    out = page.click(state, SimpleNamespace(index=[50, 120]))
    state = out[-1]
    assert "CVA **45.0°** → **forward head**" in out[1]
    assert not np.array_equal(out[0], image)  # points drawn
    *_, state = page.redo(state)
    assert state["points"] == []
    out = page.accept(state)
    assert "first" in out[4]  # nothing saved without two points
    for xy in ([150, 20], [50, 120]):
        *_, state = page.click(state, SimpleNamespace(index=xy))
    out = page.accept(state)
    assert out[-1]["file"] == "b.jpg" and "Saved a.jpg" in shown_text(out[4])
    row = read_labels(tmp_path / "labels.csv")["a.jpg"]
    assert (row.ear_x, row.ear_y, row.c7_x, row.c7_y) == (300.5, 40.5, 100.5, 240.5)
    assert row.cva_deg == pytest.approx(45.0)
    out = page.previous(out[-1])  # back to a.jpg, with its stored points shown for review
    assert out[-1]["file"] == "a.jpg" and len(out[-1]["points"]) == 2 and "Answered before" in out[1]
    out = page.answer_class(out[-1], "forward_head")  # quick relabel supersedes
    assert out[-1]["file"] == "b.jpg"
    out = page.answer_class(out[-1], "unusable")
    assert out[-1]["file"] is None and "Done" in out[1]
    labels = read_labels(tmp_path / "labels.csv")
    assert {k: v.label for k, v in labels.items()} == {"a.jpg": "forward_head", "b.jpg": "unusable"}
    s.close()


def test_overlay_draws_without_touching_the_input() -> None:
    img = np.zeros((100, 200, 3), np.uint8)
    out = draw_points(img, [(150, 20), (50, 80)], threshold_deg=50, label="forward_head")
    assert out.shape == img.shape and img.sum() == 0 and out.sum() > 0
    assert tuple(out[20, 150]) != (0, 0, 0) and tuple(out[80, 50]) != (0, 0, 0)
    facing_left = draw_points(img, [(20, 20), (150, 80)])
    assert facing_left.sum() > 0
    assert np.array_equal(draw_points(img, []), img)


def test_next_photo_is_decoded_in_the_background(tmp_path: Path) -> None:
    s = _session(tmp_path)
    assert s.next_pending(skip="a.jpg") == "b.jpg"
    future = s.prefetch("b.jpg")
    assert future is not None
    prefetched = future.result()
    assert s.view("b.jpg") is prefetched  # served from the cache, not decoded again
    assert s.prefetch("b.jpg") is None  # nothing to do any more
    assert s.prefetch(None) is None
    s.close()
