"""The "Calibrated (pose)" tab: compare a photo with the visitor's own upright photo.

Why a separate tab: the CNN runs judge a photo alone, and on photos from a camera set-up they never
saw they are close to chance. The calibrated pose model (:mod:`posture.posecal`) instead asks how
far the head has dropped (and the ear moved ahead of the shoulder) *since the upright photo of the
same session*, which is what posture apps mean by "sit up straight and press calibrate".

Why the reference lives in ``gr.State`` and not on the shared :class:`~posture.posecal.PoseCalibrator`:
one instance serves every visitor, so it is never given a reference. Each browser session's state
holds only its own reference (two numbers, not the photo), passed to
``PoseCalibrator.predict(image, reference=...)`` with every request, so one visitor can
neither see nor use another's calibration. The BlazePose detector inside is shared; it has a lock.

The functions here take decoded inputs and return plain values, so tests call them without a page;
:func:`build_pose_tab` only wires them to components inside the app's ``gr.Blocks``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

from app.demo import AppConfig, UploadError, label_value, read_upload
from app.label_overlay import _label
from posture.checkpoint import CONFIG_NAME
from posture.cli import UserError
from posture.geometry import posture_geometry
from posture.pose import HEAD_AND_SHOULDERS, MIN_VISIBILITY
from posture.predict import Prediction

if TYPE_CHECKING:
    from posture.posecal import PoseCalibrator

#: Longest side of the picture sent back to the page; a 50-megapixel photo need not travel back whole.
DISPLAY_SIDE = 1024
#: Head-height changes smaller than this (face heights) are reported as "about as high".
SAME_HEIGHT = 0.1

NO_PERSON = ("No person could be measured in {what}. Use a photo that shows the face and both shoulders "
             "(from the front or the side), well lit and not cut off.")
NOT_CALIBRATED = "Calibrate first: in step 1, add a photo of yourself sitting upright and press Calibrate."

POINT_COLOUR = (0, 200, 255)
SHOULDER_COLOUR = (255, 170, 0)
HEIGHT_COLOUR = (255, 235, 59)
SIDE_COLOUR = (255, 255, 255)


@dataclass(frozen=True)
class PoseReference:
    """One session's calibration: the upright photo's geometry (``posture.geometry`` features)."""

    head_height: float
    ear_shoulder_angle: float

    def as_array(self) -> np.ndarray:
        return np.array([self.head_height, self.ear_shoulder_angle], dtype=np.float64)


@dataclass(frozen=True)
class PoseAnswer:
    """What step 2 shows: the prediction, the photo with the landmarks used, and one sentence why."""

    prediction: Prediction
    annotated: np.ndarray
    explanation: str

    @property
    def label(self) -> dict[str, Any]:
        return label_value(self.prediction)

    @property
    def note(self) -> str:
        p = self.prediction
        return f"**{p.label}** with {p.confidence:.0%} confidence. {self.explanation}"


def load_pose_calibrator(run: str | os.PathLike[str]) -> PoseCalibrator:
    """The calibrated pose run named by ``--pose-run``; :class:`UserError` if it is not one."""
    from posture.posecal import PoseCalibrator

    if not (Path(run) / CONFIG_NAME).is_file():
        raise UserError(f"--pose-run {run}: not a run folder (no {CONFIG_NAME}); train one with "
                        "`python -m posture.posecal train --data DATA --out models/pose`")
    return PoseCalibrator.from_run(run)


def _measure(calibrator: PoseCalibrator, rgb: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks and geometry of the person in ``rgb``, or :class:`UploadError` naming ``what``."""
    landmarks = calibrator.detector.detect(rgb)
    geometry = posture_geometry(landmarks)
    if landmarks is None or geometry is None:
        raise UploadError(NO_PERSON.format(what=what))
    return landmarks, geometry


def calibrate_session(calibrator: PoseCalibrator, rgb: np.ndarray) -> tuple[PoseReference, np.ndarray, str]:
    """Step 1: the upright photo → the session's reference, the photo with its landmarks, a note."""
    landmarks, geometry = _measure(calibrator, rgb, "the upright photo")
    reference = PoseReference(float(geometry[0]), float(geometry[1]))
    note = (f"Calibrated: in your upright photo the nose sits {reference.head_height:.2f} face-heights above "
            f"the shoulders (ear-over-shoulder angle {reference.ear_shoulder_angle:.0f}°). "
            "Now check a photo from the same camera in step 2.")
    return reference, draw_landmarks(rgb, landmarks), note


def predict_session(calibrator: PoseCalibrator, rgb: np.ndarray, reference: PoseReference | None) -> PoseAnswer:
    """Step 2: a photo of the calibrated session → :class:`PoseAnswer`; clear errors otherwise."""
    if reference is None:
        raise UploadError(NOT_CALIBRATED)
    landmarks, geometry = _measure(calibrator, rgb, "this photo")
    prediction = calibrator.predict(rgb, reference=reference.as_array())  # the shared one keeps no reference
    if prediction is None:  # cannot happen after _measure succeeded, but never show a traceback
        raise UploadError(NO_PERSON.format(what="this photo"))
    return PoseAnswer(prediction, draw_landmarks(rgb, landmarks), explain_change(geometry, reference))


def explain_change(geometry: np.ndarray, reference: PoseReference) -> str:
    """One sentence on how this photo differs from the upright one, in the model's own features."""
    dh = float(geometry[0]) - reference.head_height
    da = float(geometry[1]) - reference.ear_shoulder_angle
    if abs(dh) < SAME_HEIGHT:
        height = "Head about as high over the shoulders as in your upright photo"
    else:
        height = f"Head {abs(dh):.1f} face-heights {'lower' if dh < 0 else 'higher'} than in your upright photo"
    angle = f"ear-over-shoulder angle {abs(da):.0f}° {'smaller' if da < 0 else 'larger'}" if abs(da) >= 1 \
        else "ear-over-shoulder angle unchanged"
    return f"{height}; {angle}."


def draw_landmarks(rgb: np.ndarray, landmarks: np.ndarray, max_side: int = DISPLAY_SIDE) -> np.ndarray:
    """A copy of the photo (at most ``max_side`` px) with the landmarks the decision used.

    Nose, eyes, ears, mouth corners and shoulders are dots; the yellow line runs from the nose down
    to the shoulders' midpoint (the head height), the white one from shoulder to ear on the side the
    camera sees better (the ear-over-shoulder angle). Hidden landmarks (BlazePose's guesses) are
    left out.
    """
    canvas = Image.fromarray(np.ascontiguousarray(rgb)).convert("RGB")
    scale = min(1.0, max_side / max(canvas.size))
    if scale < 1.0:
        canvas = canvas.resize((max(1, round(canvas.width * scale)), max(1, round(canvas.height * scale))),
                               Image.Resampling.BILINEAR)
    lm = np.asarray(landmarks, dtype=np.float64).copy()
    lm[:, :2] *= scale
    draw = ImageDraw.Draw(canvas)
    w, h = canvas.size
    radius = max(3, round(min(w, h) / 100))
    width = max(2, radius // 2)
    idx = HEAD_AND_SHOULDERS

    def seen(name: str) -> bool:
        return bool(lm[idx[name], 3] >= MIN_VISIBILITY)

    def xy(name: str) -> tuple[float, float]:
        return float(lm[idx[name], 0]), float(lm[idx[name], 1])

    left_score = lm[idx["left_ear"], 3] + lm[idx["left_shoulder"], 3]
    right_score = lm[idx["right_ear"], 3] + lm[idx["right_shoulder"], 3]
    side = "left" if left_score >= right_score else "right"
    if seen(f"{side}_ear") and seen(f"{side}_shoulder"):
        draw.line((*xy(f"{side}_shoulder"), *xy(f"{side}_ear")), fill=SIDE_COLOUR, width=max(1, width // 2))
    if seen("left_shoulder") and seen("right_shoulder"):
        draw.line((*xy("left_shoulder"), *xy("right_shoulder")), fill=SHOULDER_COLOUR, width=max(1, width // 2))
        mid = ((xy("left_shoulder")[0] + xy("right_shoulder")[0]) / 2, (xy("left_shoulder")[1] + xy("right_shoulder")[1]) / 2)
        if seen("nose"):
            draw.line((*xy("nose"), *mid), fill=HEIGHT_COLOUR, width=width)
            r = radius * 0.8
            draw.rectangle((mid[0] - r, mid[1] - r, mid[0] + r, mid[1] + r), fill=HEIGHT_COLOUR, outline=(0, 0, 0))
            text_size = max(10, round(min(w, h) / 35))
            geometry = posture_geometry(landmarks)
            text = "head height" if geometry is None else f"head height {geometry[0]:.2f}"
            _label(draw, (mid[0] + 2 * radius, (mid[1] + xy("nose")[1]) / 2), text, text_size, HEIGHT_COLOUR)
    for name in HEAD_AND_SHOULDERS:
        if not seen(name):
            continue
        x, y = xy(name)
        colour = SHOULDER_COLOUR if name.endswith("shoulder") else POINT_COLOUR
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour, outline=(0, 0, 0), width=1)
    return np.asarray(canvas)


class PoseTab:
    """The tab's two buttons without the page; ``forget`` releases each upload once it is read."""

    def __init__(self, calibrator: PoseCalibrator, config: AppConfig,
                 forget: Callable[[str], None] | None = None) -> None:
        self.calibrator = calibrator
        self.config = config
        self.forget = forget or (lambda path: None)

    def _read(self, source: str | bytes | None) -> contextlib.AbstractContextManager[np.ndarray]:
        return read_upload(source, self.config.max_pixels, self.forget)

    def calibrate(self, source: str | bytes | None) -> tuple[PoseReference, np.ndarray, str]:
        """Upload → (the session's new reference, annotated photo, note).

        On an error the page keeps the session's previous reference (Gradio leaves outputs alone)."""
        with self._read(source) as rgb:
            return calibrate_session(self.calibrator, rgb)

    def predict(self, source: str | bytes | None,
                state: PoseReference | None) -> tuple[dict[str, Any], np.ndarray, str]:
        """Upload + this session's reference → (label value, annotated photo, note)."""
        if state is None:  # say so before asking for (or decoding) a photo
            if isinstance(source, str):
                self.forget(source)
            raise UploadError(NOT_CALIBRATED)
        with self._read(source) as rgb:
            answer = predict_session(self.calibrator, rgb, state)
        return answer.label, answer.annotated, answer.note


def build_pose_tab(calibrator_or_run: PoseCalibrator | str | os.PathLike[str], config: AppConfig,
                   forget: Callable[[str], None] | None = None) -> PoseTab:
    """Add the "Calibrated (pose)" tab to the ``gr.Blocks`` being built; returns its handlers."""
    import gradio as gr

    from app.components import DecidedLabel, UploadedImage

    calibrator = (load_pose_calibrator(calibrator_or_run) if isinstance(calibrator_or_run, (str, Path))
                  else calibrator_or_run)
    tab = PoseTab(calibrator, config, forget)

    def calibrate(source: str | bytes | None) -> tuple[Any, Any, str]:
        try:
            return tab.calibrate(source)
        except UploadError as exc:
            raise gr.Error(str(exc), title="Cannot calibrate with this photo", print_exception=False) from None

    def predict(source: str | bytes | None, state: PoseReference | None) -> tuple[Any, Any, str]:
        try:
            return tab.predict(source, state)
        except UploadError as exc:
            raise gr.Error(str(exc), title="Cannot check this photo", print_exception=False) from None

    classes = list(calibrator.model.classes)
    with gr.Tab("Calibrated (pose)"):
        gr.Markdown(
            "Compares your photo with **your own upright photo** from the same camera: how high the nose sits "
            "over the shoulders (in face heights) and the ear-over-shoulder angle. Only those two numbers are "
            "kept, for this browser tab only; the photos are deleted after reading.")
        reference = gr.State(None)
        with gr.Row():
            with gr.Column():
                gr.Markdown("**Step 1.** Sit upright, face the camera as you will later, and calibrate.")
                upright = UploadedImage(sources=["upload", "webcam"], label="Upright photo", height=300,
                                        elem_id="pose-upright")
                calibrate_button = gr.Button("Calibrate", variant="secondary", elem_id="pose-calibrate")
                calibration_note = gr.Markdown("*Not calibrated yet.*", elem_id="pose-calibration-note")
                calibration_view = gr.Image(label="Landmarks in the upright photo", interactive=False,
                                            format="jpeg", height=300, elem_id="pose-upright-overlay")
            with gr.Column():
                gr.Markdown("**Step 2.** A photo to check, from the same camera.")
                image = UploadedImage(sources=["upload", "webcam"], label="Photo", height=300, elem_id="pose-photo")
                check = gr.Button("Check posture", variant="primary", elem_id="pose-check")
                label = DecidedLabel(num_top_classes=len(classes), label="Posture", elem_id="pose-label")
                overlay = gr.Image(label="Landmarks the decision used", interactive=False, format="jpeg",
                                   height=300, elem_id="pose-overlay")
                note = gr.Markdown(elem_id="pose-note")
        calibrate_button.click(calibrate, [upright], [reference, calibration_view, calibration_note],
                               api_name="pose_calibrate")
        check.click(predict, [image, reference], [label, overlay, note], api_name="pose_classify")
    return tab


__all__ = ["NOT_CALIBRATED", "NO_PERSON", "PoseAnswer", "PoseReference", "PoseTab", "build_pose_tab",
           "calibrate_session", "draw_landmarks", "explain_change", "load_pose_calibrator", "predict_session"]
