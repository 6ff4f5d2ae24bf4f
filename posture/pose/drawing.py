"""Landmarks drawn on a photo: what a pose-based answer was read from.

Why draw them: a pose-based run decides from a handful of points (nose, eyes, ears, mouth,
shoulders); showing exactly those points, with the two lines most features are built on (nose down
to the shoulders' midpoint, shoulder up to ear), lets a person see at a glance whether BlazePose
found them where they are, and so whether to trust the answer. Used by the web demo and by the
top-losses gallery of ``posture.evaluate``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from posture.pose.geometry import HEAD_AND_SHOULDERS, LANDMARK_INDEX, MIN_VISIBILITY, better_side

#: Longest side of a drawn picture; a 50-megapixel photo need not travel back whole.
DISPLAY_SIDE = 1024
POINT_COLOUR = (0, 200, 255)
SHOULDER_COLOUR = (255, 170, 0)
HEIGHT_COLOUR = (255, 235, 59)
SIDE_COLOUR = (255, 255, 255)


@lru_cache(maxsize=8)
def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def text_label(
    draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, size: int, colour: tuple[int, int, int]
) -> None:
    """Text on a dark box, so it reads on any background (the app's overlays and the labeling tool's)."""
    face = font(size)
    left, top, right, bottom = draw.textbbox(xy, text, font=face)
    pad = max(2, size // 5)
    draw.rectangle((left - pad, top - pad, right + pad, bottom + pad), fill=(0, 0, 0))
    draw.text(xy, text, fill=colour, font=face)


def draw_landmarks(
    rgb: np.ndarray, landmarks: np.ndarray | None, caption: str | None = None, max_side: int = DISPLAY_SIDE
) -> np.ndarray:
    """A copy of the photo (at most ``max_side`` px) with the landmarks the decision used.

    Points are dots (shoulders orange); the yellow line runs from the nose to the shoulders'
    midpoint, the white one from shoulder to ear on the side nearer the camera. Landmarks
    BlazePose only guessed (low visibility) are left out. ``caption`` goes in the top-left corner.
    """
    canvas = Image.fromarray(np.ascontiguousarray(rgb)).convert("RGB")
    scale = min(1.0, max_side / max(canvas.size))
    if scale < 1.0:
        canvas = canvas.resize(
            (max(1, round(canvas.width * scale)), max(1, round(canvas.height * scale))), Image.Resampling.BILINEAR
        )
    draw = ImageDraw.Draw(canvas)
    w, h = canvas.size
    radius = max(3, round(min(w, h) / 100))
    width = max(2, radius // 2)
    if landmarks is not None and len(landmarks):
        lm = np.asarray(landmarks, dtype=np.float64)[:, :4].copy()
        lm[:, :2] *= scale
        _draw_body(draw, lm, radius, width)
    if caption:
        text_label(draw, (6, 6), caption, max(10, round(min(w, h) / 28)), HEIGHT_COLOUR)
    return np.asarray(canvas)


def _draw_body(draw: ImageDraw.ImageDraw, lm: np.ndarray, radius: int, width: int) -> None:
    idx = LANDMARK_INDEX

    def seen(name: str) -> bool:
        return bool(lm[idx[name], 3] >= MIN_VISIBILITY)

    def xy(name: str) -> tuple[float, float]:
        return float(lm[idx[name], 0]), float(lm[idx[name], 1])

    side = better_side(lm)
    if seen(f"{side}_ear") and seen(f"{side}_shoulder"):
        draw.line((*xy(f"{side}_shoulder"), *xy(f"{side}_ear")), fill=SIDE_COLOUR, width=max(1, width // 2))
    if seen("left_shoulder") and seen("right_shoulder"):
        draw.line((*xy("left_shoulder"), *xy("right_shoulder")), fill=SHOULDER_COLOUR, width=max(1, width // 2))
        if seen("nose"):
            (lx, ly), (rx, ry) = xy("left_shoulder"), xy("right_shoulder")
            mid = ((lx + rx) / 2, (ly + ry) / 2)
            draw.line((*xy("nose"), *mid), fill=HEIGHT_COLOUR, width=width)
            r = radius * 0.8
            draw.rectangle((mid[0] - r, mid[1] - r, mid[0] + r, mid[1] + r), fill=HEIGHT_COLOUR, outline=(0, 0, 0))
    for name in HEAD_AND_SHOULDERS:
        if seen(name):
            x, y = xy(name)
            colour = SHOULDER_COLOUR if name.endswith("shoulder") else POINT_COLOUR
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour, outline=(0, 0, 0), width=1)


__all__ = ["DISPLAY_SIDE", "draw_landmarks", "font", "text_label"]
