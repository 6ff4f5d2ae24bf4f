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
#: The head and shoulders: what the crop frames (posture.pose.detector) and the drawings show (posture.pose.drawing).
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
#: BlazePose's 33 landmark names in index order (the ``landmarks`` feature set reads every one).
LANDMARK_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye_inner",
    "left_eye",
    "left_eye_outer",
    "right_eye_inner",
    "right_eye",
    "right_eye_outer",
    "left_ear",
    "right_ear",
    "mouth_left",
    "mouth_right",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_pinky",
    "right_pinky",
    "left_index",
    "right_index",
    "left_thumb",
    "right_thumb",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
    "left_heel",
    "right_heel",
    "left_foot_index",
    "right_foot_index",
)
#: Landmarks each feature may need; all must be seen for a photo to be assessed (an ear: either one).
REQUIRED = ("nose", "left_eye", "right_eye", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder")
#: A landmark counts as seen at this BlazePose visibility or more...
MIN_VISIBILITY = 0.5
#: ...except the shoulders, which need more: cropped below the chin, BlazePose invents shoulders at the
#: photo's bottom edge with visibility 0.72–0.76, while on the real photos the least visible shoulder
#: of any assessed person scores 0.88 (2 % quantile 0.96).
SHOULDER_MIN_VISIBILITY = 0.8
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
    #: Whether it reads the photo's frame (size, edges): such a feature changes with the framing on purpose.
    frame: bool = False


class _Points:
    """The landmarks of one person, with the derived points and scales every feature shares.

    ``shape`` (height, width) of the photo is needed only by the features that read the frame."""

    def __init__(self, lm: np.ndarray, shape: tuple[int, int] | None = None) -> None:
        self.lm = lm = np.asarray(lm, dtype=np.float64)
        self.shape = shape
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
        #: The face's height in metres (eyes to mouth, 3-D): an anatomical scale that, unlike the
        #: shoulder width, does not collapse when the person turns to a profile.
        self.w_face = max(float(np.linalg.norm(self.w_eyes - self.w_mouth)), 1e-6)

    def body_forward(self) -> np.ndarray:
        """Unit vector the chest faces, from the shoulder line and the hips-to-shoulders axis."""
        up = self.body_up()
        across = self.world[_I["left_shoulder"]] - self.world[_I["right_shoulder"]]
        across = across - float(across @ up) * up
        across = across / max(float(np.linalg.norm(across)), 1e-9)
        return np.cross(across, up)

    def body_up(self) -> np.ndarray:
        """Unit vector from the hips' midpoint to the shoulders' midpoint: the torso's own "up"."""
        up = self.w_shoulders - self.w_hips
        return up / max(float(np.linalg.norm(up)), 1e-9)

    def body_frame(self, point: np.ndarray) -> tuple[float, float]:
        """``point`` relative to the shoulders' midpoint in the body's own frame: (up along the torso,
        forward along the way the chest faces), in metres. A camera's height or tilt rotates every
        world landmark together, so these numbers stay put when the camera moves."""
        rel = point - self.w_shoulders
        return float(rel @ self.body_up()), float(rel @ self.body_forward())

    def frame_size(self) -> tuple[float, float]:
        """The photo's (height, width); NaN when unknown, so a feature that needs it says so."""
        if self.shape is None:
            return math.nan, math.nan
        return float(self.shape[0]), float(self.shape[1])


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


def _world_drop(point: str, scale: str = "w_shoulder_width") -> Callable[[_Points], float]:
    """How far the shoulders' midpoint is below ``point`` (3-D), divided by the scale named ``scale``."""

    def compute(p: _Points) -> float:
        return float((p.w_shoulders[1] - getattr(p, point)[1]) / getattr(p, scale))

    return compute


def _world_forward(point: str, scale: str = "w_shoulder_width") -> Callable[[_Points], float]:
    """How far ``point`` is ahead of the shoulders along the way the chest faces, divided by ``scale``."""

    def compute(p: _Points) -> float:
        return float((getattr(p, point) - p.w_shoulders) @ p.body_forward() / getattr(p, scale))

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


# -- the frame: how big and where the face is in the photo (a close frontal webcam sees a forward head
#    come closer and lower, and the shoulders slip out at the bottom edge)


def _face_size(p: _Points) -> float:
    return 100.0 * p.face / p.frame_size()[0]


def _eyes_down_the_photo(p: _Points) -> float:
    return 100.0 * float(p.eyes[1]) / p.frame_size()[0]


def _face_over_shoulder_width(p: _Points) -> float:
    return p.face / max(float(np.linalg.norm(p.img[_I["left_shoulder"]] - p.img[_I["right_shoulder"]])), 1e-6)


def _shoulders_above_bottom(p: _Points) -> float:
    return float((p.frame_size()[0] - p.shoulders[1]) / p.face)


# -- the body's own frame (3-D): numbers a camera's height and tilt do not move


def _body_neck_flexion(p: _Points) -> float:
    up, forward = p.body_frame(p.w_ears)
    return math.degrees(math.atan2(forward, up))


def _body_head(point: str, axis: int) -> Callable[[_Points], float]:
    def compute(p: _Points) -> float:
        return p.body_frame(getattr(p, point))[axis] / p.w_face

    return compute


def _body_head_pitch(p: _Points) -> float:
    """How far the nose points down from the chest's forward direction, in the body's sagittal plane."""
    d = p.w_nose - p.w_ears
    return math.degrees(math.atan2(-float(d @ p.body_up()), float(d @ p.body_forward())))


def _landmark_coordinate(index: int, axis: int) -> Callable[[_Points], float]:
    """One landmark relative to the shoulders' midpoint, in face heights: x along the way the face
    points, y up. Every landmark of BlazePose, normalised so that framing and distance drop out."""

    def compute(p: _Points) -> float:
        rel = (p.img[index] - p.shoulders) / p.face
        return float(rel[0] * p.facing if axis == 0 else -rel[1])

    return compute


def _landmark_features() -> list[Feature]:
    out = []
    for index, name in enumerate(LANDMARK_NAMES):
        words = name.replace("_", " ")
        for axis, (suffix, where) in enumerate((("x", "ahead of"), ("y", "above"))):
            out.append(
                Feature(
                    f"lm_{name}_{suffix}",
                    "face heights",
                    f"BlazePose's {words}: how far {where} the shoulders' midpoint it is in the photo, in face "
                    "heights (x along the way the face points).",
                    _landmark_coordinate(index, axis),
                    f"{words} {{v}} face heights {where} the shoulders",
                )
            )
    return out


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
    Feature(
        "face_size",
        "% of the photo's height",
        "The face's height (eyes to mouth) as a share of the photo's height: a head that comes forward "
        "towards a frontal webcam looks bigger.",
        _face_size,
        "face {v} % of the photo's height",
        frame=True,
    ),
    Feature(
        "eyes_down_the_photo",
        "% of the photo's height",
        "How far down the photo the eyes sit, as a share of its height: a forward head drops in a frontal "
        "webcam's picture.",
        _eyes_down_the_photo,
        "eyes {v} % down the photo",
        frame=True,
    ),
    Feature(
        "face_over_shoulder_width",
        "ratio",
        "The face's height over the shoulders' width in the photo: from the front, a head that comes "
        "forward grows against shoulders that stay back.",
        _face_over_shoulder_width,
        "face {v}× the shoulder width tall",
    ),
    Feature(
        "shoulders_above_bottom",
        "face heights",
        "How far the shoulder line sits above the photo's bottom edge, in face heights: close webcams cut the "
        "shoulders off at the bottom, and a forward head pushes them out of the picture.",
        _shoulders_above_bottom,
        "shoulders {v} face heights above the photo's bottom edge",
        frame=True,
    ),
    Feature(
        "body_neck_flexion",
        "degrees",
        "3-D, in the body's own frame: angle between the torso's axis (hips to shoulders) and the line from "
        "the shoulders to the ears, forward positive. A camera's height and tilt do not move it.",
        _body_neck_flexion,
        "neck {v}° forward of the torso's axis",
    ),
    Feature(
        "body_head_forward",
        "face heights",
        "3-D, in the body's own frame: how far the ears are ahead of the shoulders along the way the chest "
        "faces, in 3-D face heights (eyes to mouth, a scale that survives a profile).",
        _body_head("w_ears", 1),
        "ears {v} face heights ahead of the shoulders",
    ),
    Feature(
        "body_head_height",
        "face heights",
        "3-D, in the body's own frame: how far the ears are above the shoulders along the torso's axis, in "
        "3-D face heights.",
        _body_head("w_ears", 0),
        "ears {v} face heights above the shoulders along the torso",
    ),
    Feature(
        "body_head_pitch",
        "degrees",
        "3-D, in the body's own frame: how far the nose points down from the way the chest faces.",
        _body_head_pitch,
        "head pitched {v}° down from the chest's forward direction",
    ),
    Feature(
        "world_head_drop_faces",
        "face heights",
        "3-D: how far the shoulders' midpoint is below the nose, in 3-D face heights (world_head_drop with an "
        "anatomical scale that survives a profile instead of the shoulder width).",
        _world_drop("w_nose", "w_face"),
        "nose {v} face heights above the shoulders (3-D)",
    ),
    Feature(
        "world_nose_forward_faces",
        "face heights",
        "3-D: how far the nose is ahead of the shoulders along the way the chest faces, in 3-D face heights.",
        _world_forward("w_nose", "w_face"),
        "nose {v} face heights ahead of the shoulders (3-D)",
    ),
    *_landmark_features(),
]
#: Every feature the extractor can compute, by name.
FEATURES: dict[str, Feature] = {f.name: f for f in _FEATURES}
#: Named groups of features, so an option can say ``--pose-features frontal`` (or ``head,frontal``).
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "head": ("world_head_drop", "world_nose_forward"),
    "head_2d": ("world_head_drop", "world_nose_forward", "head_height"),
    "frontal": ("head_height", "nose_below_ears", "face_over_shoulder_width", "face_size", "shoulders_above_bottom"),
    "body": ("body_neck_flexion", "body_head_forward", "body_head_height", "body_head_pitch"),
    "anatomical": ("world_head_drop_faces", "world_nose_forward_faces", "head_height", "ear_height"),
    "named": tuple(f.name for f in _FEATURES if not f.name.startswith("lm_")),
    "landmarks": tuple(f.name for f in _FEATURES if f.name.startswith("lm_")),
}
#: The default set: the one the procedure of :mod:`posture.training.selection` picks on the real photos
#: (nested leave-one-source-out, ``bench/results/real_photos.md``).
DEFAULT_FEATURES: tuple[str, ...] = FEATURE_SETS["head_2d"]
#: Bump when a feature's meaning or the landmark augmentation changes (recorded in each run's config).
#: 4: new features (frame, body frame, anatomical scales, every landmark) and 3-D view augmentation.
GEOMETRY_VERSION = 4
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
    """The names as a tuple, with set names (:data:`FEATURE_SETS`) expanded in place and repeats dropped;
    a ``ValueError`` names the unknown ones and what is known."""
    expanded: list[str] = []
    for name in names:
        for feature in FEATURE_SETS.get(name, (name,)):
            if feature not in expanded:
                expanded.append(feature)
    unknown = [n for n in expanded if n not in FEATURES]
    if unknown or not expanded:
        named = [n for n in FEATURES if not n.startswith("lm_")]
        raise ValueError(
            f"unknown pose feature(s) {', '.join(unknown) or '(none given)'}; known: sets "
            f"{', '.join(FEATURE_SETS)} and features {', '.join(named)}, lm_<landmark>_x|y"
        )
    return tuple(expanded)


#: Views, as the landmarks say: how far the shoulder line turns away from the photo's plane (3-D).
VIEWS: tuple[str, ...] = ("front", "oblique", "side")
#: Below this turn (degrees) a view is ``front``; from ``SIDE_MIN_YAW`` on it is ``side`` (a profile).
#: On the synthetic pictures, whose camera is known, front reads 0–18°, oblique (30–55° off the
#: front) 2–58° (quartiles 30–42°) and side 46–90° (quartiles 82–88°).
FRONT_MAX_YAW, SIDE_MIN_YAW = 20.0, 55.0


def body_yaw(landmarks: np.ndarray) -> float:
    """How far the shoulder line turns away from the photo's plane, in degrees: 0 facing the camera,
    90 a profile (BlazePose's world landmarks; the sign, left or right, is dropped)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    d = lm[_I["left_shoulder"], 4:7] - lm[_I["right_shoulder"], 4:7]
    return math.degrees(math.atan2(abs(float(d[2])), abs(float(d[0]))))


def view_of(landmarks: np.ndarray) -> str:
    """``front``, ``oblique`` or ``side``: the view a photo shows, as its landmarks say."""
    yaw = body_yaw(landmarks)
    return VIEWS[0] if yaw < FRONT_MAX_YAW else VIEWS[2] if yaw >= SIDE_MIN_YAW else VIEWS[1]


def _seen(lm: np.ndarray, name: str, shape: tuple[int, int] | None) -> bool:
    row = lm[_I[name]]
    shoulder = "shoulder" in name
    if not row[3] >= (SHOULDER_MIN_VISIBILITY if shoulder else MIN_VISIBILITY):
        return False
    if shape is None:
        return True
    h, w = shape
    # Shoulders must lie inside the photo itself: a shoulder placed on or past the edge is BlazePose
    # completing a body it cannot see (a photo cut off below the chin).
    mx, my = (0.0, 0.0) if shoulder else (FRAME_MARGIN * w, FRAME_MARGIN * h)
    return bool(-mx <= row[0] <= w + mx and -my <= row[1] <= h + my)


#: From the front, the shoulder line lies below the eyes and spans at least this many face heights (the
#: real frontal photos: 3.5 and more; a head slumped towards a desk can sink below the shoulder line's
#: mouth level, never its eyes); landmarks that break this are not a person's.
MIN_FRONTAL_SHOULDER_WIDTH = 2.0


def _implausible(lm: np.ndarray) -> bool:
    """Whether the landmarks cannot be a person seen from the front (a relief or a drawing on which
    BlazePose puts the shoulders on the face)."""
    if view_of(lm) != VIEWS[0]:
        return False
    p = _Points(lm)
    width = float(np.linalg.norm(p.img[_I["left_shoulder"]] - p.img[_I["right_shoulder"]]))
    return bool(p.shoulders[1] <= p.eyes[1] or width < MIN_FRONTAL_SHOULDER_WIDTH * p.face)


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
    if _implausible(lm):
        return "the body landmarks do not look like a person (the shoulders sit on the face)"
    return None


def compute_features(landmarks: np.ndarray, names: Sequence[str], shape: tuple[int, int] | None = None) -> np.ndarray:
    """The named features of one assessed person, as float64 in ``names`` order (no checks: see
    :func:`assess`). ``shape`` (height, width): the photo's size, which the frame features read (NaN
    without it)."""
    points = _Points(landmarks, shape)
    return np.array([FEATURES[n].compute(points) for n in names], dtype=np.float64)


def posture_features(
    landmarks: np.ndarray | None, names: Sequence[str], shape: tuple[int, int] | None = None
) -> tuple[np.ndarray | None, str | None]:
    """``(features, None)`` for a person who can be assessed, else ``(None, reason)``."""
    reason = assess(landmarks, shape)
    if reason is not None:
        return None, reason
    assert landmarks is not None
    values = compute_features(landmarks, names, shape)
    if not np.isfinite(values).all():
        return None, "the body landmarks could not be measured"
    return values, None


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """A camera turn in BlazePose's axes (x right, y down, z away), angles in degrees."""
    a, b, c = (math.radians(v) for v in (yaw, pitch, roll))
    turn_y = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    turn_x = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    turn_z = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return turn_z @ turn_x @ turn_y


def rotate_view(landmarks: np.ndarray, yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """The same person seen by a camera turned by ``yaw``/``pitch``/``roll`` degrees about the shoulders.

    The world landmarks (metres) turn as a rigid body; the 2-D landmarks move by the turn's projected
    displacement (orthographic, with the photo's own pixels-per-metre fitted on head and shoulders), so
    what the photo showed of this person stays and only the viewpoint changes. Geometry in the body's
    own frame (the ``body`` features) does not move; camera-axis geometry does, as it would."""
    lm = np.array(landmarks, dtype=np.float64, copy=True)
    world = lm[:, 4:7]
    centre = (world[_I["left_shoulder"]] + world[_I["right_shoulder"]]) / 2.0
    turned = (world - centre) @ _rotation(yaw, pitch, roll).T + centre
    idx = list(HEAD_AND_SHOULDERS.values())
    img_rel = lm[idx, :2] - lm[idx, :2].mean(axis=0)
    world_rel = world[idx, :2] - world[idx, :2].mean(axis=0)
    px_per_m = float((img_rel * world_rel).sum() / max(float((world_rel**2).sum()), 1e-12))
    shift = (turned - world) * px_per_m
    lm[:, :2] += shift[:, :2]
    lm[:, 2] += shift[:, 2]
    lm[:, 4:7] = turned
    return lm.astype(np.float32)


def augment_landmarks(
    landmarks: np.ndarray, rng: np.random.Generator, strength: float = 1.0, view3d: float = 0.0
) -> np.ndarray:
    """A plausible variant of one person's landmarks: mirrored half the time, rotated by up to
    ±3°·strength (in the image plane, about the shoulders; the world points about the camera axis),
    scaled by up to ±10 %·strength and jittered (2 % of the face height; 5 mm in 3-D).

    ``view3d`` (degrees): also see the person from another camera, turned in 3-D (:func:`rotate_view`)
    by up to ±view3d of yaw, ±view3d/2 of pitch (a camera higher or lower) and ±view3d/4 of roll."""
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
    if view3d > 0:
        turn = float(view3d)
        lm = rotate_view(
            lm, rng.uniform(-turn, turn), rng.uniform(-turn / 2, turn / 2), rng.uniform(-turn / 4, turn / 4)
        ).astype(np.float64)
    return lm.astype(np.float32)


def describe(names: Sequence[str]) -> list[dict[str, str]]:
    """What each feature means, for the run's ``config.json`` and the docs."""
    return [{"name": n, "unit": FEATURES[n].unit, "description": FEATURES[n].description} for n in names]


def metric_scales(landmarks: np.ndarray) -> dict[str, float]:
    """Metres per unit of the scaled features, for this person: BlazePose's world landmarks are metric,
    so "0.45 shoulder widths" becomes centimetres a person understands (:func:`phrase`)."""
    p = _Points(landmarks)
    return {"shoulder widths": p.w_shoulder_width, "face heights": p.w_face}


def format_value(name: str, value: float, scales: dict[str, float] | None = None) -> str:
    """A feature's value as people read it: whole degrees, whole centimetres where ``scales``
    (:func:`metric_scales`) turn its unit into metres, two decimals otherwise."""
    unit = FEATURES[name].unit
    if unit == "degrees":
        return f"{value:.0f}°"
    if scales and unit in scales:
        return f"{value * scales[unit] * 100:.0f} cm"
    if unit.startswith("%"):
        return f"{value:.0f}"
    return f"{value:.2f}"


def phrase(name: str, value: float, scales: dict[str, float] | None = None) -> str:
    """``"nose 21 cm above the shoulders"`` (or, without ``scales``, ``"nose 1.20 face heights above
    the shoulders"``): one feature's value in words."""
    feature = FEATURES[name]
    text = feature.phrase
    if scales and feature.unit in scales:
        text = text.replace(f"{{v}} {feature.unit}", "{v}").replace(" (3-D)", "")
    return text.format(v=format_value(name, value, scales).rstrip("°"))


__all__ = [
    "FEATURES",
    "FEATURE_SETS",
    "DEFAULT_FEATURES",
    "GEOMETRY_VERSION",
    "CHANGED_IN",
    "LANDMARK_NAMES",
    "VIEWS",
    "body_yaw",
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
    "metric_scales",
    "phrase",
    "posture_features",
    "rotate_view",
    "view_of",
]
