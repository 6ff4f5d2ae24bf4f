"""Calibrated pose classifier (``posture.posecal``): geometry, calibration, a trained run, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from _serving_helpers import REAL_DATA
from posture.cli import UserError
from posture.geometry import posture_geometry
from posture.pose import HEAD_AND_SHOULDERS, pose_available
from posture.posecal import (CalibratedPoseModel, PoseCalConfig, PoseCalibrator, evaluate_sessions, fit_model,
                             main, pick_calibration, run_posecal, score, train)

needs_pose = pytest.mark.skipif(not pose_available(), reason="MediaPipe is not installed "
                                "(pip install --no-deps -r requirements-pose.txt)")
needs_real = pytest.mark.skipif(not (REAL_DATA / "manifest.csv").is_file(), reason="../shared/data/real is absent")
CLASSES = ["forward_head", "normal"]


def _person(nose_y: float, ear: tuple[float, float] = (90, 50), vis: float = 0.99) -> np.ndarray:
    """Frontal landmarks: face 20 px tall (eyes at 40, mouth at 60), shoulders at y=100."""
    lm = np.zeros((33, 4))
    pts = {"nose": (100, nose_y), "left_eye": (90, 40), "right_eye": (110, 40), "mouth_left": (92, 60),
           "mouth_right": (108, 60), "left_ear": ear, "right_ear": (115, 50), "left_shoulder": (60, 100),
           "right_shoulder": (140, 100)}
    for name, (x, y) in pts.items():
        lm[HEAD_AND_SHOULDERS[name]] = (x, y, 0, vis)
    return lm


# ------------------------------------------------------------------------------------- geometry


def test_head_height_is_measured_in_face_heights_and_the_angle_in_degrees() -> None:
    head_height, angle = posture_geometry(_person(nose_y=50))
    assert head_height == pytest.approx(50 / 20)       # nose 50 px above the shoulders, face 20 px
    assert angle == pytest.approx(np.degrees(np.arctan2(50, 30)))  # left ear (90,50) over shoulder (60,100)


def test_geometry_does_not_depend_on_the_photo_scale() -> None:
    small, big = _person(nose_y=50), _person(nose_y=50)
    big[:, :3] *= 3.0
    assert np.allclose(posture_geometry(small), posture_geometry(big))


def test_unmeasurable_people_give_none() -> None:
    assert posture_geometry(None) is None
    hidden = _person(nose_y=50)
    hidden[HEAD_AND_SHOULDERS["left_shoulder"], 3] = 0.0
    assert posture_geometry(hidden) is None
    no_face = _person(nose_y=50)
    for k in ("left_eye", "right_eye", "mouth_left", "mouth_right"):
        no_face[HEAD_AND_SHOULDERS[k], :2] = (100, 50)
    assert posture_geometry(no_face) is None


# ------------------------------------------------------------------------------------- calibration


def _sessions(offsets: dict[str, float], n: int = 6, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Synthetic geometry: in each session upright heads sit ``gap`` higher than forward ones, but each
    session's level is shifted by its camera (``offsets``), by more than the gap."""
    rng = np.random.default_rng(seed)
    rows, geo = [], []
    for s, off in offsets.items():
        for label in CLASSES:
            for i in range(n):
                h = off + (2.5 if label == "normal" else 2.0) + rng.normal(0, 0.05)
                geo.append([h, 60 + 10 * (h - off) + rng.normal(0, 0.5)])
                rows.append({"path": f"{s}/{label}{i}.jpg", "label": label, "source": s})
    return pd.DataFrame(rows), np.array(geo)


def test_calibration_removes_the_session_shift_that_defeats_the_uncalibrated_model() -> None:
    train_frame, train_geo = _sessions({"a": 0.0, "b": 1.5})
    model = train(PoseCalConfig(data="", out=""), train_frame, train_geo, CLASSES)
    test_frame, test_geo = _sessions({"c": -1.0}, seed=1)
    table = evaluate_sessions(model, test_geo, test_frame, "source", k=2, seed=0)
    assert (table["role"] == "reference").sum() == 2
    assert set(table.loc[table["role"] == "reference", "label"]) == {"normal"}
    calibrated = score(table, CLASSES, "forward_head")
    assert calibrated["balanced_accuracy"] == 1.0 and calibrated["n"] == 10
    mean_ref = np.array([0.75 + 2.5, 60 + 25.0])  # the training sessions' mean upright geometry
    plain = score(evaluate_sessions(model, test_geo, test_frame, "source", k=2, seed=0, fixed_reference=mean_ref),
                  CLASSES, "forward_head")
    assert plain["n"] == 10 and plain["balanced_accuracy"] == 0.5  # a low camera: every head looks dropped
    assert calibrated["per_session"]["c"]["confusion_matrix"] == [[6, 0], [0, 4]]


def test_calibration_photos_are_seeded_upright_and_per_session() -> None:
    frame, _ = _sessions({"a": 0.0, "b": 1.0})
    valid = np.ones(len(frame), bool)
    valid[frame.index[(frame["source"] == "b") & (frame["label"] == "normal")][:5]] = False
    first = pick_calibration(frame, valid, "source", 3, seed=7)
    assert np.array_equal(first, pick_calibration(frame, valid, "source", 3, seed=7))
    assert (frame.loc[first, "label"] == "normal").all()
    assert frame.loc[first, "source"].value_counts().to_dict() == {"a": 3, "b": 1}  # b has one measurable


def test_training_needs_both_classes_and_the_reference_class() -> None:
    frame, geo = _sessions({"a": 0.0})
    with pytest.raises(UserError, match="both classes"):
        fit_model(geo[:3], np.zeros(3, int), CLASSES, "forward_head")
    with pytest.raises(UserError, match="'normal'"):
        train(PoseCalConfig(data="", out=""), frame, geo, ["slouch", "upright"])
    with pytest.raises(UserError, match="--session-column"):
        train(PoseCalConfig(data="", out="", session_column="camera"), frame, geo, CLASSES)


def test_model_round_trips_through_tensors() -> None:
    frame, geo = _sessions({"a": 0.0, "b": 1.0})
    model = train(PoseCalConfig(data="", out=""), frame, geo, CLASSES)
    back = CalibratedPoseModel.from_tensors({"classes": CLASSES, "positive_class": "forward_head"}, model.tensors())
    assert np.allclose(back.predict_proba(geo, geo[0]), model.predict_proba(geo, geo[0]))
    assert np.allclose(model.predict_proba(geo, geo[0]).sum(axis=1), 1.0)


# ------------------------------------------------------------------------------------- a real run


@pytest.fixture(scope="module")
def real_split(tmp_path_factory):
    """The real photos' manifest with a split: neckpose is the unseen test session."""
    root = tmp_path_factory.mktemp("real_split")
    manifest = pd.read_csv(REAL_DATA / "manifest.csv")
    manifest["split"] = np.where(manifest["source"] == "neckpose", "test", "train")
    (root / "images").symlink_to(REAL_DATA.resolve())
    manifest["path"] = "images/" + manifest["path"]
    manifest.to_csv(root / "manifest.csv", index=False)
    (root / "classes.json").write_text(json.dumps(CLASSES))
    return root


@needs_pose
@needs_real
@pytest.mark.slow
def test_run_on_real_photos_beats_chance_on_the_unseen_session_and_predicts_from_the_cli(
        real_split, tmp_path, capsys) -> None:
    out = tmp_path / "pose_run"
    metrics = run_posecal(PoseCalConfig(data=str(real_split), out=str(out), calibration_photos=3, progress=False))
    test = metrics["test"]
    assert test["n"] == 45 and test["references"] == 3
    assert test["balanced_accuracy"] >= 0.9           # measured 1.0 (bench/results/pose_calibration.md)
    assert metrics["test_uncalibrated"]["balanced_accuracy"] <= 0.6
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "pose-calibrated" and config["classes"] == CLASSES
    assert (out / "model.safetensors").is_file() and (out / "predictions.csv").is_file()
    again = run_posecal(PoseCalConfig(data=str(real_split), out=str(out), calibration_photos=3, progress=False,
                                      overwrite=True))  # written aside, then swapped in: same seed, same run
    assert again["test"]["confusion_matrix"] == test["confusion_matrix"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pose_run"]  # no staging or old copy left behind

    from posture.predict import Predictor

    with pytest.raises(UserError, match="posecal"):
        Predictor.from_run(out)  # the CNN predictor refuses it with a pointer, not a traceback

    upright = sorted((REAL_DATA / "normal").glob("neckpose-*.jpg"))[0]
    forward = sorted((REAL_DATA / "forward_head").glob("neckpose-*.jpg"))[-1]
    calibrator = PoseCalibrator.from_run(out)
    calibrator.calibrate([str(upright)])
    assert calibrator.predict(str(forward)).label == "forward_head"
    assert calibrator.predict(str(upright)).label == "normal"
    from posture.cli import run_main

    assert run_main(main, ["predict", "--run", str(out), "--upright", str(upright), str(forward), "--json", "-q"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["label"] == "forward_head" and set(line["probabilities"]) == set(CLASSES)


@needs_pose
def test_predicting_before_calibrating_or_without_a_person_is_a_clear_error(tmp_path) -> None:
    frame, geo = _sessions({"a": 0.0, "b": 1.0})
    model = train(PoseCalConfig(data="", out=""), frame, geo, CLASSES)
    calibrator = PoseCalibrator({"kind": "pose-calibrated"}, model)
    gray = np.full((64, 64, 3), 128, np.uint8)
    with pytest.raises(UserError, match="calibrate first"):
        calibrator.predict(gray)
    with pytest.raises(UserError, match="no person"):
        calibrator.calibrate([gray])
    calibrator.reference = geo[0]
    assert calibrator.predict(gray) is None


def test_train_cli_errors_are_one_line_and_leave_foreign_folders_alone(tmp_path) -> None:
    from posture.cli import run_main

    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    ds = tmp_path / "ds"
    ds.mkdir()
    frame = pd.DataFrame({"path": ["a.jpg", "b.jpg"], "label": ["normal", "forward_head"], "split": ["train"] * 2,
                          "subject": ["s", "t"], "sha256": ["0", "1"]})
    frame.to_csv(ds / "manifest.csv", index=False)
    assert run_main(main, ["train", "--data", str(ds), "--out", str(run), "-q"]) == 2  # no source column
    frame.assign(source="cam").to_csv(ds / "manifest.csv", index=False)
    assert run_main(main, ["train", "--data", str(ds), "--out", str(run), "-q"]) == 2  # not empty
    assert run_main(main, ["train", "--data", str(ds), "--out", str(run), "--overwrite", "-q"]) == 2  # not a run
    assert (run / "notes.txt").read_text() == "mine"
