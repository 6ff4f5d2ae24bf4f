"""Posture geometry from body landmarks: how high the head sits over the shoulders.

Why these two numbers: a forward head drops the face towards the shoulder line as seen from the
front (the webcam and phone photos) and pushes the ear ahead of the shoulder as seen from the side
(the clinical craniovertebral angle, whose landmarks are the tragus and C7). Both are measured
in units of the person's own face height (eyes to mouth), so they do not depend on the camera's
distance or the photo's size.

What they cannot shed is the camera's *elevation*: a webcam below eye level makes everyone's
head look higher. On the real photos both features separate the classes within a capture
session almost perfectly (ROC AUC 1.0 on each frontal session) but their level moves from one
session to the next by more than the gap between the classes, which is why
:mod:`posture.posecal` compares a photo with an upright reference from the same session.
"""

from __future__ import annotations

import math

import numpy as np

from posture.pose import HEAD_AND_SHOULDERS, MIN_VISIBILITY

#: Feature names, in the order :func:`posture_geometry` returns them.
GEOMETRY_FEATURES = ("head_height", "ear_shoulder_angle")
#: A face smaller than this (pixels, eyes to mouth) is too small to measure reliably.
MIN_FACE_HEIGHT = 3.0

_I = HEAD_AND_SHOULDERS


def _mid(lm: np.ndarray, a: str, b: str) -> np.ndarray:
    return (lm[_I[a], :2] + lm[_I[b], :2]) / 2.0


def posture_geometry(landmarks: np.ndarray | None) -> np.ndarray | None:
    """``[head_height, ear_shoulder_angle]`` for one person, or ``None`` when they cannot be measured.

    - ``head_height``: how far the nose sits above the midpoint of the shoulders, in face heights.
    - ``ear_shoulder_angle``: degrees between the horizontal and the line from shoulder to ear,
      on the side of the body the camera sees better (a craniovertebral-angle proxy).
    """
    if landmarks is None:
        return None
    lm = np.asarray(landmarks, dtype=np.float64)
    needed = [_I["nose"], _I["left_shoulder"], _I["right_shoulder"]]
    if (lm[needed, 3] < MIN_VISIBILITY).any():
        return None
    face = float(np.linalg.norm(_mid(lm, "left_eye", "right_eye") - _mid(lm, "mouth_left", "mouth_right")))
    if face < MIN_FACE_HEIGHT:
        return None
    shoulders = _mid(lm, "left_shoulder", "right_shoulder")
    head_height = (shoulders[1] - lm[_I["nose"], 1]) / face
    left = lm[_I["left_ear"], 3] + lm[_I["left_shoulder"], 3]
    right = lm[_I["right_ear"], 3] + lm[_I["right_shoulder"], 3]
    ear, shoulder = ((lm[_I["left_ear"]], lm[_I["left_shoulder"]]) if left >= right
                     else (lm[_I["right_ear"]], lm[_I["right_shoulder"]]))
    angle = math.degrees(math.atan2(shoulder[1] - ear[1], abs(ear[0] - shoulder[0])))
    return np.array([head_height, angle], dtype=np.float64)


__all__ = ["GEOMETRY_FEATURES", "MIN_FACE_HEIGHT", "posture_geometry"]
