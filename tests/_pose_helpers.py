"""A stand-in for BlazePose, so the pose pipeline's mechanics are tested without MediaPipe.

``FakeDetector`` "finds" a frontal person in any photo that is not almost black, and places the
nose by the photo's brightness: bright photos sit upright (head high above the shoulders), dark
ones have the head dropped. So a pose run can learn the two classes of :func:`make_pose_dataset`,
and an all-black photo is a photo with nobody in it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from posture.pose.detector import pose_available
from posture.pose.geometry import LANDMARK_INDEX as I

#: Tests that run the real BlazePose (MediaPipe) are skipped where it is not installed.
needs_pose = pytest.mark.skipif(
    not pose_available(), reason="MediaPipe is not installed (pip install --no-deps -r requirements-pose.txt)"
)

CLASSES = ["forward_head", "normal"]


def frontal_landmarks(w: int, h: int, drop: float) -> np.ndarray:
    """``33×7`` landmarks of a person facing the camera; ``drop`` in [0, 1] lowers the head."""
    lm = np.zeros((33, 7), np.float32)
    lm[:, 3] = 0.99
    cx, sy = w / 2, h * 0.8
    face = h * 0.12
    head_y = sy - face * (2.6 - 1.6 * drop)
    points = {
        "nose": (cx, head_y),
        "left_eye": (cx + face * 0.3, head_y - face * 0.45),
        "right_eye": (cx - face * 0.3, head_y - face * 0.45),
        "left_ear": (cx + face * 0.7, head_y - face * 0.3),
        "right_ear": (cx - face * 0.7, head_y - face * 0.3),
        "mouth_left": (cx + face * 0.2, head_y + face * 0.55),
        "mouth_right": (cx - face * 0.2, head_y + face * 0.55),
        "left_shoulder": (cx + face * 2, sy),
        "right_shoulder": (cx - face * 2, sy),
        "left_hip": (cx + face * 1.5, h * 1.4),
        "right_hip": (cx - face * 1.5, h * 1.4),
    }
    for name, (x, y) in points.items():
        lm[I[name], :2] = (x, y)
        # world: metres, hips at the origin, y down; the head comes forward (-z) as it drops
        lm[I[name], 4:7] = (
            (x - cx) / (face * 5),
            (y - h * 1.4) / (face * 5),
            -0.1 * drop if name in ("nose", "left_eye", "right_eye", "mouth_left", "mouth_right") else 0.0,
        )
    return lm


class FakeDetector:
    """Duck-types :class:`posture.pose.detector.PoseDetector`
    (``detect``, ``faces``, ``version``, ``misses``, ``close``)."""

    version = "fake-detector-1"

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.misses = 0
        self.calls = 0

    def detect(self, image: np.ndarray) -> np.ndarray | None:
        self.calls += 1
        mean = float(np.asarray(image).mean())
        if mean < 8:
            self.misses += 1
            return None
        h, w = image.shape[:2]
        return frontal_landmarks(w, h, drop=1.0 - min(1.0, mean / 200.0))

    def faces(self, image: np.ndarray) -> np.ndarray:
        """No faces: the stand-in's photos show one person, or nobody."""
        return np.zeros((0, 5), np.float32)

    def close(self) -> None:
        pass


def pose_photo(label: str, seed: int, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    """Bright (upright, ``normal``) or dim (head dropped, ``forward_head``) noisy pictures."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(150, 200) if label == "normal" else rng.uniform(30, 80)
    return np.clip(rng.normal(level, 10, size=(*size, 3)), 0, 255).astype(np.uint8)


def make_pose_dataset(root: Path, per_class: dict[str, int] | None = None, sources: int = 2) -> Path:
    """An ingested-like dataset whose classes :class:`FakeDetector` tells apart, in ``sources`` sessions."""
    per_class = per_class or {"train": 10, "val": 4, "test": 4}
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows, seed = [], 0
    for split, n in per_class.items():
        for label in CLASSES:
            for i in range(n):
                seed += 1
                name = f"images/{split}_{label}_{i:03d}.png"
                Image.fromarray(pose_photo(label, seed)).save(root / name)
                rows.append(
                    {
                        "path": name,
                        "label": label,
                        "split": split,
                        "subject": f"p{i % 3}-{split}",
                        "sha256": hashlib.sha256((root / name).read_bytes()).hexdigest(),
                        "width": 48,
                        "height": 64,
                        "source_path": name,
                        "source": f"session{i % sources}",
                    }
                )
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    (root / "classes.json").write_text(json.dumps(CLASSES))
    return root


@contextmanager
def fake_pose_run(tmp: Path, detector: type[FakeDetector] = FakeDetector) -> Iterator[Path]:
    """A pose run trained in ``tmp`` on :func:`make_pose_dataset` with a stand-in BlazePose (``detector``),
    which stays in place (every ``posture.pose.detector.PoseDetector`` is one) until the block ends: for a
    module-scoped fixture, where the function-scoped ``fake_blazepose`` cannot serve."""
    import posture.pose.detector as pose
    from posture.training.finetune import FinetuneConfig, run_finetune

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pose, "PoseDetector", detector)
        mp.setattr(pose, "load_blazepose", lambda: None)
        mp.setattr(pose, "pose_available", lambda: True)
        data = make_pose_dataset(tmp / "data")
        out = tmp / "run"
        config = FinetuneConfig(
            data=str(data), out=str(out), workers=0, progress=False, device="cpu", cache_dir=str(tmp / "c")
        )
        run_finetune(config)
        yield out


def real_fold(root: Path, real: Path, split: np.ndarray) -> Path:
    """A dataset folder over the real photos (linked, never copied) with the given split per row."""
    frame = pd.read_csv(real / "manifest.csv").assign(split=split)
    root.mkdir(parents=True)
    for label in frame["label"].unique():
        (root / label).symlink_to((real / label).resolve(), target_is_directory=True)
    frame.to_csv(root / "manifest.csv", index=False)
    (root / "classes.json").write_text(json.dumps(CLASSES))
    return root
