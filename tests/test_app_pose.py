"""The web demo's "Calibrated (pose)" tab: calibrate on an upright photo, then judge photos against it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _serving_helpers import CHROMIUM, CLASSES, REAL_DATA, AppServer, chromium_page, make_run
from app.demo import AppConfig, UploadError, build_demo
from app.pose_tab import (NO_PERSON, NOT_CALIBRATED, PoseReference, PoseTab, calibrate_session, explain_change,
                          load_pose_calibrator, predict_session)
from posture.checkpoint import save_checkpoint
from posture.cli import UserError
from posture.pose import pose_available
from posture.predict import Predictor

needs_pose = pytest.mark.skipif(not pose_available(), reason="MediaPipe is not installed "
                                "(pip install --no-deps -r requirements-pose.txt)")
needs_real = pytest.mark.skipif(not (REAL_DATA / "manifest.csv").is_file(), reason="../shared/data/real is absent")

# One capture session of the real photos (neckpose): the same person and camera, upright and slumped.
UPRIGHT = "normal/neckpose-case4-0100.jpg"
UPRIGHT_AGAIN = "normal/neckpose-case4-0103.jpg"
FORWARD = "forward_head/neckpose-case1-0100.jpg"


def _real(name: str) -> str:
    return str(REAL_DATA / name)


@pytest.fixture(scope="module")
def pose_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A calibrated pose run saved the way ``posture.posecal`` saves one, with coefficients close to
    what training on the real photos gives (a lower head and a smaller angle mean forward_head)."""
    from posture.posecal import ARCHITECTURE, KIND, REFERENCE_CLASS, CalibratedPoseModel

    model = CalibratedPoseModel(classes=CLASSES, positive_class="forward_head", mean=np.array([-0.5, -5.0]),
                                scale=np.array([0.55, 6.9]), coef=np.array([-3.0, -0.5]), intercept=1.3)
    config = {"kind": KIND, "architecture": ARCHITECTURE, "classes": CLASSES, "positive_class": "forward_head",
              "reference_class": REFERENCE_CLASS, "features": ["head_height", "ear_shoulder_angle"],
              "preprocessing": {"landmarks": "mediapipe BlazePose 0.10.21", "model_complexity": 1,
                                "min_confidence": 0.5}}
    return save_checkpoint(tmp_path_factory.mktemp("pose") / "run", model.tensors(), config,
                           metrics={"test": {"balanced_accuracy": 0.86}})


@pytest.fixture(scope="module")
def calibrator(pose_run: Path):  # type: ignore[no-untyped-def]
    if not pose_available():
        pytest.skip("MediaPipe is not installed")
    return load_pose_calibrator(pose_run)


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("cnn") / "run")


# ------------------------------------------------------------------------------ pure functions

@needs_pose
@needs_real
def test_calibrate_on_upright_then_a_slumped_photo_is_forward_head(calibrator) -> None:  # type: ignore[no-untyped-def]
    forgotten: list[str] = []
    tab = PoseTab(calibrator, AppConfig(max_pixels=1_000_000), forget=forgotten.append)
    reference, shown, note = tab.calibrate(_real(UPRIGHT))
    assert isinstance(reference, PoseReference) and reference.head_height > 1.5
    assert shown.shape == (288, 512, 3) and "Calibrated" in note

    value, annotated, note = tab.predict(_real(FORWARD), reference)
    assert value["label"] == "forward_head" and {c["label"] for c in value["confidences"]} == set(CLASSES)
    assert "forward_head" in note and "face-heights lower than in your upright photo" in note
    photo = np.asarray(Image.open(_real(FORWARD)).convert("RGB"))
    assert annotated.shape == photo.shape and (annotated != photo).any(axis=-1).mean() > 0.001  # marks drawn

    value, _, note = tab.predict(_real(UPRIGHT_AGAIN), reference)  # sitting up again: normal
    assert value["label"] == "normal"
    assert forgotten == [_real(UPRIGHT), _real(FORWARD), _real(UPRIGHT_AGAIN)]  # uploads released once read
    assert calibrator.reference is None  # the shared calibrator never holds a visitor's reference


@needs_pose
@needs_real
def test_two_sessions_do_not_share_a_reference(calibrator) -> None:  # type: ignore[no-untyped-def]
    """Visitor A calibrates on the slumped photo, B on the upright one: the same photo gets each
    visitor's own answer, and a third, uncalibrated visitor gets none."""
    rgb = np.asarray(Image.open(_real(FORWARD)).convert("RGB"))
    state_a, _, _ = calibrate_session(calibrator, rgb)
    state_b, _, _ = calibrate_session(calibrator, np.asarray(Image.open(_real(UPRIGHT)).convert("RGB")))
    assert predict_session(calibrator, rgb, state_a).prediction.label == "normal"
    assert predict_session(calibrator, rgb, state_b).prediction.label == "forward_head"
    with pytest.raises(UploadError, match="Calibrate first"):
        predict_session(calibrator, rgb, None)
    assert state_a != state_b and calibrator.reference is None


@needs_pose
def test_predicting_before_calibrating_says_so_and_forgets_the_upload(calibrator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    forgotten: list[str] = []
    tab = PoseTab(calibrator, AppConfig(), forget=forgotten.append)
    path = tmp_path / "p.png"
    Image.new("RGB", (64, 64), (90, 90, 90)).save(path)
    with pytest.raises(UploadError) as exc:
        tab.predict(str(path), None)
    assert str(exc.value) == NOT_CALIBRATED and forgotten == [str(path)]


@needs_pose
def test_a_photo_without_a_person_gets_a_clear_message_and_keeps_the_calibration(calibrator) -> None:  # type: ignore[no-untyped-def]
    gray = np.full((240, 320, 3), 128, np.uint8)
    with pytest.raises(UploadError) as exc:
        calibrate_session(calibrator, gray)
    assert str(exc.value) == NO_PERSON.format(what="the upright photo")
    reference = PoseReference(2.4, 55.0)
    with pytest.raises(UploadError, match="No person could be measured in this photo"):
        predict_session(calibrator, gray, reference)
    assert reference == PoseReference(2.4, 55.0)


@needs_pose
def test_corrupt_and_oversized_uploads_reuse_the_apps_messages(calibrator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tab = PoseTab(calibrator, AppConfig(max_pixels=10_000))
    broken = tmp_path / "cut.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 a truncated jpeg")
    big = tmp_path / "big.png"
    Image.new("RGB", (200, 100)).save(big)  # 20 000 pixels, over this app's limit
    reference = PoseReference(2.4, 55.0)
    for source, message in [(None, "upload a photo"), (b"%PDF-1.4", "not an image"), (str(broken), "damaged|not an image"),
                            (str(big), "megapixels")]:
        with pytest.raises(UploadError, match=message):
            tab.calibrate(source)
        with pytest.raises(UploadError, match=message):
            tab.predict(source, reference)


def test_the_explanation_names_the_direction_and_size_of_the_change() -> None:
    ref = PoseReference(2.0, 55.0)
    assert explain_change(np.array([1.6, 47.0]), ref) == ("Head 0.4 face-heights lower than in your upright photo; "
                                                         "ear-over-shoulder angle 8° smaller.")
    assert explain_change(np.array([2.5, 58.0]), ref).startswith("Head 0.5 face-heights higher")
    assert explain_change(np.array([2.05, 55.2]), ref) == ("Head about as high over the shoulders as in your "
                                                          "upright photo; ear-over-shoulder angle unchanged.")


def test_a_run_that_is_not_a_pose_run_is_refused(cnn_run: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a calibrated pose run"):
        load_pose_calibrator(cnn_run)
    with pytest.raises(UserError, match="posture.posecal train"):
        load_pose_calibrator(tmp_path / "missing")


def test_the_cli_reports_a_bad_pose_run_in_one_line(cnn_run: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from app.__main__ import main
    from posture.cli import run_main

    monkeypatch.setattr("app.__main__.signal.signal", lambda *args: None)  # keep pytest's own SIGTERM handler
    assert run_main(main, ["--run", str(cnn_run), "--pose-run", str(cnn_run)]) == 2
    err = capsys.readouterr().err
    assert "error: " in err and "not a calibrated pose run" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------ the page

def _tab_labels(demo) -> set[str]:  # type: ignore[no-untyped-def]
    import gradio as gr

    return {block.label for block in demo.blocks.values() if isinstance(block, gr.Tab)}


def _api_names(demo) -> set[str]:  # type: ignore[no-untyped-def]
    return {fn.api_name for fn in demo.fns.values()}


@pytest.fixture(scope="module")
def predictor(cnn_run: Path) -> Predictor:
    return Predictor.from_run(cnn_run, backend="torch")


def test_without_pose_run_the_app_is_as_before(predictor: Predictor, tmp_path: Path) -> None:
    from app.__main__ import build_parser

    assert build_parser().parse_args([]).pose_run is None and "--pose-run" in build_parser().format_help()
    plain = build_demo(predictor, AppConfig(cam=False), tmp_path)
    assert _tab_labels(plain) == {"Photo", "Batch"} and not any("pose" in str(n) for n in _api_names(plain))


def test_with_a_pose_run_the_page_gets_the_tab(predictor: Predictor, calibrator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with_pose = build_demo(predictor, AppConfig(cam=False), tmp_path, pose=calibrator)
    assert _tab_labels(with_pose) == {"Photo", "Batch", "Calibrated (pose)"}
    assert {"pose_calibrate", "pose_classify"} <= _api_names(with_pose)


# ---------------------------------------------------------------------------------- live server

@pytest.fixture(scope="module")
def server(cnn_run: Path, pose_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    if not pose_available() or not (REAL_DATA / "manifest.csv").is_file():
        pytest.skip("needs MediaPipe and ../shared/data/real")
    app = AppServer(cnn_run, tmp_path_factory.mktemp("pose-server"), "--pose-run", str(pose_run), "--no-cam",
                    "--examples", "0")
    try:
        app.wait_ready()
        yield app
    finally:
        app.stop()


@pytest.mark.slow
def test_served_sessions_calibrate_separately(server: AppServer, tmp_path: Path) -> None:
    """Two visitors (two client sessions): only the one who calibrated gets an answer."""
    from gradio_client import Client, handle_file

    alice = Client(server.url, verbose=False, download_files=str(tmp_path / "a"))
    bob = Client(server.url, verbose=False, download_files=str(tmp_path / "b"))
    note = alice.predict(handle_file(_real(UPRIGHT)), api_name="/pose_calibrate")[1]
    assert "Calibrated" in note
    with pytest.raises(Exception, match="Calibrate first"):
        bob.predict(handle_file(_real(FORWARD)), api_name="/pose_classify")
    value, overlay, note = alice.predict(handle_file(_real(FORWARD)), api_name="/pose_classify")
    assert value["label"] == "forward_head" and Path(overlay).is_file() and "lower" in note
    assert server.proc.poll() is None


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)")
def test_calibrate_and_check_in_a_browser(server: AppServer, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with chromium_page(1280, 1400) as page:
        # not "networkidle": the page keeps a heartbeat stream open for its per-session state
        page.goto(server.url, wait_until="load")
        page.get_by_role("tab", name="Calibrated (pose)").click(timeout=60_000)
        page.locator("#pose-check").click()  # too early: a message, no answer
        expect(page.get_by_text("Calibrate first").first).to_be_visible(timeout=60_000)
        page.locator("#pose-upright input[type=file]").set_input_files(_real(UPRIGHT))
        page.locator("#pose-upright img").first.wait_for(timeout=60_000)
        page.locator("#pose-calibrate").click()
        expect(page.locator("#pose-calibration-note")).to_contain_text("Calibrated", timeout=60_000)
        page.locator("#pose-photo input[type=file]").set_input_files(_real(FORWARD))
        page.locator("#pose-photo img").first.wait_for(timeout=60_000)
        page.locator("#pose-check").click()
        expect(page.locator("#pose-note")).to_contain_text("forward_head", timeout=60_000)
        expect(page.locator("#pose-overlay img").first).to_be_visible(timeout=60_000)
        assert "forward_head" in page.locator("#pose-label").inner_text()
        shot = tmp_path / "pose.png"
        page.screenshot(path=str(shot), full_page=True)
    shutil.copy(shot, "/tmp/app_pose_screenshot.png")  # for people reviewing the run
