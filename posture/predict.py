"""One Predictor for every consumer: evaluation, the CLI, the web app and the benchmarks.

Why one class: train/serve skew comes from two preprocessing paths drifting apart. Everything that
turns a photo into probabilities goes through :meth:`Predictor.predict_proba`, which uses the
run's own preprocessing (``config.json``), its fitted temperature and its decision threshold.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from posture.checkpoint import load_checkpoint
from posture.images import load_rgb_array
from posture.transforms import Preprocessing, build_eval_transform

log = logging.getLogger(__name__)

ImageInput = np.ndarray | Image.Image | str | os.PathLike[str] | bytes


@dataclass(frozen=True)
class Prediction:
    """The answer for one image: the decided label, its confidence and every class's probability."""

    label: str
    confidence: float
    probabilities: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "confidence": self.confidence, "probabilities": self.probabilities}


class Backend(Protocol):
    """Turns a normalised ``N×3×S×S`` float32 batch into ``N×C`` logits."""

    name: str

    def logits(self, batch: np.ndarray) -> np.ndarray: ...


class TorchBackend:
    """Eager PyTorch in inference mode; channels-last on CPU, where it speeds up convolutions."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.channels_last = self.device.type == "cpu"
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return self.model(x).float().cpu().numpy()


def to_rgb_array(image: ImageInput) -> np.ndarray:
    """Accept what callers naturally have (array, PIL image, path, bytes) as ``H×W×3 uint8`` RGB."""
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise ValueError(f"expected an H×W×3 RGB array, got shape {image.shape}")
        if image.shape[2] == 4:
            image = image[..., :3]
        return np.ascontiguousarray(image.astype(np.uint8, copy=False))
    if isinstance(image, Image.Image):
        from posture.images import to_rgb8

        return np.asarray(to_rgb8(image))
    return load_rgb_array(image)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits.astype(np.float64) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class Predictor:
    """A trained run, ready to answer: preprocessing, backend, temperature and threshold in one place."""

    def __init__(self, config: dict[str, Any], backend: Backend, model: torch.nn.Module | None = None,
                 run_dir: Path | None = None) -> None:
        self.config = config
        self.backend = backend
        self.model = model  # kept for Grad-CAM even when the ONNX backend answers
        self.run_dir = run_dir
        self.class_names: list[str] = list(config["classes"])
        self.preprocessing = Preprocessing.from_dict(config["preprocessing"])
        self._transform = build_eval_transform(self.preprocessing)
        calibration = config.get("calibration") or {}
        self.temperature = float(calibration.get("temperature", 1.0))
        self.threshold: float | None = calibration.get("threshold")
        self.positive_class: str = calibration.get("positive_class", self.class_names[0])

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike[str], backend: str = "torch",
                 device: str | torch.device = "cpu") -> Predictor:
        """Load ``models/RUN``; ``backend`` is ``torch`` (or ``auto``/``onnx`` where supported)."""
        from posture.models import model_from_config

        ckpt = load_checkpoint(run_dir)
        model = model_from_config(ckpt.config)
        model.load_state_dict(ckpt.state_dict)
        model.eval()
        return cls(ckpt.config, TorchBackend(model, device), model=model, run_dir=Path(run_dir))

    def preprocess(self, image: ImageInput) -> np.ndarray:
        """The one eval pipeline: letterbox to the model's size, normalise; ``3×S×S`` float32."""
        return self._transform(image=to_rgb_array(image))["image"].numpy()

    def logits(self, images: Sequence[ImageInput], batch_size: int = 32) -> np.ndarray:
        out = []
        for start in range(0, len(images), batch_size):
            batch = np.stack([self.preprocess(im) for im in images[start:start + batch_size]]).astype(np.float32)
            out.append(self.backend.logits(batch))
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)

    def predict_proba(self, images: Sequence[ImageInput], batch_size: int = 32, calibrated: bool = True) -> np.ndarray:
        """``N×C`` probabilities in class order, with the run's temperature unless ``calibrated=False``."""
        return softmax(self.logits(images, batch_size), self.temperature if calibrated else 1.0)

    def decide(self, probabilities: np.ndarray) -> tuple[str, float]:
        """Apply the stored decision threshold (binary runs) or argmax; returns (label, confidence)."""
        if self.threshold is not None and len(self.class_names) == 2:
            pos = self.class_names.index(self.positive_class)
            idx = pos if probabilities[pos] >= float(self.threshold) else 1 - pos
        else:
            idx = int(np.argmax(probabilities))
        return self.class_names[idx], float(probabilities[idx])

    def predict(self, image: ImageInput) -> Prediction:
        return self.predict_many([image])[0]

    def predict_many(self, images: Sequence[ImageInput], batch_size: int = 32) -> list[Prediction]:
        probs = self.predict_proba(images, batch_size)
        results = []
        for row in probs:
            label, confidence = self.decide(row)
            results.append(Prediction(label, confidence, {c: float(p) for c, p in zip(self.class_names, row)}))
        return results
