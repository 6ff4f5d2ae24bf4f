"""Posture geometry as a feature extractor of the zoo, through the one pipeline:
geometry → cached landmarks → finetune → evaluate → export → predict → app, plus "cannot assess"
and calibration with an upright photo. Mechanics run on a stand-in detector (no MediaPipe);
the BlazePose tests at the end use real photos."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from _markup_helpers import shown_text
from _pose_helpers import frontal_landmarks, make_pose_dataset, needs_pose, pose_photo, real_fold
from _serving_helpers import REAL_DATA
from posture.cli import UserError
from posture.pose.geometry import (
    DEFAULT_FEATURES,
    FEATURES,
    assess,
    augment_landmarks,
    better_side,
    compute_features,
    posture_features,
)
from posture.pose.geometry import (
    LANDMARK_INDEX as I,
)

needs_real = pytest.mark.real_data
ALL = [name for name, feature in FEATURES.items() if not feature.frame]  # the frame features read the framing


# ------------------------------------------------------------------------------------- geometry


def test_image_features_do_not_depend_on_photo_size_framing_or_distance() -> None:
    lm = frontal_landmarks(400, 300, drop=0.3)
    moved = lm.copy()
    moved[:, :2] = moved[:, :2] * 2.5 + np.array([40.0, -17.0])  # a closer camera, another framing
    np.testing.assert_allclose(compute_features(lm, ALL), compute_features(moved, ALL), rtol=1e-5, atol=1e-5)


def test_a_dropped_head_reads_lower_and_further_forward() -> None:
    up, down = (dict(zip(ALL, compute_features(frontal_landmarks(400, 300, d), ALL), strict=True)) for d in (0.0, 1.0))
    assert down["head_height"] < up["head_height"] and down["world_head_drop"] < up["world_head_drop"]
    assert down["world_nose_forward"] > up["world_nose_forward"]


def test_side_view_measures_use_the_side_nearer_the_camera_not_the_more_visible_one() -> None:
    # A profile facing +x: the near (left) ear sits ahead of and above its shoulder; BlazePose's guess
    # of the hidden right ear lies elsewhere, and it calls the far side a little *more* visible.
    lm = frontal_landmarks(400, 300, drop=0.0)
    for name, (x, y, z, vis) in {
        "left_ear": (230.0, 100.0, -50.0, 0.97),
        "left_shoulder": (200.0, 160.0, -40.0, 0.97),
        "right_ear": (170.0, 140.0, 40.0, 0.99),
        "right_shoulder": (205.0, 165.0, 50.0, 0.99),
    }.items():
        lm[I[name], :4] = (x, y, z, vis)
    assert better_side(lm) == "left"
    near = compute_features(lm, ["ear_forward"])[0]  # (230 - 200) px ahead, in face heights
    lm[[I["left_ear"], I["left_shoulder"]], 2] += 200.0  # now the right side is nearer
    assert better_side(lm) == "right"
    assert compute_features(lm, ["ear_forward"])[0] == pytest.approx(near * (170.0 - 205.0) / 30.0, rel=1e-6)


def test_the_ear_shoulder_angle_runs_along_the_midline_so_opposite_shoulder_errors_cancel() -> None:
    # A profile: both ears on one spot, the shoulders' midpoint 30 px behind and 60 px below them.
    # BlazePose's near shoulder errs forward and its guess of the hidden one backward, by as much.
    lm = frontal_landmarks(400, 300, drop=0.0)
    for name, (x, y) in {"left_ear": (230.0, 100.0), "right_ear": (230.0, 100.0)}.items():
        lm[I[name], :2] = (x, y)
    angles = []
    for error in (0.0, 12.0, -8.0):
        lm[I["left_shoulder"], :2] = (200.0 + error, 160.0)
        lm[I["right_shoulder"], :2] = (200.0 - error, 160.0)
        angles.append(compute_features(lm, ["ear_shoulder_angle"])[0])
    np.testing.assert_allclose(angles, np.degrees(np.arctan2(60.0, 30.0)), atol=1e-4)


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda lm: None, "no person"),
        (lambda lm: lm.__setitem__((11, 1), 900.0) or lm, "shoulders are not visible"),  # left shoulder below the photo
        (lambda lm: lm.__setitem__((12, 3), 0.1) or lm, "shoulders are not visible"),  # right shoulder hidden
        (lambda lm: lm.__setitem__((0, 3), 0.1) or lm, "face is not visible"),  # nose hidden
        (lambda lm: lm.__setitem__(([7, 8], 3), 0.1) or lm, "an ear"),
    ],
)
def test_a_person_who_cannot_be_measured_gets_a_reason_not_a_guess(change, reason: str) -> None:
    lm = change(frontal_landmarks(400, 300, 0.2))
    values, why = posture_features(lm, DEFAULT_FEATURES, (300, 400))
    assert values is None and reason in why
    assert assess(frontal_landmarks(400, 300, 0.2), (300, 400)) is None


def test_landmark_augmentation_is_seeded_and_keeps_the_posture() -> None:
    lm = frontal_landmarks(400, 300, 0.5)
    a = augment_landmarks(lm, np.random.default_rng(3))
    b = augment_landmarks(lm, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    views = np.stack([compute_features(augment_landmarks(lm, np.random.default_rng(s)), ALL) for s in range(40)])
    clean = compute_features(lm, ALL)
    assert not np.allclose(views[0], clean)  # it does change the numbers...
    for name in ("head_height", "world_head_drop", "world_nose_forward"):  # ...but not the posture they say
        i = ALL.index(name)
        assert abs(np.median(views[:, i]) - clean[i]) < 0.1 * abs(clean[i]) + 0.05


# ----------------------------------------------------------------------- the pipeline (stand-in)


@pytest.fixture
def pose_run(tmp_path, fake_blazepose, one_torch_thread):
    from posture.training.finetune import FinetuneConfig, run_finetune

    data = make_pose_dataset(tmp_path / "data")
    out = tmp_path / "run"
    metrics = run_finetune(
        FinetuneConfig(
            data=str(data), out=str(out), workers=0, progress=False, cache_dir=str(tmp_path / "cache"), device="cpu"
        )
    )
    return data, out, metrics


def test_the_default_model_is_pose_geometry_and_its_run_says_what_it_reads(pose_run) -> None:
    data, out, metrics = pose_run
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "pose" and config["extractor"] == "pose"
    names = [f["name"] for f in config["pose"]["features"]]
    assert names == list(DEFAULT_FEATURES) and all(f["description"] for f in config["pose"]["features"])
    assert len(config["pose"]["upright_reference"]) == len(names)
    assert metrics["test"]["accuracy"] == 1.0 and metrics["coverage"] == 1.0
    assert metrics["extraction"]["landmarks"]["train"]["computed"] > 0


def test_landmarks_are_cached_so_a_rerun_calls_no_pose_model(pose_run, tmp_path) -> None:
    from posture.training.finetune import FinetuneConfig, run_finetune

    data, out, _ = pose_run
    again = run_finetune(
        FinetuneConfig(
            data=str(data),
            out=str(tmp_path / "again"),
            workers=0,
            progress=False,
            cache_dir=str(tmp_path / "cache"),
            device="cpu",
            head_hidden=8,
        )
    )
    marks = again["extraction"]["landmarks"]
    assert marks["train"]["computed"] == 0 and marks["eval"]["computed"] == 0
    assert marks["train"]["from_cache"] == 20


def test_predict_explains_in_numbers_and_cannot_assess_says_why(pose_run) -> None:
    from posture.inference.predict import Predictor

    _, out, _ = pose_run
    predictor = Predictor.from_run(out)
    upright, dropped = predictor.predict_many([pose_photo("normal", 900), pose_photo("forward_head", 901)])
    assert (upright.label, dropped.label) == ("normal", "forward_head")
    assert set(upright.geometry) == set(DEFAULT_FEATURES)
    assert upright.explanation.startswith("normal:") and "upright, in training" in upright.explanation
    nobody = predictor.predict(np.zeros((64, 48, 3), np.uint8))
    assert nobody.label is None and nobody.confidence is None and "no person" in nobody.reason
    assert nobody.to_dict()["label"] is None and "reason" in nobody.to_dict()
    rows = predictor.logits([np.zeros((64, 48, 3), np.uint8), pose_photo("normal", 3)])
    assert np.isnan(rows[0]).all() and np.isfinite(rows[1]).all()


def test_the_cli_prints_cannot_assess_and_json_gives_label_null(pose_run, tmp_path, capsys) -> None:
    from PIL import Image

    from posture.inference.predict import main

    _, out, _ = pose_run
    Image.fromarray(np.zeros((64, 48, 3), np.uint8)).save(tmp_path / "empty.png")
    Image.fromarray(pose_photo("normal", 5)).save(tmp_path / "me.png")
    assert main(["--run", str(out), str(tmp_path / "empty.png"), str(tmp_path / "me.png")]) == 0
    text = capsys.readouterr().out.splitlines()
    assert "cannot assess: no person found" in text[0] and "\tnormal\t" in text[1]
    assert main(["--run", str(out), "--json", str(tmp_path / "empty.png")]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["label"] is None and "no person" in answer["reason"]


def test_calibration_with_an_upright_photo_is_an_option_of_the_same_predictor(pose_run) -> None:
    from posture.inference.predict import Predictor

    _, out, _ = pose_run
    predictor = Predictor.from_run(out)
    # a camera that makes everyone look slouched: judged alone, this person's upright photo is "forward"
    slouched_upright = pose_photo("forward_head", 7)
    assert predictor.predict(slouched_upright).label == "forward_head"
    calibrated = predictor.with_reference([slouched_upright])
    assert calibrated.predict(slouched_upright).label == "normal"
    assert predictor.reference is None  # the shared predictor is untouched
    assert "upright, yours" in calibrated.predict(slouched_upright).explanation
    with pytest.raises(UserError, match="no person could be measured"):
        predictor.with_reference([np.zeros((64, 48, 3), np.uint8)])


def test_a_run_trained_before_a_feature_changed_meaning_is_refused_with_what_to_do(pose_run, tmp_path) -> None:
    import shutil

    from posture.inference.predict import Predictor

    _, out, _ = pose_run
    old = tmp_path / "old-run"
    shutil.copytree(out, old)
    config = json.loads((old / "config.json").read_text())
    config["pose"]["features"][0] = {"name": "ear_shoulder_angle"}
    config["pose"]["geometry_version"] = 2  # before the angle moved to the midline
    config["pose"]["coverage"] = None  # runs of that version recorded none
    (old / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match=r"ear_shoulder_angle meant something else.*posture\.finetune"):
        Predictor.from_run(old)


def test_calibration_needs_a_pose_based_run(tmp_path) -> None:
    from _serving_helpers import make_run
    from posture.inference.predict import Predictor

    predictor = Predictor.from_run(make_run(tmp_path / "cnn"))
    with pytest.raises(UserError, match="pose-based run"):
        predictor.with_reference([pose_photo("normal", 1)])


def test_evaluate_reports_coverage_beside_accuracy(pose_run, tmp_path) -> None:
    from PIL import Image

    from posture.inference.evaluate import EvalConfig, evaluate

    data, out, _ = pose_run
    frame = pd.read_csv(data / "manifest.csv")
    Image.fromarray(np.zeros((64, 48, 3), np.uint8)).save(data / "images" / "nobody.png")
    extra = {**frame.iloc[-1].to_dict(), "path": "images/nobody.png", "split": "test"}
    pd.concat([frame, pd.DataFrame([extra])]).to_csv(data / "manifest.csv", index=False)
    report = evaluate(EvalConfig(run=out, data=data, gradcam=False, top_k=2, device="cpu"))
    assert report["n_not_assessed"] == 1 and report["n"] == 8
    assert report["coverage"] == pytest.approx(8 / 9)
    assert report["not_assessed"][0]["path"] == "images/nobody.png"
    assert (out / "eval" / "top_losses.png").is_file()


def test_export_runs_the_geometry_head_in_onnx_with_parity(pose_run) -> None:
    from posture.inference.export import ExportConfig, export_onnx
    from posture.inference.predict import Predictor

    _, out, _ = pose_run
    result = export_onnx(ExportConfig(run_dir=out))
    assert result.max_abs_diff <= 1e-4
    onnx = Predictor.from_run(out, backend="onnx")
    torch_ = Predictor.from_run(out, backend="torch")
    photos = [pose_photo("normal", 11), pose_photo("forward_head", 12), np.zeros((64, 48, 3), np.uint8)]
    a, b = onnx.predict_proba(photos), torch_.predict_proba(photos)
    np.testing.assert_allclose(a[:2], b[:2], atol=1e-5)
    assert np.isnan(a[2]).all()


def test_unfreezing_a_pose_run_and_cnn_options_on_geometry_are_refused(tmp_path, fake_blazepose) -> None:
    from posture.training.finetune import FinetuneConfig

    with pytest.raises(UserError, match="unfreeze"):
        FinetuneConfig(data="d", out="o", model="pose", unfreeze="1")
    with pytest.raises(UserError, match="read pixels"):
        FinetuneConfig(data="d", out="o", model="pose", crop="pose")
    with pytest.raises(UserError, match="unknown pose feature"):
        from posture.models import build_model

        build_model("pose", 2, pose_features=["nope"])


def test_without_mediapipe_the_default_says_what_to_install_and_which_cnn_to_use(monkeypatch) -> None:
    import posture.pose.detector as pose
    from posture.training.finetune import FinetuneConfig, check_runnable

    monkeypatch.setattr(pose, "pose_available", lambda: False)
    with pytest.raises(UserError) as exc:
        check_runnable(FinetuneConfig(data="d", out="o"))
    message = str(exc.value)
    assert "requirements-pose.txt" in message and "--model efficientnet_lite0" in message and "\n" not in message


def test_val_group_holds_out_whole_sessions(tmp_path) -> None:
    from posture.data.datasets import regroup_validation

    frame = pd.read_csv(make_pose_dataset(tmp_path / "d", sources=3) / "manifest.csv")
    out = regroup_validation(frame, "source", seed=0)
    pool = out[out["split"] != "test"]
    assert set(pool[pool["split"] == "val"]["source"]).isdisjoint(pool[pool["split"] == "train"]["source"])
    assert pool[pool["split"] == "val"]["label"].nunique() == 2
    assert (out["split"] == "test").sum() == (frame["split"] == "test").sum()
    one = frame.assign(source="only")
    assert regroup_validation(one, "source").equals(one)  # nothing to hold out: the split stays
    with pytest.raises(UserError, match="no 'room' column"):
        regroup_validation(frame, "room")


# ---------------------------------------------------------------------- fusion (stand-in, random CNN)


@pytest.mark.slow
def test_a_fusion_trains_evaluates_exports_predicts_and_explains(tmp_path, fake_blazepose, one_torch_thread) -> None:
    from PIL import Image

    from app.demo import AppConfig, Handlers
    from posture.inference.cam import explain
    from posture.inference.evaluate import EvalConfig, evaluate
    from posture.inference.export import ExportConfig, export_onnx
    from posture.inference.predict import Predictor
    from posture.training.finetune import FinetuneConfig, run_finetune

    data = make_pose_dataset(tmp_path / "data")
    out = tmp_path / "fused"
    metrics = run_finetune(
        FinetuneConfig(
            data=str(data),
            out=str(out),
            model="mobilenet_v3_small+pose",
            weights="none",
            image_size=48,
            workers=0,
            progress=False,
            epochs=20,
            cache_dir=str(tmp_path / "cache"),
            device="cpu",
            extract_backend="torch",
        )
    )
    assert metrics["test"]["accuracy"] >= 0.75
    config = json.loads((out / "config.json").read_text())
    assert config["extractor"] == "fusion" and config["preprocessing"]["crop"] == "pose"
    assert export_onnx(ExportConfig(run_dir=out)).max_abs_diff <= 1e-4
    predictor = Predictor.from_run(out, backend="onnx")
    answer = predictor.predict(pose_photo("normal", 77))
    assert answer.assessed and answer.geometry is not None
    overlay = explain(Predictor.from_run(out, backend="torch"), pose_photo("normal", 77))
    assert overlay.shape == (64, 48, 3)
    assert predictor.predict(np.zeros((64, 48, 3), np.uint8)).label is None
    report = evaluate(EvalConfig(run=out, data=data, top_k=2, device="cpu"))
    assert report["coverage"] == 1.0 and report["n"] == 8 and (out / "eval" / "top_losses.png").is_file()
    Image.fromarray(pose_photo("normal", 78)).save(tmp_path / "me.png")
    label, shown, note = Handlers(predictor, AppConfig(), tmp_path).classify(str(tmp_path / "me.png"), explain=True)
    assert label["label"] in ("normal", "forward_head") and shown.shape == (64, 48, 3)
    assert "CNN" in note and "landmarks" in note  # Grad-CAM for the CNN part, the landmarks for the geometry


# --------------------------------------------------------------------------------------- the app


def test_the_app_draws_the_landmarks_explains_and_calibrates_per_visitor(pose_run, tmp_path) -> None:
    from PIL import Image

    from app.demo import CANNOT_ASSESS, AppConfig, Handlers
    from posture.inference.predict import Predictor

    _, out, _ = pose_run
    handlers = Handlers(Predictor.from_run(out), AppConfig(cam=False), tmp_path)
    assert handlers.can_calibrate
    slouched = tmp_path / "slouched.png"
    Image.fromarray(pose_photo("forward_head", 7)).save(slouched)
    label, shown, note = handlers.classify(str(slouched), explain=True)
    assert label["label"] == "forward_head" and shown.shape[:2] == (64, 48) and "landmarks" in note
    assert "upright, in training" in shown_text(note)  # the explanation, as the page shows it
    reference, _, message = handlers.calibrate(str(slouched))
    assert len(reference) == len(DEFAULT_FEATURES) and "Calibrated" in message
    mine, _, my_note = handlers.classify(str(slouched), explain=False, reference=reference)
    theirs, _, _ = handlers.classify(str(slouched), explain=False, reference=None)
    assert mine["label"] == "normal" and "Calibrated with your upright photo" in my_note
    assert theirs["label"] == "forward_head"  # another visitor, no calibration: untouched
    empty = tmp_path / "empty.png"
    Image.fromarray(np.zeros((64, 48, 3), np.uint8)).save(empty)
    label, _, note = handlers.classify(str(empty), explain=True)
    assert label == {"label": CANNOT_ASSESS, "confidences": []} and "Cannot assess" in note and "no person" in note
    rows, _, summary = handlers.classify_many([str(empty), str(slouched)])
    assert rows[0][1] == CANNOT_ASSESS and "no person" in rows[0][-1] and "1 could not be assessed" in summary


# ------------------------------------------------------------------------------ BlazePose, real photos


@needs_pose
@needs_real
@pytest.mark.slow
def test_real_pose_run_on_sessions_it_never_saw(tmp_path, one_torch_thread) -> None:
    """Trained on every source but one, tested on that one: the unseen capture session."""
    from posture.inference.predict import Predictor
    from posture.training.finetune import FinetuneConfig, run_finetune

    manifest = pd.read_csv(REAL_DATA / "manifest.csv")
    held_out = manifest["source"].value_counts().idxmax()  # the biggest session: a meaningful test
    split = np.where(manifest["source"] == held_out, "test", "train")
    pool = np.flatnonzero(split == "train")
    split[pool[::5]] = "val"
    data = real_fold(tmp_path / "fold", REAL_DATA, split)
    metrics = run_finetune(
        FinetuneConfig(
            data=str(data),
            out=str(tmp_path / "run"),
            workers=0,
            progress=False,
            cache_dir=str(tmp_path / "cache"),
            device="cpu",
        )
    )
    assert metrics["coverage"] > 0.9
    assert metrics["test"]["balanced_accuracy"] >= 0.8, metrics["test"]
    predictor = Predictor.from_run(tmp_path / "run")
    head_only = np.ascontiguousarray(np.asarray(_real_photo("normal", "posenet"))[:90])  # the face, no shoulders
    answer = predictor.predict(head_only)
    assert answer.label is None and "shoulders" in answer.reason


def _real_photo(label: str, stem: str) -> np.ndarray:
    from posture.io.images import load_rgb_array

    return load_rgb_array(next((REAL_DATA / label).glob(f"{stem}*.jpg")))


@needs_pose
def test_blazepose_finds_nobody_in_a_blank_picture() -> None:
    from posture.pose.detector import PoseDetector

    detector = PoseDetector()
    assert detector.detect(np.full((120, 160, 3), 128, np.uint8)) is None
    assert assess(None) == "no person found in the photo"
