"""Fixtures shared by the labeling-tool tests: small photo folders, a fake and a tiny real model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image


def make_photos(root: Path, names: list[str], size: tuple[int, int] = (120, 90), seed: int = 0) -> Path:
    """Write small noisy RGB JPEG/PNGs (distinct, so ingest's duplicate check keeps them all)."""
    rng = np.random.default_rng(seed)
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
    return root


def write_exif_rotated_jpeg(path: Path, stored_size: tuple[int, int] = (200, 100), orientation: int = 6) -> None:
    """A JPEG stored landscape with an EXIF tag that says "rotate to portrait" (how phones save)."""
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(stored_size[1], stored_size[0], 3), dtype=np.uint8)
    img = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, exif=exif.tobytes())


@dataclass
class FakePrediction:
    label: str
    confidence: float
    probabilities: dict[str, float]


@dataclass
class FakePredictor:
    """Duck-typed :class:`posture.inference.predict.Predictor`: fixed forward-head probabilities per file name."""

    p_forward: dict[str, float]
    positive_class: str = "forward_head"
    threshold: float | None = 0.5
    class_names: list[str] = field(default_factory=lambda: ["forward_head", "normal"])
    calls: int = 0

    def _one(self, image: object) -> FakePrediction:
        p = self.p_forward[Path(str(image)).name]
        label = "forward_head" if p >= (self.threshold or 0.5) else "normal"
        return FakePrediction(label, max(p, 1 - p), {"forward_head": p, "normal": 1 - p})

    def predict(self, image: object) -> FakePrediction:
        self.calls += 1
        return self._one(image)

    def predict_many(self, images: list[object]) -> list[FakePrediction]:
        self.calls += 1
        return [self._one(im) for im in images]


def make_tiny_run(run_dir: Path, input_size: int = 64) -> Path:
    """A real (untrained, random-init) run small enough for unit tests: mobilenet_v3_small at 64 px."""
    import torch

    from posture.data.transforms import Preprocessing
    from posture.models import build_model
    from posture.runs.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = build_model("mobilenet_v3_small", 2, pretrained=False)
    save_checkpoint(
        run_dir,
        model.state_dict(),
        {
            "architecture": "mobilenet_v3_small",
            "classes": ["forward_head", "normal"],
            "preprocessing": Preprocessing(input_size=input_size).to_dict(),
            "head": {"hidden": 0, "dropout": 0.0},
        },
    )
    return run_dir
