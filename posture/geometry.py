"""Posture geometry from BlazePose landmarks: named numbers that describe where the head sits.

Why geometry at all: on real photos of people a model never saw, what separates a forward head from
an upright one is the head's position over the shoulders, the evidence a physiotherapist looks at.
CNN features of a photo mostly describe the room and the camera (``bench/real_photos.py``).

Every feature here is built not to depend on photo size, framing or camera distance:

- *image* features use the 2-D landmarks in pixels, divided by the person's own **face height**
  (eye midpoint to mouth midpoint), so they are the same for a close webcam and a far phone;
- *world* features use BlazePose's 3-D world landmarks (metres, centred on the hips, axes aligned
  with the camera), divided by the 3-D **shoulder width**.

A person can be assessed only when BlazePose found one and the landmarks every feature needs (nose,
eyes, mouth, both shoulders, an ear) are visible *inside the photo*: BlazePose also guesses landmarks
that are cropped away (a head-only crop gets shoulders below the frame), and those guesses must not
be read as a posture. :func:`assess` gives the reason in words when it cannot.

Landmark arrays are ``33×7`` float32: image ``x, y`` (pixels), ``z`` (BlazePose's relative depth, in
the x scale), ``visibility``, then world ``x, y, z`` (metres). y points down in both.

Augmented views (:func:`augment_landmarks`) are made in landmark space: a mirror (left and right
swap), a small rotation, a scale change and jitter. Running BlazePose again on augmented pixels
would cost a pose-model call per view and teach nothing the geometry does not already ignore.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

#: BlazePose landmark indices used here.
LANDMARK_INDEX = {
    "nose": 0,
    "left_eye": 2,
    "right_eye": 5,
    "left_ear": 7,
    "right_ear": 8,
    "mouth_left": 9,
    "mouth_right": 10,
    "left_shoulder": 11,
    "right_shoulder": 12,
    "left_hip": 23,
    "right_hip": 24,
}
#: The head and shoulders: what the crop frames (posture.pose) and the drawings show (posture.drawing).
HEAD_AND_SHOULDERS = {
    name: LANDMARK_INDEX[name]
    for name in (
        "nose",
        "left_eye",
        "right_eye",
        "left_ear",
        "right_ear",
        "mouth_left",
        "mouth_right",
        "left_shoulder",
        "right_shoulder",
    )
}
#: Landmarks each feature may need; all must be seen for a photo to be assessed (an ear: either one).
REQUIRED = ("nose", "left_eye", "right_eye", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder")
#: A landmark counts as seen at this BlazePose visibility or more...
MIN_VISIBILITY = 0.5
#: ...and when it lies inside the photo, give or take this share of the photo's size.
FRAME_MARGIN = 0.02
#: A face smaller than this (pixels, eyes to mouth) is too small to measure reliably.
MIN_FACE_PIXELS = 3.0
#: Columns of a landmark array.
N_LANDMARKS, N_COLUMNS = 33, 7

_I = LANDMARK_INDEX
#: BlazePose's left/right pairs (0 is the nose), for mirroring.
_MIRROR = np.array(
    [
        0,
        4,
        5,
        6,
        1,
        2,
        3,
        8,
        7,
        10,
        9,
        12,
        11,
        14,
        13,
        16,
        15,
        18,
        17,
        20,
        19,
        22,
        21,
        24,
        23,
        26,
        25,
        28,
        27,
        30,
        29,
        32,
        31,
    ]
)


def better_side(lm: np.ndarray) -> str:
    """``"left"`` or ``"right"``: the side of the body nearer the camera, whose ear and shoulder it
    sees; side-view measures and drawings use that side, since on a profile the far ear and
    shoulder are guesses.

    Nearer is BlazePose's depth (column 2, smaller = closer) summed over that side's ear and
    shoulder. BlazePose's visibility (column 3), the obvious choice, says almost nothing here: on
    the real photos both sides' scores differ by a median 0.001, on two sources it agreed with the
    depth on fewer than half of the photos, and the near-side ear–shoulder angle it chose told the classes
    apart with ROC AUC 0.83 over the 4 real sources against 0.94 by depth (posenet 0.57 against
    0.86). Visibility only breaks an exact tie of depth (landmarks without one)."""
    lm = np.asarray(lm, dtype=np.float64)
    depth, vis = lm[:, 2], lm[:, 3]
    left_depth = depth[_I["left_ear"]] + depth[_I["left_shoulder"]]
    right_depth = depth[_I["right_ear"]] + depth[_I["right_shoulder"]]
    if left_depth != right_depth:
        return "left" if left_depth < right_depth else "right"
    left = vis[_I["left_ear"]] + vis[_I["left_shoulder"]] >= vis[_I["right_ear"]] + vis[_I["right_shoulder"]]
    return "left" if left else "right"


@dataclass(frozen=True)
class Feature:
    """One named geometry number: how it is computed and how to say it to a person."""

    name: str
    unit: str
    description: str
    compute: Callable[[_Points], float]
    #: A short phrase with ``{v}`` for the value, used in explanations ("nose {v} face heights above ...").
    phrase: str


class _Points:
    """The landmarks of one person, with the derived points and scales every feature shares."""

    def __init__(self, lm: np.ndarray) -> None:
        self.lm = lm = np.asarray(lm, dtype=np.float64)
        img, world, vis = lm[:, :2], lm[:, 4:7], lm[:, 3]
        self.img, self.world, self.vis = img, world, vis

        def mid(a: str, b: str) -> np.ndarray:
            return (img[_I[a]] + img[_I[b]]) / 2.0

        self.eyes, self.mouth = mid("left_eye", "right_eye"), mid("mouth_left", "mouth_right")
        self.shoulders, self.ears = mid("left_shoulder", "right_shoulder"), mid("left_ear", "right_ear")
        self.nose = img[_I["nose"]]
        self.face = float(np.linalg.norm(self.eyes - self.mouth))
        side = better_side(lm)  # for side-view measures
        self.side_ear, self.side_shoulder = img[_I[f"{side}_ear"]], img[_I[f"{side}_shoulder"]]
        self.side_hip = img[_I[f"{side}_hip"]]
        # which way the face points along the image's x axis (+1 right, -1 left)
        self.facing = 1.0 if self.nose[0] >= self.ears[0] else -1.0

        def wmid(a: str, b: str) -> np.ndarray:
            return (world[_I[a]] + world[_I[b]]) / 2.0

        self.w_shoulders, self.w_ears = wmid("left_shoulder", "right_shoulder"), wmid("left_ear", "right_ear")
        self.w_hips, self.w_nose = wmid("left_hip", "right_hip"), world[_I["nose"]]
        self.w_eyes, self.w_mouth = wmid("left_eye", "right_eye"), wmid("mouth_left", "mouth_right")
        self.w_shoulder_width = max(
            float(np.linalg.norm(world[_I["left_shoulder"]] - world[_I["right_shoulder"]])), 1e-6
        )

    def body_forward(self) -> np.ndarray:
        """Unit vector the chest faces, from the shoulder line and the hips-to-shoulders axis."""
        up = self.w_shoulders - self.w_hips
        up = up / max(float(np.linalg.norm(up)), 1e-9)
        across = self.world[_I["left_shoulder"]] - self.world[_I["right_shoulder"]]
        across = across - float(across @ up) * up
        across = across / max(float(np.linalg.norm(across)), 1e-9)
        return np.cross(across, up)


def _above_shoulders(point: str) -> Callable[[_Points], float]:
    def compute(p: _Points) -> float:
        return float((p.shoulders[1] - getattr(p, point)[1]) / p.face)

    return compute


def _below_ears(point: str) -> Callable[[_Points], float]:
    def compute(p: _Points) -> float:
        return float((getattr(p, point)[1] - p.ears[1]) / p.face)

    return compute


def _ear_shoulder_angle(p: _Points) -> float:
    """From the shoulders' midpoint to the ears' midpoint, not the near ear to the near shoulder.

    Why the midline: the craniovertebral angle starts at C7, a point on the body's midline, and on a
    profile both ears and both shoulders project onto that line, so the two sides are two readings of
    the same points. BlazePose's near shoulder is its noisiest landmark on a profile, and its guess of
    the hidden one errs the other way (on synthetic side views their forward errors correlate at
    r -0.56), so the mean cancels much of both: against the rendered CVA of 300 synthetic side views
    the midline angle correlates at r 0.76, the near side at 0.59 (``bench/synth_realism.py``). On the
    real side-view photos it separates the classes as well or better (ROC AUC postural 0.87 against
    0.84, techneck 1.00 against 1.00). From the front the angle says little either way (about 90°)."""
    return math.degrees(math.atan2(p.shoulders[1] - p.ears[1], abs(p.ears[0] - p.shoulders[0])))


def _ear_forward(p: _Points) -> float:
    return float((p.side_ear[0] - p.side_shoulder[0]) * p.facing / p.face)


def _ahead_of_hip(point: str) -> Callable[[_Points], float]:
    def compute(p: _Points) -> float:
        return float((getattr(p, point)[0] - p.side_hip[0]) * p.facing / p.face)

    return compute


def _world_drop(point: str) -> Callable[[_Points], float]:
    def compute(p: _Points) -> float:
        return float((p.w_shoulders[1] - getattr(p, point)[1]) / p.w_shoulder_width)

    return compute


def _world_forward(point: str) -> Callable[[_Points], float]:
    def compute(p: _Points) -> float:
        return float((getattr(p, point) - p.w_shoulders) @ p.body_forward() / p.w_shoulder_width)

    return compute


def _neck_from_vertical(p: _Points) -> float:
    rel = p.w_ears - p.w_shoulders
    return math.degrees(math.atan2(math.hypot(rel[0], rel[2]), -rel[1]))


def _head_pitch(p: _Points) -> float:
    d = p.w_nose - p.w_ears
    return math.degrees(math.atan2(d[1], math.hypot(d[0], d[2])))


def _torso_lean(p: _Points) -> float:
    up = p.w_shoulders - p.w_hips
    return math.degrees(math.acos(float(np.clip(-up[1] / max(float(np.linalg.norm(up)), 1e-9), -1.0, 1.0))))


def _shoulders_over_face(p: _Points) -> float:
    return float(np.linalg.norm(p.img[_I["left_shoulder"]] - p.img[_I["right_shoulder"]]) / p.face)


_FEATURES = [
    Feature(
        "head_height",
        "face heights",
        "How far the nose sits above the midpoint of the shoulders in the photo, "
        "in face heights (eyes to mouth). A forward head drops towards the shoulder line.",
        _above_shoulders("nose"),
        "nose {v} face heights above the shoulders",
    ),
    Feature(
        "eye_height",
        "face heights",
        "How far the eyes sit above the shoulder midpoint, in face heights.",
        _above_shoulders("eyes"),
        "eyes {v} face heights above the shoulders",
    ),
    Feature(
        "ear_height",
        "face heights",
        "How far the ears sit above the shoulder midpoint, in face heights.",
        _above_shoulders("ears"),
        "ears {v} face heights above the shoulders",
    ),
    Feature(
        "mouth_height",
        "face heights",
        "How far the mouth sits above the shoulder midpoint, in face heights.",
        _above_shoulders("mouth"),
        "mouth {v} face heights above the shoulders",
    ),
    Feature(
        "nose_below_ears",
        "face heights",
        "How far the nose sits below the ears, in face heights: the head "
        "tipping down (a poking chin or a look at the keyboard) grows it.",
        _below_ears("nose"),
        "nose {v} face heights below the ears",
    ),
    Feature(
        "mouth_below_ears",
        "face heights",
        "How far the mouth sits below the ears, in face heights.",
        _below_ears("mouth"),
        "mouth {v} face heights below the ears",
    ),
    Feature(
        "ear_shoulder_angle",
        "degrees",
        "Angle between the horizontal and the line from the shoulders' midpoint to the ears' "
        "midpoint: a 2-D proxy of the craniovertebral angle on a side view (below about 50° is "
        "forward head on a true profile; from the front it stays near 90° and says little).",
        _ear_shoulder_angle,
        "ear {v}° above the shoulder line",
    ),
    Feature(
        "ear_forward",
        "face heights",
        "How far the ear is ahead of its shoulder along the way the face points, in face heights (side views).",
        _ear_forward,
        "ear {v} face heights ahead of the shoulder",
    ),
    Feature(
        "shoulder_forward",
        "face heights",
        "How far the shoulder is ahead of its hip along the way the face "
        "points, in face heights (side views: rounded shoulders and a slumped upper back push it forward; "
        "BlazePose guesses the hips when they are out of the photo).",
        _ahead_of_hip("side_shoulder"),
        "shoulder {v} face heights ahead of the hip",
    ),
    Feature(
        "ear_forward_of_hip",
        "face heights",
        "How far the ear is ahead of its hip along the way the face points, in face heights (side views).",
        _ahead_of_hip("side_ear"),
        "ear {v} face heights ahead of the hip",
    ),
    Feature(
        "shoulders_over_face",
        "ratio",
        "Shoulder width over face height in the photo: large from the front, "
        "small from the side; tells the model which view it sees.",
        _shoulders_over_face,
        "shoulders {v} face heights wide",
    ),
    Feature(
        "world_head_drop",
        "shoulder widths",
        "3-D: how far the shoulders' midpoint is below the nose, in shoulder "
        "widths (BlazePose world landmarks, camera-aligned).",
        _world_drop("w_nose"),
        "nose {v} shoulder widths above the shoulders (3-D)",
    ),
    Feature(
        "world_ear_drop",
        "shoulder widths",
        "3-D: how far the shoulders' midpoint is below the ears, in shoulder widths.",
        _world_drop("w_ears"),
        "ears {v} shoulder widths above the shoulders (3-D)",
    ),
    Feature(
        "world_nose_forward",
        "shoulder widths",
        "3-D: how far the nose is ahead of the shoulders along the way the chest faces, in shoulder widths.",
        _world_forward("w_nose"),
        "nose {v} shoulder widths ahead of the shoulders (3-D)",
    ),
    Feature(
        "world_ear_forward",
        "shoulder widths",
        "3-D: how far the ears are ahead of the shoulders along the way the chest faces, in shoulder widths.",
        _world_forward("w_ears"),
        "ears {v} shoulder widths ahead of the shoulders (3-D)",
    ),
    Feature(
        "world_neck_tilt",
        "degrees",
        "3-D: angle of the shoulder-to-ear line from the vertical (0° is an upright neck).",
        _neck_from_vertical,
        "neck {v}° from the vertical (3-D)",
    ),
    Feature(
        "world_head_pitch",
        "degrees",
        "3-D: how far the nose points down from the ears' level (a look down).",
        _head_pitch,
        "head pitched {v}° down (3-D)",
    ),
    Feature(
        "world_torso_lean",
        "degrees",
        "3-D: angle of the hips-to-shoulders line from the vertical.",
        _torso_lean,
        "torso {v}° from the vertical (3-D)",
    ),
]
#: Every feature the extractor can compute, by name.
FEATURES: dict[str, Feature] = {f.name: f for f in _FEATURES}
#: The default set, picked by leave-one-source-out on the real photos (``bench/real_photos.py``).
DEFAULT_FEATURES: tuple[str, ...] = ("world_head_drop", "world_nose_forward")
#: Bump when a feature's meaning or the landmark augmentation changes (recorded in each run's config).
GEOMETRY_VERSION = 3
#: The geometry version in which each feature last changed meaning (unlisted: unchanged since 1).
#: 2: side-view measures use the side BlazePose puts nearer the camera; 3: the ear–shoulder angle
#: runs along the midline.
CHANGED_IN: dict[str, int] = {
    "ear_forward": 2,
    "shoulder_forward": 2,
    "ear_forward_of_hip": 2,
    "ear_shoulder_angle": 3,
}


def changed_since(names: Sequence[str], version: int) -> tuple[str, ...]:
    """The features among ``names`` whose meaning changed after geometry ``version``: a run trained
    then learnt its head on other numbers, and would read today's values wrongly."""
    return tuple(n for n in names if CHANGED_IN.get(n, 1) > int(version))


def check_feature_names(names: Sequence[str]) -> tuple[str, ...]:
    """The names as a tuple, or a ``ValueError`` naming the unknown ones and the known ones."""
    unknown = [n for n in names if n not in FEATURES]
    if unknown or not names:
        raise ValueError(
            f"unknown pose feature(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(FEATURES)}"
        )
    return tuple(names)


def _seen(lm: np.ndarray, name: str, shape: tuple[int, int] | None) -> bool:
    row = lm[_I[name]]
    if not row[3] >= MIN_VISIBILITY:
        return False
    if shape is None:
        return True
    h, w = shape
    mx, my = FRAME_MARGIN * w, FRAME_MARGIN * h
    return bool(-mx <= row[0] <= w + mx and -my <= row[1] <= h + my)


def assess(landmarks: np.ndarray | None, shape: tuple[int, int] | None = None) -> str | None:
    """``None`` when the person can be measured; otherwise the reason, in words for the person.

    ``shape`` (height, width) of the photo the landmarks came from: landmarks outside it are guesses.
    """
    if landmarks is None or len(landmarks) == 0:
        return "no person found in the photo"
    lm = np.asarray(landmarks, dtype=np.float64)
    if not np.isfinite(lm).all():
        return "the body landmarks could not be measured"
    missing = [n for n in REQUIRED if not _seen(lm, n, shape)]
    if not (_seen(lm, "left_ear", shape) or _seen(lm, "right_ear", shape)):
        missing.append("an ear")
    if missing:
        shoulders = [n for n in missing if "shoulder" in n]
        if shoulders:
            return "the shoulders are not visible (show the head and both shoulders)"
        return "the face is not visible enough (" + ", ".join(n.replace("_", " ") for n in missing) + ")"
    if (
        np.linalg.norm(
            (lm[_I["left_eye"], :2] + lm[_I["right_eye"], :2]) / 2
            - (lm[_I["mouth_left"], :2] + lm[_I["mouth_right"], :2]) / 2
        )
        < MIN_FACE_PIXELS
    ):
        return "the face is too small to measure"
    return None


def compute_features(landmarks: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """The named features of one assessed person, as float64 in ``names`` order (no checks: see :func:`assess`)."""
    points = _Points(landmarks)
    return np.array([FEATURES[n].compute(points) for n in names], dtype=np.float64)


def posture_features(
    landmarks: np.ndarray | None, names: Sequence[str], shape: tuple[int, int] | None = None
) -> tuple[np.ndarray | None, str | None]:
    """``(features, None)`` for a person who can be assessed, else ``(None, reason)``."""
    reason = assess(landmarks, shape)
    if reason is not None:
        return None, reason
    assert landmarks is not None
    values = compute_features(landmarks, names)
    if not np.isfinite(values).all():
        return None, "the body landmarks could not be measured"
    return values, None


def augment_landmarks(landmarks: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """A plausible variant of one person's landmarks: mirrored half the time, rotated by up to
    ±3°·strength (in the image plane, about the shoulders; the world points about the camera axis),
    scaled by up to ±10 %·strength and jittered (2 % of the face height; 5 mm in 3-D)."""
    s = max(0.0, float(strength))
    lm = np.array(landmarks, dtype=np.float64, copy=True)
    centre = (lm[_I["left_shoulder"], :2] + lm[_I["right_shoulder"], :2]) / 2.0
    if rng.random() < 0.5:  # mirror: left and right swap, x flips about the shoulders
        lm = lm[_MIRROR]
        lm[:, 0] = 2.0 * centre[0] - lm[:, 0]
        lm[:, 4] = -lm[:, 4]
    angle = math.radians(rng.uniform(-3.0, 3.0) * s)
    scale = 1.0 + rng.uniform(-0.1, 0.1) * s
    c, sn = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -sn], [sn, c]])
    lm[:, :2] = (lm[:, :2] - centre) @ rot.T * scale + centre
    lm[:, 4:6] = lm[:, 4:6] @ rot.T
    face = float(
        np.linalg.norm(
            (lm[_I["left_eye"], :2] + lm[_I["right_eye"], :2]) / 2
            - (lm[_I["mouth_left"], :2] + lm[_I["mouth_right"], :2]) / 2
        )
    )
    lm[:, :2] += rng.normal(0.0, 0.02 * s * max(face, 1.0), size=(len(lm), 2))
    lm[:, 4:7] += rng.normal(0.0, 0.005 * s, size=(len(lm), 3))
    return lm.astype(np.float32)


def describe(names: Sequence[str]) -> list[dict[str, str]]:
    """What each feature means, for the run's ``config.json`` and the docs."""
    return [{"name": n, "unit": FEATURES[n].unit, "description": FEATURES[n].description} for n in names]


def format_value(name: str, value: float) -> str:
    """A feature's value as people read it: whole degrees, two decimals otherwise."""
    return f"{value:.0f}°" if FEATURES[name].unit == "degrees" else f"{value:.2f}"


def phrase(name: str, value: float) -> str:
    """``"nose 1.20 face heights above the shoulders"``: one feature's value in words."""
    return FEATURES[name].phrase.format(v=format_value(name, value).rstrip("°"))


__all__ = [
    "FEATURES",
    "DEFAULT_FEATURES",
    "GEOMETRY_VERSION",
    "CHANGED_IN",
    "changed_since",
    "Feature",
    "LANDMARK_INDEX",
    "MIN_VISIBILITY",
    "assess",
    "augment_landmarks",
    "check_feature_names",
    "compute_features",
    "describe",
    "format_value",
    "phrase",
    "posture_features",
]
