"""Head-and-shoulders crop (``--crop pose``): geometry, the BlazePose detector on real photos, and
a fine-tuned run that carries the crop into prediction and Grad-CAM."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from _finetune_helpers import small_config
from _pose_helpers import needs_pose
from _serving_helpers import REAL_DATA
from posture.cli import UserError
from posture.data.transforms import Preprocessing, build_eval_transform, build_train_transform
from posture.io.images import load_rgb_array
from posture.pose.detector import HEAD_AND_SHOULDERS, PoseCrop, PoseDetector, head_shoulder_box

needs_real = pytest.mark.real_data


def _landmarks(points: dict[str, tuple[float, float]], visibility: float = 0.99) -> np.ndarray:
    lm = np.zeros((33, 4), np.float32)
    for name, (x, y) in points.items():
        lm[HEAD_AND_SHOULDERS[name]] = (x, y, 0.0, visibility)
    return lm


def _real(label: str, stem: str) -> np.ndarray:
    path = next((REAL_DATA / label).glob(f"{stem}*.jpg"))
    return load_rgb_array(path)


# ------------------------------------------------------------------------------------- geometry


def test_box_is_a_square_around_head_and_shoulders_scaled_and_centred() -> None:
    lm = _landmarks(
        {
            "nose": (100, 60),
            "left_ear": (90, 55),
            "right_ear": (110, 55),
            "left_shoulder": (70, 100),
            "right_shoulder": (130, 100),
        }
    )
    x0, y0, x1, y1 = head_shoulder_box(lm, (400, 400, 3), scale=2.0)
    # extent 60 wide × 45 high → a 120-px square centred on (100, 77.5)
    assert (x0, y0, x1, y1) == (40, 17, 160, 137)


def test_box_is_clipped_to_the_photo_and_ignores_unseen_landmarks() -> None:
    lm = _landmarks(
        {
            "nose": (10, 10),
            "left_ear": (5, 8),
            "right_ear": (20, 8),
            "left_shoulder": (0, 60),
            "right_shoulder": (40, 60),
        }
    )
    lm[HEAD_AND_SHOULDERS["mouth_left"]] = (900, 900, 0, 0.05)  # a guess BlazePose marks as hidden
    x0, y0, x1, y1 = head_shoulder_box(lm, (80, 50, 3), scale=1.8)
    assert (x0, y0) == (0, 0) and x1 <= 50 and y1 <= 80
    assert x1 - x0 >= 40 and y1 - y0 >= 60


def test_no_box_without_landmarks_too_few_visible_or_a_tiny_box() -> None:
    assert head_shoulder_box(None, (100, 100, 3)) is None
    two = _landmarks({"nose": (50, 50), "left_ear": (40, 45)})
    assert head_shoulder_box(two, (100, 100, 3)) is None
    tiny = _landmarks({"nose": (50, 50), "left_ear": (51, 50), "right_ear": (49, 50), "left_shoulder": (50, 52)})
    assert head_shoulder_box(tiny, (100, 100, 3)) is None


def test_crop_is_part_of_the_preprocessing_and_uncropped_configs_stay_as_they_were() -> None:
    plain = Preprocessing()
    assert "crop" not in plain.to_dict()  # old run configs and feature-cache keys are unchanged
    cropped = Preprocessing(crop="pose", crop_scale=2.0)
    back = Preprocessing.from_dict(json.loads(json.dumps(cropped.to_dict())))
    assert back == cropped
    with pytest.raises(ValueError, match="unknown crop"):
        Preprocessing(crop="face")


def test_missing_mediapipe_is_a_user_error_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "mediapipe" or m.startswith("mediapipe.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # import mediapipe -> ImportError
    with pytest.raises(UserError, match="requirements-pose.txt"):
        build_eval_transform(Preprocessing(crop="pose"))
    from posture.training.finetune import FinetuneConfig, check_runnable

    with pytest.raises(UserError, match="requirements-pose.txt"):
        check_runnable(FinetuneConfig(data="d", out="o", model="resnet18", crop="pose"))


# ------------------------------------------------------------------------------------- detector


@needs_pose
@needs_real
@pytest.mark.parametrize(
    "label, stem, crops",
    [("forward_head", "neckpose", True), ("normal", "posenet", False), ("forward_head", "postural", True)],
)
def test_blazepose_finds_ears_above_shoulders_on_real_photos(label: str, stem: str, crops: bool) -> None:
    """Frontal phone video, frontal webcam and side views: the three framings of the real set.
    The webcam's head and shoulders fill its frame, so there the crop is (nearly) the whole photo."""
    image = _real(label, stem)
    lm = PoseDetector().detect(image)
    assert lm is not None and lm.shape == (33, 7)  # image x, y, z, visibility + world x, y, z (metres)
    ears_y = lm[[HEAD_AND_SHOULDERS["left_ear"], HEAD_AND_SHOULDERS["right_ear"]], 1].mean()
    shoulders_y = lm[[HEAD_AND_SHOULDERS["left_shoulder"], HEAD_AND_SHOULDERS["right_shoulder"]], 1].mean()
    assert ears_y < shoulders_y
    x0, y0, x1, y1 = head_shoulder_box(lm, image.shape)
    h, w = image.shape[:2]
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    assert ((x1 - x0) * (y1 - y0) < 0.8 * w * h) == crops


@needs_pose
def test_no_person_means_the_whole_photo_and_a_counted_miss() -> None:
    blank = np.full((120, 160, 3), 128, np.uint8)
    crop = PoseCrop()
    assert crop.box(blank) == (0, 0, 160, 120)
    assert crop.detector.misses == 1
    out = build_eval_transform(Preprocessing(input_size=64, crop="pose"))(image=blank)["image"]
    assert tuple(out.shape) == (3, 64, 64)


@needs_pose
@needs_real
def test_detector_caches_by_pixels_and_pickles_without_its_graph() -> None:
    image = _real("normal", "posenet")
    det = PoseDetector()
    first = det.detect(image)
    calls = []
    real_graph = det._graph
    det._graph = type("Spy", (), {"process": lambda self, x: calls.append(1) or real_graph.process(x)})()
    again = det.detect(image.copy())
    assert calls == [] and np.array_equal(first, again)  # same pixels: answered from the cache
    clone = pickle.loads(pickle.dumps(det))  # DataLoader workers under spawn get a copy like this
    assert clone._graph is None and clone.misses == det.misses
    assert np.allclose(clone.detect(image), first)
    det._graph = real_graph
    det.close()


@needs_pose
@needs_real
def test_a_video_detector_tracks_a_stream_caches_nothing_and_looks_for_faces_now_and_then() -> None:
    image = _real("normal", "posenet")
    still = PoseDetector().detect(image)
    det = PoseDetector(video=True, faces_every=3)
    frames = [det.detect(image) for _ in range(4)]
    assert all(f is not None for f in frames) and det._cache == {}
    assert np.abs(frames[0][:, :2] - still[:, :2]).max() < 0.1 * image.shape[1]  # the same person, tracked
    calls = []
    real = det.faces(image)  # the face model is built and run on the first frame...
    spy = type("Spy", (), {"process": lambda self, x: calls.append(1) or det_faces.process(x)})
    det_faces = det._faces
    det._faces = spy()
    answers = [det.faces(image) for _ in range(6)]
    assert len(calls) == 2  # ...then on every third frame only; the rest reuse its last answer
    assert all(np.array_equal(a, real) for a in answers)
    det._faces = det_faces
    det.close()


@needs_pose
@needs_real
def test_landmark_workers_start_fresh_once_this_process_has_run_blazepose() -> None:
    """A notebook predicts, then trains: forked after a BlazePose graph ran here, workers aborted."""
    from posture.pose.detector import worker_start_method
    from posture.pose.landmarks import detect_landmarks

    det = PoseDetector()
    det.detect(_real("normal", "posenet"))
    det.close()  # even a closed graph leaves what a forked child cannot use
    assert worker_start_method() in ("forkserver", "spawn")
    rows = pd.read_csv(REAL_DATA / "manifest.csv").head(4)
    paths, shas = [REAL_DATA / p for p in rows["path"]], list(rows["sha256"])
    pooled = detect_landmarks(paths, shas, None, workers=2, progress=False)
    here = detect_landmarks(paths, shas, None, workers=0, progress=False)
    assert not pooled.failed and pooled.computed == len(paths)
    for a, b in zip(pooled.landmarks, here.landmarks, strict=True):
        assert (a is None and b is None) or np.allclose(a, b)


@needs_pose
@needs_real
def test_every_augmented_view_crops_the_same_region_as_evaluation() -> None:
    image = _real("forward_head", "neckpose")
    pre = Preprocessing(input_size=96, crop="pose")
    det = PoseDetector()
    box = PoseCrop(detector=det).box(image)
    train = build_train_transform(pre, strength=0.0, detector=det)
    mask = np.full(image.shape[:2], 2, np.uint8)  # 2 outside the crop, 1 inside (0 will be padding)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = 1
    for seed in range(3):
        train.set_random_seed(seed)
        out = train(image=image, mask=mask)
        assert out["image"].shape == (3, 96, 96)
        seen = set(np.unique(np.asarray(out["mask"])).tolist())
        assert 1 in seen and 2 not in seen  # only the cropped region reaches the model


# ------------------------------------------------------------------------------------- a run


@pytest.fixture
def real_mini_dataset(tmp_path):
    """12 real photos (4 per split, both classes) in an ingested-like folder."""
    manifest = pd.read_csv(REAL_DATA / "manifest.csv")
    picks = []
    for split, offset in (("train", 0), ("val", 1), ("test", 2)):
        for label in ("forward_head", "normal"):
            rows = manifest[manifest["label"] == label].iloc[offset::7].head(2)
            picks += [dict(r, split=split) for r in rows.to_dict("records")]
    root = tmp_path / "ds"
    rows = []
    for r in picks:
        dest = root / "images" / r["path"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REAL_DATA / r["path"], dest)
        rows.append(
            {
                "path": f"images/{r['path']}",
                "label": r["label"],
                "split": r["split"],
                "subject": r["subject"],
                "sha256": hashlib.sha256(dest.read_bytes()).hexdigest(),
                "source": r["source"],
            }
        )
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    (root / "classes.json").write_text(json.dumps(["forward_head", "normal"]))
    return root


@needs_pose
@needs_real
def test_a_cropped_run_crops_in_prediction_and_grad_cam(real_mini_dataset, tmp_path, one_torch_thread) -> None:
    from posture.inference.cam import heatmap
    from posture.inference.predict import Predictor
    from posture.training.finetune import run_finetune

    out = tmp_path / "run"
    metrics = run_finetune(
        small_config(real_mini_dataset, out, tmp_path / "cache", crop="pose", epochs=3, image_size=64)
    )
    assert np.asarray(metrics["test"]["confusion_matrix"]).sum() == 4
    config = json.loads((out / "config.json").read_text())
    assert config["preprocessing"]["crop"] == "pose"
    assert config["training"]["crop"] == "pose"

    predictor = Predictor.from_run(out, backend="torch")
    photo = load_rgb_array(real_mini_dataset / pd.read_csv(real_mini_dataset / "manifest.csv")["path"].iloc[0])
    x0, y0, x1, y1 = predictor.crop_box(photo)
    assert (x1 - x0) * (y1 - y0) < photo.shape[0] * photo.shape[1]
    # what the predictor feeds the model is exactly the crop, letterboxed
    expected = build_eval_transform(Preprocessing.from_dict({**config["preprocessing"], "crop": "none"}))(
        image=np.ascontiguousarray(photo[y0:y1, x0:x1])
    )["image"].numpy()
    assert np.allclose(predictor.preprocess(photo), expected, atol=1e-6)

    cam = heatmap(predictor, photo)
    assert cam.shape == photo.shape[:2]
    outside = np.ones(photo.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert outside.any() and cam[outside].max() == 0.0
    assert torch.isfinite(torch.from_numpy(cam)).all()
