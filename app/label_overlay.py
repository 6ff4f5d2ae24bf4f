"""Draw the labeler's clicks on the photo: ear and C7 marks, the line between them, the angle.

Why draw on the server instead of in the browser: the picture the labeler checks is then exactly
the geometry that goes into the CSV (same points, same angle function), and the page needs no
custom JavaScript component.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from posture.data.cva import craniovertebral_angle
from posture.pose.drawing import font, text_label

EAR_COLOUR = (255, 170, 0)
C7_COLOUR = (0, 200, 255)
LINE_COLOUR = (255, 235, 59)
HORIZONTAL_COLOUR = (255, 255, 255)


def draw_points(
    image: np.ndarray,
    points: Sequence[tuple[float, float]],
    threshold_deg: float | None = None,
    label: str | None = None,
) -> np.ndarray:
    """Return a copy of ``image`` (H×W×3 uint8, display pixels) with the clicked points drawn.

    ``points`` are in the same display pixels: the first is the ear's tragus, the second C7. With
    both, the C7→ear line, the horizontal through C7 (towards the face) and the angle between them
    are drawn, plus the angle and resulting ``label`` as text.
    """
    canvas = Image.fromarray(np.ascontiguousarray(image)).convert("RGB")
    if not points:
        return np.asarray(canvas)
    draw = ImageDraw.Draw(canvas)
    w, h = canvas.size
    radius = max(4, round(min(w, h) / 90))
    width = max(2, radius // 2)
    text_size = max(12, round(min(w, h) / 30))
    names = ("ear", "C7")
    colours = (EAR_COLOUR, C7_COLOUR)
    if len(points) >= 2:
        (ex, ey), (cx, cy) = points[0], points[1]
        length = math.hypot(ex - cx, ey - cy)
        side = 1.0 if ex >= cx else -1.0  # the horizontal points the way the face looks
        draw.line((cx, cy, cx + side * max(length, 3 * radius), cy), fill=HORIZONTAL_COLOUR, width=max(1, width // 2))
        draw.line((cx, cy, ex, ey), fill=LINE_COLOUR, width=width)
        try:
            cva = craniovertebral_angle(ex, ey, cx, cy)
        except ValueError:
            cva = None
        if cva is not None:
            arc_r = max(3 * radius, min(length * 0.35, 8 * radius))
            # PIL angles run clockwise from 3 o'clock (y down); the ear direction is -cva (facing
            # right) or 180+cva (facing left).
            a0, a1 = (-cva, 0.0) if side > 0 else (180.0, 180.0 + cva)
            draw.arc(
                (cx - arc_r, cy - arc_r, cx + arc_r, cy + arc_r),
                min(a0, a1),
                max(a0, a1),
                fill=LINE_COLOUR,
                width=max(1, width // 2),
            )
            text = f"CVA {cva:.1f}°"
            if label:
                text += f"  {label.replace('_', ' ')}"
            if threshold_deg is not None:
                text += f"  (threshold {threshold_deg:g}°)"
            tx = cx + side * (arc_r + radius)
            bbox = draw.textbbox((0, 0), text, font=font(text_size))
            if side < 0:
                tx -= bbox[2] - bbox[0]
            tx = min(max(2, tx), max(2, w - (bbox[2] - bbox[0]) - 4))
            ty = min(max(2, cy + radius), max(2, h - (bbox[3] - bbox[1]) - 6))
            text_label(draw, (tx, ty), text, text_size, LINE_COLOUR)
    name_size = max(10, text_size * 3 // 4)
    for (x, y), name, colour in zip(points[:2], names, colours, strict=False):
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour, outline=(0, 0, 0), width=1)
        left, top, right, bottom = draw.textbbox((0, 0), name, font=font(name_size))
        nx = x + radius + 2 if x + radius + 2 + (right - left) + 4 < w else x - radius - 2 - (right - left) - 4
        ny = max(2, y - radius - name_size)
        text_label(draw, (nx, ny), name, name_size, colour)
    return np.asarray(canvas)


def placeholder(text: str, size: tuple[int, int] = (640, 400)) -> np.ndarray:
    """A grey card with a message, for "all done" and images that cannot be opened."""
    canvas = Image.new("RGB", size, (60, 60, 60))
    draw = ImageDraw.Draw(canvas)
    text_label(draw, (20, size[1] // 2 - 12), text, 20, (255, 255, 255))
    return np.asarray(canvas)
