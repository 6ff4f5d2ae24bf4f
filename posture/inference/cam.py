"""Grad-CAM overlays: *where* in the photo the model looked for its answer.

Why it matters here: a posture classifier can be right for the wrong reason (the background,
the chair, the camera angle of one data source). A heat map over the neck and head is the quick
sanity check a reviewer (and the web app's user) asks for.

The heat map is computed by the ``grad-cam`` package on the model's last conv-ish layer
(``PostureClassifier.cam_target_layer()``), on exactly the tensor the Predictor feeds the model
(:meth:`posture.inference.predict.Predictor.preprocess`), then mapped back from the letterboxed square onto
the original photo: the padding is cut away and the remainder stretched to the photo's own size
(or, for a run that crops to head and shoulders, to that crop's place in the photo), so the
overlay lines up pixel for pixel with what the user uploaded.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from posture.data.transforms import build_eval_transform
from posture.inference.predict import ImageInput, softmax, to_rgb_array

if TYPE_CHECKING:
    from posture.inference.predict import Predictor

# Grad-CAM registers hooks on a layer of the *shared* model and backpropagates through it; two
# threads of the web app doing that at once would mix each other's activations. One lock per
# process keeps the overlays correct; explaining is rare and fast enough to serialise.
_CAM_LOCK = threading.Lock()


def content_box(predictor: Predictor, image: np.ndarray) -> tuple[int, int, int, int]:
    """Where the photo (already cropped, if the run crops) sits inside the model's input square:
    ``(top, left, height, width)``.

    Found by sending an all-ones mask through the run's own eval pipeline (albumentations carries
    masks through resize and padding, filling the padding with 0), so the box agrees with the
    preprocessing by construction, rounding included, and also for ``resize_mode="stretch"``.
    """
    transform = build_eval_transform(predictor.preprocessing, crop=False)
    mask = transform(image=image, mask=np.ones(image.shape[:2], np.uint8))["mask"]
    mask = mask.numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0 or cols.size == 0:  # degenerate (a 0-pixel photo cannot reach here; be safe)
        return 0, 0, mask.shape[0], mask.shape[1]
    return int(rows[0]), int(cols[0]), int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


class _WithGeometry(torch.nn.Module):
    """A fusion model with one photo's geometry held fixed, so Grad-CAM sees ``images -> logits``."""

    def __init__(self, model: torch.nn.Module, geometry: torch.Tensor) -> None:
        super().__init__()
        self.model, self.geometry = model, geometry

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, self.geometry.expand(x.shape[0], -1))


def heatmap(predictor: Predictor, image: ImageInput, class_index: int | None = None) -> np.ndarray:
    """Grad-CAM for ``class_index`` (default: the class the predictor decides), as an ``H×W``
    float32 map in [0, 1] at the photo's own size. Only for runs that read pixels; in a fusion the
    photo's geometry is held fixed, so the map shows what the CNN part looked at."""
    model = predictor.model
    if model is None:
        raise ValueError("this predictor has no torch model; Grad-CAM needs one")
    if not predictor.uses_image:
        raise ValueError("this run reads posture geometry only; there is no image layer to explain")
    analysis = predictor.analyse(image)
    if analysis.reason is not None:
        raise ValueError(f"cannot assess this photo: {analysis.reason}")
    rgb = analysis.rgb
    if class_index is None:
        probs = softmax(predictor.logits_of([analysis]), predictor.temperature)[0]
        label, _ = predictor.decide(probs)
        class_index = predictor.class_names.index(label)
    if not 0 <= class_index < len(predictor.class_names):
        raise ValueError(f"class_index {class_index} out of range for {len(predictor.class_names)} classes")
    device = next(model.parameters()).device
    x = torch.from_numpy(predictor.preprocess(analysis)).unsqueeze(0).to(device)
    target_model: torch.nn.Module = model
    if predictor.uses_pose:
        assert analysis.geometry is not None
        geometry = torch.tensor(predictor.geometry_input(analysis.geometry), dtype=torch.float32, device=device)
        target_model = _WithGeometry(model, geometry.unsqueeze(0))
    # A frozen backbone has no parameter that wants a gradient, so nothing would flow back to
    # the target layer; asking for the input's gradient keeps the whole graph differentiable.
    x.requires_grad_(True)
    with _CAM_LOCK, torch.enable_grad():
        was_training = model.training
        try:
            with GradCAM(model=target_model, target_layers=[model.cam_target_layer()]) as cam:
                grayscale = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(class_index))])[0]
        finally:
            model.zero_grad(set_to_none=True)  # do not leave gradient buffers on a serving model
            model.train(was_training)
    # Back through the pipeline: input square -> the (cropped) region -> its place in the photo.
    # Outside a head-and-shoulders crop the model saw nothing, so the map is 0 there.
    x0, y0, x1, y1 = predictor.crop_box(analysis)
    region = np.ascontiguousarray(rgb[y0:y1, x0:x1])
    top, left, h, w = content_box(predictor, region)
    seen = np.ascontiguousarray(grayscale[top : top + h, left : left + w], dtype=np.float32)
    out = np.zeros(rgb.shape[:2], np.float32)
    out[y0:y1, x0:x1] = cv2.resize(seen, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    return np.clip(out, 0.0, 1.0)


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a [0, 1] heat map (JET colours) onto an RGB uint8 photo; ``alpha`` is the map's weight."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return show_cam_on_image(image.astype(np.float32) / 255.0, cam, use_rgb=True, image_weight=1.0 - alpha)


def explain(predictor: Predictor, image: ImageInput, class_index: int | None = None, alpha: float = 0.45) -> np.ndarray:
    """The Grad-CAM overlay for one image: ``H×W×3 uint8`` at the input image's own size.

    ``class_index`` picks the class to explain (default: the predictor's decision, threshold
    included); ``alpha`` is how strongly the heat map covers the photo.
    """
    rgb = to_rgb_array(image)
    return overlay(rgb, heatmap(predictor, rgb, class_index), alpha)


__all__ = ["explain", "heatmap", "overlay", "content_box"]
