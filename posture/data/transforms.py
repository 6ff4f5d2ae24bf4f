"""Image pipelines (albumentations): one place for resizing, augmentation and normalisation.

Why letterboxing instead of torchvision's resize-then-centre-crop: a centre crop of a portrait
photo cuts off the head or the shoulders, and squashing to a square changes the very angle
(ear–C7 against the horizontal) the label depends on. So the whole image is scaled to fit and
padded with the normalisation mean (which normalises to zero).

Why the augmentation is gentle: a mirrored side view keeps its posture, but rotating the image
tilts the ear–C7 line against the horizontal and so *changes the label's evidence*; rotations
stay within a few degrees and there are no vertical flips or strong shears.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Ways to pick the region of the photo the model sees before resizing.
CROP_MODES = ("none", "pose")

_INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
}


@dataclass(frozen=True)
class Preprocessing:
    """What a model's weights expect; travels with the weights into every checkpoint."""

    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    resize_mode: str = "letterbox"
    extra: dict[str, Any] = field(default_factory=dict)
    #: ``"none"`` (the whole photo) or ``"pose"`` (head and shoulders, found by BlazePose; see
    #: :mod:`posture.pose.detector`). Part of the preprocessing, so every downstream user crops alike.
    crop: str = "none"
    crop_scale: float = 1.8

    def __post_init__(self) -> None:
        if self.crop not in CROP_MODES:
            raise ValueError(f"unknown crop {self.crop!r}; choose one of {', '.join(CROP_MODES)}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        if self.crop == "none":  # keep configs and feature-cache keys of uncropped runs as they were
            del d["crop"], d["crop_scale"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        known = {
            k: d[k] for k in ("input_size", "interpolation", "resize_mode", "extra", "crop", "crop_scale") if k in d
        }
        return cls(mean=tuple(d.get("mean", IMAGENET_MEAN)), std=tuple(d.get("std", IMAGENET_STD)), **known)

    @property
    def pad_fill(self) -> tuple[int, int, int]:
        """Pixel value that normalises to (about) zero: the mean colour."""
        return tuple(int(round(m * 255)) for m in self.mean)  # type: ignore[return-value]


def _resize_and_pad(pre: Preprocessing) -> list[A.BasicTransform]:
    interp = _INTERPOLATIONS.get(pre.interpolation, cv2.INTER_LINEAR)
    size = pre.input_size
    if pre.resize_mode == "stretch":
        return [A.Resize(size, size, interpolation=interp)]
    return [
        A.LongestMaxSize(max_size=size, interpolation=interp),
        A.PadIfNeeded(min_height=size, min_width=size, border_mode=cv2.BORDER_CONSTANT, fill=pre.pad_fill),
    ]


def _to_tensor(pre: Preprocessing) -> list[A.BasicTransform]:
    return [A.Normalize(mean=pre.mean, std=pre.std, max_pixel_value=255.0), ToTensorV2()]


def _crop(pre: Preprocessing, detector: Any = None) -> list[A.BasicTransform]:
    if pre.crop == "none":
        return []
    from posture.pose.detector import PoseCrop, load_blazepose

    load_blazepose()  # fail now, with the install hint, rather than inside a DataLoader worker
    return [PoseCrop(scale=pre.crop_scale, detector=detector)]


def build_eval_transform(pre: Preprocessing, *, crop: bool = True, detector: Any = None) -> A.Compose:
    """Deterministic: the only pipeline evaluation, prediction and the app use.

    ``crop=False`` leaves out the crop step (Grad-CAM maps its heat map back through the rest);
    ``detector`` shares one :class:`posture.pose.detector.PoseDetector` (and its cache) between pipelines.
    """
    return A.Compose((_crop(pre, detector) if crop else []) + _resize_and_pad(pre) + _to_tensor(pre))


def build_train_transform(
    pre: Preprocessing, strength: float = 1.0, *, detector: Any = None, crop: bool = True
) -> A.Compose:
    """Posture-preserving augmentation, then the same resize/pad/normalise as evaluation.

    ``strength`` scales the geometric and photometric ranges (0 gives the eval pipeline plus flips).
    The crop (if any) comes first, on the untouched photo, so every view crops the same region.
    """
    s = max(0.0, float(strength))
    geometric = [
        A.HorizontalFlip(p=0.5),
        A.Affine(
            scale=(1 - 0.12 * s, 1 + 0.12 * s),
            translate_percent=(-0.06 * s, 0.06 * s),
            rotate=(-3.0 * s, 3.0 * s),
            border_mode=cv2.BORDER_REFLECT_101,
            p=0.8 if s > 0 else 0.0,
        ),
    ]
    photometric = [
        A.ColorJitter(
            brightness=0.25 * s, contrast=0.25 * s, saturation=0.25 * s, hue=0.03 * s, p=0.8 if s > 0 else 0.0
        ),
        A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 5))], p=0.2 * min(s, 1.0)),
        A.ImageCompression(quality_range=(50, 95), p=0.3 * min(s, 1.0)),
        A.ToGray(p=0.05 * min(s, 1.0)),
    ]
    return A.Compose(
        (_crop(pre, detector) if crop else []) + geometric + photometric + _resize_and_pad(pre) + _to_tensor(pre)
    )


def apply(transform: A.Compose, image: np.ndarray) -> torch.Tensor:
    """Run a pipeline on one ``H×W×3 uint8`` RGB array, returning a ``3×S×S`` float tensor."""
    return transform(image=image)["image"]
