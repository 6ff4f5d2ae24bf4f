"""The 3-D scene: who the subject is, how they sit or stand, how they hold their head, the camera.

The craniovertebral angle is *the* pose parameter: the tragus is placed at distance ``L`` from C7
along a line ``cva_deg`` above the horizontal (in the sagittal plane), and the head, ear, neck and
face are built around that point. Trunk flexion, rounded shoulders and the neck's shape follow the
angle loosely (see :func:`sample_pose`); appearance, setting, camera and light are drawn
independently of it, so that posture is what separates the classes.

Why a whole body, furniture and wide framing: BlazePose, the pipeline's default feature extractor,
first finds a *person* (its detector keys on the face and the body around it), then reads the
landmarks. A head and shoulders floating in the frame were found in 73 % of front views and 27 %
of side views (``bench/synth_realism.py``); a person with arms, hips and legs, seated at a desk or
standing, framed as webcams and physiotherapy photos frame people, is read like a photograph.

World frame: centimetres, C7 at the origin, +y up, +z the way the subject faces, +x lateral.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from posture.synth.primitives import Ellipsoid
from posture.synth.props import Furniture, build_furniture, sample_furniture

SKIN_TONES = np.array(
    [  # light to dark anchors; a subject's tone is interpolated between two neighbours
        (0.98, 0.85, 0.74),
        (0.93, 0.76, 0.62),
        (0.85, 0.64, 0.48),
        (0.72, 0.50, 0.35),
        (0.55, 0.36, 0.24),
        (0.45, 0.29, 0.19),
        (0.36, 0.23, 0.15),  # as dark skin shows in photos
    ]
)
HAIR_COLOURS = np.array(
    [
        (0.07, 0.06, 0.05),
        (0.20, 0.13, 0.08),
        (0.38, 0.24, 0.13),
        (0.62, 0.47, 0.28),
        (0.85, 0.72, 0.45),
        (0.55, 0.23, 0.10),
        (0.62, 0.62, 0.62),
        (0.88, 0.88, 0.86),
    ]
)
HAIR_STYLES = ("short", "short", "buzz", "ponytail", "bun", "bald", "long")
PATTERNS = ("solid", "solid", "stripes", "two_tone")
#: Where the subject is: at a desk (typing, the webcam and the seated clinical photo) or standing.
SETTINGS = ("desk", "standing")


@dataclass(frozen=True)
class Appearance:
    """What stays the same across one subject's pictures (a person in their own room)."""

    scale: float
    shoulder_half: float
    torso_depth: float
    neck_radius: float
    tragus_dist: float  # C7 to tragus, the length of the CVA line
    head_radii: tuple[float, float, float]
    skin: np.ndarray
    hair: np.ndarray
    hair_style: str
    clothes: np.ndarray
    clothes2: np.ndarray
    pattern: str
    pattern_period: float
    glasses: bool
    glasses_colour: np.ndarray
    beard: bool
    room: Room
    trousers: np.ndarray = field(default_factory=lambda: np.array([0.2, 0.2, 0.25]))
    long_sleeves: bool = True
    build: float = 1.0  # girth of trunk and limbs
    furniture: Furniture | None = None


@dataclass(frozen=True)
class Room:
    """A background in normalised image coordinates, drawn behind the figure (see render.py)."""

    wall_top: np.ndarray
    wall_bottom: np.ndarray
    items: tuple[tuple[str, tuple[float, float, float, float], np.ndarray], ...]
    chair: bool
    chair_colour: np.ndarray


@dataclass(frozen=True)
class Pose:
    """One picture's posture: the CVA plus nuisance angles independent of the label."""

    cva_deg: float
    head_pitch_deg: float  # + = chin down (flexion)
    trunk_lean_deg: float  # + = trunk tilted forward about C7
    protraction: float  # cm the shoulders come forward (rounded shoulders)
    facing: int  # side views: which side of the subject the camera is on (+1 / -1)
    setting: str = "desk"
    upper_arm_deg: float = 25.0  # upper arm forward of the vertical
    forearm_deg: float = 80.0  # forearm forward of the vertical (90 = level, at a keyboard)
    head_turn_deg: float = 0.0  # a small look to the side, about the vertical


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: world→camera rotation rows (right, down, forward), focal length in px."""

    position: np.ndarray
    rot: np.ndarray
    focal: float
    cx: float
    cy: float
    width: int
    height: int

    def project(self, point: np.ndarray) -> tuple[float, float]:
        """Pixel coordinates (x right, y down) of a world point in front of the camera."""
        local = self.rot @ (np.asarray(point, dtype=float) - self.position)
        return (self.cx + self.focal * local[0] / local[2], self.cy + self.focal * local[1] / local[2])


@dataclass
class Scene:
    """Everything render.py needs, plus the two landmarks the labels are made of."""

    primitives: list[Ellipsoid]
    camera: Camera
    light_dir: np.ndarray
    light: dict[str, float] = field(default_factory=dict)
    tragus: np.ndarray = field(default_factory=lambda: np.zeros(3))
    c7: np.ndarray = field(default_factory=lambda: np.zeros(3))
    room: Room | None = None
    view: str = "side"
    pattern: str = "solid"
    pattern_period: float = 5.0
    colour2: np.ndarray = field(default_factory=lambda: np.zeros(3))


def rot_x(deg: float) -> np.ndarray:
    """Rotation about the lateral axis; positive tips +y toward +z (flexion, leaning forward)."""
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(deg: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _axis_frame(axis: np.ndarray) -> np.ndarray:
    """A rotation whose local y is ``axis`` and whose local x stays as lateral as possible."""
    y = axis / np.linalg.norm(axis)
    x = np.array([1.0, 0.0, 0.0]) - y[0] * y
    x /= np.linalg.norm(x)
    z = np.cross(x, y)
    return np.stack([x, y, z], axis=1)


def _mix(palette: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    i = rng.uniform(0, len(palette) - 1)
    lo = int(math.floor(i))
    hi = min(lo + 1, len(palette) - 1)
    return palette[lo] * (1 - (i - lo)) + palette[hi] * (i - lo)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    import colorsys

    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v))


def sample_room(rng: np.random.Generator) -> Room:
    """A plausible indoor background: wall gradient, window, shelves, door, pictures, curtains."""
    wall = _hsv(rng.uniform(0, 1), rng.uniform(0.02, 0.3), rng.uniform(0.45, 0.95))
    bottom = np.clip(wall * rng.uniform(0.7, 1.05), 0, 1)
    items = []
    for _ in range(int(rng.integers(1, 5))):
        kind = str(rng.choice(["window", "shelf", "door", "picture", "curtain", "monitor", "lamp"]))
        x0, y0 = rng.uniform(-0.1, 0.9), rng.uniform(-0.1, 0.7)
        w, h = rng.uniform(0.08, 0.45), rng.uniform(0.1, 0.6)
        colour = _hsv(rng.uniform(0, 1), rng.uniform(0.0, 0.7), rng.uniform(0.1, 1.0))
        if kind == "window":
            colour = np.array([0.85, 0.92, 1.0]) * rng.uniform(0.85, 1.0)
        items.append((kind, (x0, y0, x0 + w, y0 + h), colour))
    return Room(
        wall_top=wall,
        wall_bottom=bottom,
        items=tuple(items),
        chair=bool(rng.random() < 0.5),
        chair_colour=_hsv(rng.uniform(0, 1), rng.uniform(0, 0.5), rng.uniform(0.05, 0.4)),
    )


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """One person: proportions, build, skin, hair, clothes, glasses, their room and furniture."""
    s = rng.uniform(0.88, 1.12)
    hue = rng.uniform(0, 1)
    clothes = _hsv(hue, rng.uniform(0.0, 0.85), rng.uniform(0.12, 0.95))
    # A pattern's second colour stays near the first: full-contrast black-and-white checks over a
    # whole torso hide the body's outline from a person detector, and few clothes look like that.
    clothes2 = 0.55 * clothes + 0.45 * _hsv(hue + rng.uniform(0.15, 0.85), rng.uniform(0.0, 0.8), rng.uniform(0.1, 1.0))
    return Appearance(
        scale=s,
        shoulder_half=s * rng.uniform(17.0, 21.0),
        torso_depth=s * rng.uniform(19.0, 25.0),
        neck_radius=s * rng.uniform(5.0, 6.3),
        tragus_dist=s * rng.uniform(12.0, 13.5),
        head_radii=(s * rng.uniform(7.2, 8.0), s * rng.uniform(10.5, 11.5), s * rng.uniform(9.5, 10.3)),
        skin=_mix(SKIN_TONES, rng) * rng.uniform(0.93, 1.05),
        hair=HAIR_COLOURS[int(rng.integers(len(HAIR_COLOURS)))] * rng.uniform(0.85, 1.1),
        hair_style=str(rng.choice(HAIR_STYLES)),
        clothes=clothes,
        clothes2=clothes2,
        pattern=str(rng.choice(PATTERNS)),
        pattern_period=s * rng.uniform(3.0, 9.0),
        glasses=bool(rng.random() < 0.35),
        glasses_colour=_hsv(rng.uniform(0, 1), rng.uniform(0, 0.6), rng.uniform(0.05, 0.5)),
        beard=bool(rng.random() < 0.15),
        room=sample_room(rng),
        trousers=_hsv(rng.uniform(0, 1), rng.uniform(0.0, 0.6), rng.uniform(0.08, 0.7)),
        long_sleeves=bool(rng.random() < 0.6),
        build=rng.uniform(0.85, 1.1),
        furniture=sample_furniture(rng),
    )


def sample_pose(cva_deg: float, rng: np.random.Generator, setting: str = "desk", view: str = "side") -> Pose:
    """The rest of the posture around a given CVA.

    The head's own position carries the label: the tragus moves forward of C7 as the CVA falls,
    and in the photos people take of it (typing, reading a phone) the head also tips down, up to
    28° at the lowest angles, as BlazePose measures on the real photos (``bench/synth_realism.py``:
    25° forward head vs 6° upright on the seated side views). The trunk's lean and the shoulders'
    protraction barely follow the angle: coupled to it (as an earlier version did, 12° of extra
    lean and 4 cm of rounded shoulders), they moved the shoulders forward with the head, so the
    nose no longer sat further ahead of the shoulders in forward-head pictures, unlike in the
    photographs, and a model trained on them misjudged upright webcam users. What the person looks
    at (a screen, a keyboard; a laptop's screen below its webcam) adds a few degrees either way;
    which side the camera stands on is independent of the posture.
    """
    slump = min(max((66.0 - cva_deg) / 34.0, 0.0), 1.0)
    if view == "front":  # in front of a laptop's webcam: looking at its screen, just below the camera
        gaze = rng.uniform(6.0, 18.0)
    else:
        gaze = rng.choice([0.0, 4.0, 10.0], p=[0.45, 0.35, 0.2]) if setting == "desk" else rng.choice([0.0, 8.0])
    lean_base = rng.uniform(2.0, 14.0) if setting == "desk" else rng.uniform(-3.0, 4.0)
    if setting == "desk":
        upper, fore = rng.uniform(15.0, 45.0), rng.uniform(70.0, 100.0)
    else:
        upper, fore = rng.uniform(-4.0, 10.0), rng.uniform(5.0, 35.0)
    return Pose(
        cva_deg=cva_deg,
        head_pitch_deg=float(gaze) + 28.0 * slump + rng.normal(0.0, 4.0),
        trunk_lean_deg=lean_base + rng.normal(0.0, 2.0),
        protraction=0.5 * slump + rng.uniform(0.0, 1.5),
        facing=1 if rng.random() < 0.5 else -1,
        setting=setting,
        upper_arm_deg=upper,
        forearm_deg=fore,
        head_turn_deg=rng.normal(0.0, 5.0),
    )


def _e(center, rot, radii, colour, **kw) -> Ellipsoid:  # type: ignore[no-untyped-def]
    return Ellipsoid(
        np.asarray(center, float),
        np.asarray(rot, float),
        np.asarray(radii, float),
        np.clip(np.asarray(colour, float), 0, 1),
        **kw,
    )


def limb(
    start: np.ndarray, end: np.ndarray, radius: float, colour: np.ndarray, overlap: float = 1.0, **kw: Any
) -> Ellipsoid:
    """A body segment from ``start`` to ``end``: an ellipsoid that reaches a little past both ends."""
    axis = np.asarray(end, float) - np.asarray(start, float)
    half = float(np.linalg.norm(axis)) / 2
    return _e(
        (np.asarray(start) + np.asarray(end)) / 2,
        _axis_frame(axis),
        (radius, half + overlap, radius * 0.95),
        colour,
        **kw,
    )


@dataclass(frozen=True)
class Skeleton:
    """The joints every part of the figure hangs on (world coordinates)."""

    c7: np.ndarray
    trunk_rot: np.ndarray
    shoulders: tuple[np.ndarray, np.ndarray]  # joint centres, left (-x) then right (+x)
    hips: tuple[np.ndarray, np.ndarray]
    seat_y: float  # height of what the pelvis rests on (desk setting)
    hands_y: float  # height of the palms (desk setting: the desk top)
    hands_z: float

    def trunk(self, p: tuple[float, float, float] | np.ndarray) -> np.ndarray:
        return self.c7 + self.trunk_rot @ np.asarray(p, float)


def _skeleton(app: Appearance, pose: Pose) -> Skeleton:
    """Joint centres. The shoulder joints sit level with C7 and at its depth, behind the chest's
    centre: higher and further back than an anatomy atlas puts the glenohumeral joint, but where
    BlazePose reads the shoulders of people in photographs relative to their ears and nose (placed
    lower and further forward, the synthetic heads read 0.1 shoulder widths higher than real ones
    of the same class, and a model trained on them calls upright people forward)."""
    s, sh = app.scale, app.shoulder_half
    rt = rot_x(pose.trunk_lean_deg)
    c7 = np.zeros(3)
    shoulders = tuple(
        c7 + rt @ np.array([lat * (sh - 3.0 * s), -1.0 * s, -1.0 * s + pose.protraction]) for lat in (-1, 1)
    )
    hips = tuple(c7 + rt @ np.array([lat * 9.0 * s, -52.0 * s, 9.0 * s]) for lat in (-1, 1))
    upper, fore = math.radians(pose.upper_arm_deg), math.radians(pose.forearm_deg)
    elbow = shoulders[1] + 29.0 * s * np.array([0.0, -math.cos(upper), math.sin(upper)])
    wrist = elbow + 25.0 * s * np.array([0.0, -math.cos(fore), math.sin(fore)])
    return Skeleton(
        c7=c7,
        trunk_rot=rt,
        shoulders=shoulders,
        hips=hips,
        seat_y=float(hips[0][1] - 8.0 * s),
        hands_y=float(wrist[1] - 2.0 * s),
        hands_z=float(wrist[2]),
    )


def _trunk(app: Appearance, sk: Skeleton) -> list[Ellipsoid]:
    """Clothed chest, belly and pelvis; the trapezius slopes from the neck to the shoulders."""
    s, sh, td, b = app.scale, app.shoulder_half, app.torso_depth / 2, app.build
    rt, cl, tr = sk.trunk_rot, app.clothes, app.trousers
    c7_z = app.neck_radius * 0.1
    return [
        _e(sk.trunk((0, -5.0 * s, 5.0 * s)), rt, (sh * 0.95, 4.2 * s, 5.2 * s), cl, clothing=True),
        _e(sk.trunk((0, -15.0 * s, td - 0.5 * s + c7_z)), rt, (sh * 0.86 * b, 11.5 * s, td * b), cl, clothing=True),
        _e(sk.trunk((0, -28.0 * s, td + 0.2 * s)), rt, (sh * 0.78 * b, 18.0 * s, td * 0.96 * b), cl, clothing=True),
        _e(sk.trunk((0, -48.0 * s, td * 0.85)), rt, (sh * 0.8 * b, 10.5 * s, td * 0.85 * b), tr),
    ]


def _arms(app: Appearance, pose: Pose, sk: Skeleton) -> list[Ellipsoid]:
    """Shoulders, upper arms, forearms and hands; at a desk the hands rest on it, else they hang."""
    s, b = app.scale, app.build
    upper, fore = math.radians(pose.upper_arm_deg), math.radians(pose.forearm_deg)
    sleeve = app.clothes
    forearm_colour = app.clothes if app.long_sleeves else app.skin
    prims = []
    for lat, shoulder in zip((-1, 1), sk.shoulders, strict=True):
        out = 0.12 if pose.setting == "standing" else 0.05
        d1 = np.array([lat * out, -math.cos(upper), math.sin(upper)])
        d1 /= np.linalg.norm(d1)
        elbow = shoulder + 29.0 * s * d1
        inward = -lat * (0.18 if pose.setting == "desk" else -0.03)
        d2 = np.array([inward, -math.cos(fore), math.sin(fore)])
        d2 /= np.linalg.norm(d2)
        wrist = elbow + 25.0 * s * d2
        prims.append(
            _e(
                shoulder + np.array([lat * -0.5 * s, -3.0 * s, 0.0]),
                sk.trunk_rot,
                (4.0 * s * b, 4.5 * s * b, 4.6 * s * b),
                sleeve,
                clothing=True,
            )
        )
        prims.append(limb(shoulder, elbow, 4.9 * s * b, sleeve, clothing=True))
        prims.append(_e(elbow, np.eye(3), (4.3 * s * b,) * 3, forearm_colour, clothing=app.long_sleeves))
        prims.append(limb(elbow, wrist, 3.9 * s * b, forearm_colour, clothing=app.long_sleeves))
        hand_end = wrist + 9.0 * s * d2
        frame = _axis_frame(hand_end - wrist)
        prims.append(_e((wrist + hand_end) / 2, frame, (4.2 * s, 5.2 * s, 1.6 * s), app.skin))
    return prims


def _legs(app: Appearance, pose: Pose, sk: Skeleton) -> list[Ellipsoid]:
    """Thighs, shins and shoes: forward and down on a chair, straight down when standing."""
    s, b = app.scale, app.build
    prims = []
    shoe = np.array([0.08, 0.07, 0.07]) + 0.5 * app.trousers * 0.3
    for lat, hip in zip((-1, 1), sk.hips, strict=True):
        if pose.setting == "desk":
            knee = hip + 43.0 * s * np.array([lat * 0.08, -0.08, 1.0]) / 1.0065
            ankle = knee + 44.0 * s * np.array([0.0, -1.0, -0.12])
        else:
            knee = hip + 44.0 * s * np.array([lat * 0.02, -1.0, 0.02])
            ankle = knee + 43.0 * s * np.array([0.0, -1.0, -0.03])
        prims.append(limb(hip, knee, 8.3 * s * b, app.trousers, overlap=3.0 * s))
        prims.append(limb(knee, ankle, 6.0 * s * b, app.trousers, overlap=2.0 * s))
        toe = ankle + np.array([0.0, -4.0 * s, 16.0 * s])
        prims.append(limb(ankle + np.array([0.0, -3.0 * s, -5.0 * s]), toe, 4.0 * s, shoe))
    return prims


def _head_frame(app: Appearance, pose: Pose) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Head centre, head rotation and the camera-side tragus, placed exactly on the CVA line.

    The head is built around the tragus (not the other way round), so a pitch or a small turn of
    the head never moves the labelled tragus off the line ``cva_deg`` above the horizontal.
    """
    s = app.scale
    rh = rot_y(pose.head_turn_deg) @ rot_x(pose.head_pitch_deg)
    a = math.radians(pose.cva_deg)
    from_head = rh @ np.array([pose.facing * app.head_radii[0] * 0.97, -1.0 * s, -1.8 * s])
    tragus = app.tragus_dist * np.array([0.0, math.sin(a), math.cos(a)])
    tragus[0] = from_head[0]
    return tragus - from_head, rh, tragus


def _neck(app: Appearance, sk: Skeleton, head: np.ndarray, rh: np.ndarray) -> list[Ellipsoid]:
    """Neck from just in front of C7 up under the back of the skull, so it bends with the head."""
    s, nr = app.scale, app.neck_radius
    base = sk.trunk((0, -3.0 * s, nr - 0.6 * s))
    top = head + rh @ np.array([0, -5.0 * s, -2.2 * s])
    mid = (base + top) / 2 + sk.trunk_rot @ np.array([0.0, 0.0, 0.8 * s])  # the lower neck's forward curve
    skin = app.skin * 0.95
    return [
        limb(base, mid, nr, skin, overlap=2.0 * s),
        limb(mid, top, nr * 0.95, skin, overlap=2.0 * s),
        _e(sk.trunk((0, -0.5 * s, nr * 0.9)), sk.trunk_rot, (nr * 0.95, 4.5 * s, nr * 0.9), skin),
    ]


def _face(app: Appearance, head: np.ndarray, rh: np.ndarray) -> list[Ellipsoid]:
    """Skull, jaw, ears (tragus at their front edge), eyes, brows, nose and mouth."""
    s = app.scale
    rx, ry, rz = app.head_radii
    ear_x = rx * 0.97
    skin = app.skin

    def hd(p):  # type: ignore[no-untyped-def]
        return head + rh @ np.asarray(p, float)

    jaw = hd((0, -5.8 * s, 3.0 * s))
    prims = [
        _e(head, rh, (rx, ry, rz), skin, shine=0.15),
        _e(jaw, rh, (rx * 0.75, 5.5 * s, 5.8 * s), skin, shine=0.1),
        _e(hd((0, -9.0 * s, 6.2 * s)), rh, (2.6 * s, 1.8 * s, 2.2 * s), skin),
    ]  # chin
    for lat in (-1, 1):
        prims.append(
            _e(
                hd((lat * (ear_x + 0.4 * s), -0.4 * s, -3.0 * s)),
                rh,
                (1.1 * s, 3.1 * s, 1.9 * s),
                skin * np.array([0.97, 0.88, 0.86]),
            )
        )
        prims.append(_e(hd((lat * ear_x, -1.0 * s, -1.6 * s)), rh, (0.8 * s, 0.9 * s, 0.7 * s), skin * 0.9))
        ex, ez = lat * 2.9 * s, rz * 0.9
        prims.append(_e(hd((ex, 0.4 * s, ez - 0.35 * s)), rh, (1.4 * s, 0.85 * s, 0.7 * s), (0.95, 0.95, 0.93)))
        prims.append(_e(hd((ex, 0.4 * s, ez + 0.15 * s)), rh, (0.6 * s, 0.6 * s, 0.3 * s), (0.12, 0.09, 0.07)))
        prims.append(_e(hd((ex, 2.4 * s, ez - 0.1 * s)), rh, (1.9 * s, 0.45 * s, 0.6 * s), app.hair * 0.9))
    prims.append(
        _e(hd((0, -2.6 * s, rz * 0.95 + 0.4 * s)), rh @ rot_x(12), (1.3 * s, 2.6 * s, 1.7 * s), skin * 0.97, shine=0.2)
    )
    prims.append(_e(hd((0, -6.4 * s, rz * 0.86)), rh, (2.2 * s, 0.55 * s, 0.8 * s), skin * np.array([0.8, 0.55, 0.55])))
    if app.glasses:
        g = app.glasses_colour
        for lat in (-1, 1):
            prims.append(_e(hd((lat * 2.9 * s, 0.4 * s, rz * 0.9 + 0.9 * s)), rh, (2.0 * s, 1.5 * s, 0.25 * s), g))
            front = np.array([lat * 4.6 * s, 0.6 * s, rz * 0.78])
            back = np.array([lat * (ear_x + 0.25 * s), 0.6 * s, -1.8 * s])
            prims.append(_e(hd((front + back) / 2), rh, (0.3 * s, 0.3 * s, float(np.linalg.norm(front - back)) / 2), g))
        prims.append(_e(hd((0, 0.7 * s, rz * 0.95 + 0.6 * s)), rh, (1.2 * s, 0.3 * s, 0.3 * s), g))
    return prims + _hair(app, head, rh, jaw)


def _hair(app: Appearance, head: np.ndarray, rh: np.ndarray, jaw: np.ndarray) -> list[Ellipsoid]:
    s = app.scale
    rx, ry, rz = app.head_radii
    hair, style = app.hair, app.hair_style
    prims = []

    def hd(p):  # type: ignore[no-untyped-def]
        return head + rh @ np.asarray(p, float)

    if style != "bald":
        grow = 0.3 * s if style == "buzz" else 0.8 * s
        hairline = np.array([0.0, 1.0, -0.7]) / math.hypot(1.0, 0.7)
        prims.append(
            _e(
                hd((0, 0.9 * s, -0.6 * s)),
                rh,
                (rx + grow, ry + grow, rz + grow * 0.6),
                hair,
                clip=(hairline, 0.1),
                shine=0.25,
            )
        )
        if style == "ponytail":
            prims.append(_e(hd((0, -5.0 * s, -rz + 0.2 * s)), rh @ rot_x(20), (2.4 * s, 7.0 * s, 2.4 * s), hair))
        elif style == "bun":
            prims.append(_e(hd((0, 5.5 * s, -rz + 0.5 * s)), rh, (3.5 * s, 3.2 * s, 3.2 * s), hair))
        elif style == "long":  # down the back of the head to the neck, behind the ears
            prims.append(
                _e(
                    hd((0, -4.0 * s, -3.5 * s)),
                    rh,
                    (rx + 1.0 * s, 9.0 * s, 6.5 * s),
                    hair,
                    clip=(np.array([0.0, 0.0, -1.0]), 0.05),
                )
            )
    if app.beard:
        prims.append(
            _e(
                jaw + rh @ np.array([0, -0.5 * s, 0.3 * s]),
                rh,
                (rx * 0.8, 5.9 * s, 6.1 * s),
                hair * 0.9,
                clip=(np.array([0.0, -0.8, 0.6]), 0.15),
            )
        )
    return prims


def build_figure(app: Appearance, pose: Pose) -> tuple[list[Ellipsoid], np.ndarray, np.ndarray, Skeleton, float]:
    """Primitives of the posed person, the 3-D tragus and C7, the skeleton and the head's height.

    The side-view camera sits on side ``pose.facing``; that ear's tragus is the labelled one.
    """
    sk = _skeleton(app, pose)
    head, rh, tragus = _head_frame(app, pose)
    prims = _trunk(app, sk) + _arms(app, pose, sk) + _legs(app, pose, sk) + _neck(app, sk, head, rh)
    prims += _face(app, head, rh)
    return prims, tragus, sk.c7, sk, float(head[1])


def _look_at(position: np.ndarray, target: np.ndarray, roll_deg: float = 0.0) -> np.ndarray:
    """World→camera rotation rows (right, down, forward) looking from ``position`` to ``target``."""
    fwd = target - position
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, np.array([0.0, 1.0, 0.0]))
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    if roll_deg:
        a = math.radians(roll_deg)
        right, down = right * math.cos(a) + down * math.sin(a), -right * math.sin(a) + down * math.cos(a)
    return np.stack([right, down, fwd])


def _framing(view: str, setting: str, s: float, rng: np.random.Generator) -> tuple[float, np.ndarray]:
    """World cm the image height spans, and the point put near the image centre.

    As photographs frame people: a webcam shows head, shoulders and chest; a seated side photo the
    person from head to seat; a standing side photo the whole body.
    """
    if view == "front":
        return s * rng.uniform(65.0, 105.0), np.array([0.0, rng.uniform(-10.0, 2.0) * s, rng.uniform(6.0, 10.0) * s])
    if view == "oblique" and setting == "desk":
        return s * rng.uniform(150.0, 190.0), np.array([0.0, rng.uniform(-30.0, -16.0) * s, rng.uniform(5.0, 20.0) * s])
    if setting == "standing":
        return s * rng.uniform(210.0, 250.0), np.array([0.0, rng.uniform(-64.0, -54.0) * s, 5.0 * s])
    return s * rng.uniform(125.0, 170.0), np.array([0.0, rng.uniform(-30.0, -16.0) * s, rng.uniform(5.0, 20.0) * s])


def sample_camera(
    view: str,
    app: Appearance,
    pose: Pose,
    width: int,
    height: int,
    rng: np.random.Generator,
    sk: Skeleton | None = None,
) -> Camera:
    """Frame the person; the framing is anchored on the body, never at the head, so the head moves.

    Side: a level camera square to the body (no roll, yaw and tilt within 1°, as in clinical
    photogrammetry) with its optical axis through C7, so perspective only scales the tragus
    radially about C7 and the 2-D angle from the projected tragus and C7 matches the CVA; the body
    is placed in the frame by shifting the principal point (a crop). Oblique: the same, turned
    35–60° towards the face and looking down a little, over the desk. Why not from 25°: a
    forward head tips down at the keyboard, and from nearer the profile its face turns away from
    the camera, which BlazePose needs to find a person (300 oblique pictures, seed 7: found 93 %
    with 25–55°, 96 % with 35–60°; seed 11: 96 % and 97 %). Front: a webcam at a laptop (below the
    eyes) or on a monitor (near eye level), close enough that a head coming forward looks bigger;
    with ``sk`` (a seated subject) it stays beyond the hands and above the desk top, where a
    screen's webcam is.
    """
    s = app.scale
    frame_h, frame_point = _framing(view, pose.setting, s, rng)
    if view in ("side", "oblique"):
        dist = rng.uniform(1.6, 2.4) * frame_h + 40.0
        if view == "side":
            target = np.zeros(3)
            yaw, tilt = math.radians(rng.uniform(-1.0, 1.0)), math.radians(rng.uniform(-1.0, 1.0))
        else:
            target = np.array([0.0, rng.uniform(-25.0, 5.0) * s, 5.0 * s])
            yaw, tilt = math.radians(rng.uniform(35.0, 60.0)), math.radians(rng.uniform(2.0, 14.0))
        direction = np.array([pose.facing * math.cos(yaw), 0.0, math.sin(yaw)])
        position = target + dist * (direction * math.cos(tilt) + np.array([0.0, math.sin(tilt), 0.0]))
        rot = _look_at(position, target)
    else:
        target = frame_point
        yaw = math.radians(rng.uniform(-12.0, 12.0))
        if sk is not None:  # a webcam on the desk's screen: beyond the hands, above the desk top
            dist = max(rng.uniform(0.75, 1.05) * frame_h, sk.hands_z + rng.uniform(18.0, 30.0) - target[2])
            lowest = math.asin(min(max((sk.hands_y + 14.0 - target[1]) / dist, -0.5), 0.2))
            elev = max(math.radians(rng.uniform(-14.0, 4.0)), lowest + math.radians(rng.uniform(0.0, 4.0)))
        else:
            dist = rng.uniform(0.75, 1.05) * frame_h
            elev = math.radians(rng.uniform(-14.0, 4.0))
        direction = np.array([math.sin(yaw) * math.cos(elev), math.sin(elev), math.cos(yaw) * math.cos(elev)])
        position = target + dist * direction
        rot = _look_at(position, target, roll_deg=rng.uniform(-3.0, 3.0))
    focal = height * dist / frame_h
    centred = Camera(position=position, rot=rot, focal=focal, cx=0.0, cy=0.0, width=width, height=height)
    fu, fv = centred.project(frame_point)
    cx = width / 2 + rng.uniform(-0.08, 0.08) * width - fu
    cy = height / 2 + rng.uniform(-0.05, 0.05) * height - fv
    return Camera(position=position, rot=rot, focal=focal, cx=cx, cy=cy, width=width, height=height)


def sample_lighting(camera: Camera, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, float]]:
    """A key light from the camera's half-space, plus ambient and fill levels."""
    toward_cam = -camera.rot[2]
    d = toward_cam + rng.normal(0.0, 0.6, 3) + np.array([0.0, rng.uniform(0.2, 1.0), 0.0])
    d /= np.linalg.norm(d)
    return d, {"key": rng.uniform(0.55, 0.85), "ambient": rng.uniform(0.25, 0.42), "fill": rng.uniform(0.05, 0.2)}


def sample_setting(view: str, rng: np.random.Generator) -> str:
    """Webcams see people at a desk; side and oblique photos show them seated or standing."""
    if view == "front":
        return "desk"
    return "desk" if rng.random() < 0.6 else "standing"


def build_scene(view: str, cva_deg: float, app: Appearance, width: int, height: int, rng: np.random.Generator) -> Scene:
    """Pose the subject at ``cva_deg`` and frame them from ``view`` ("side", "oblique" or "front")."""
    pose = sample_pose(cva_deg, rng, sample_setting(view, rng), view)
    prims, tragus, c7, sk, head_y = build_figure(app, pose)
    if app.furniture is not None and pose.setting == "desk":
        prims += build_furniture(
            app.furniture,
            app.scale,
            seat_y=sk.seat_y,
            hands_y=sk.hands_y,
            hands_z=sk.hands_z,
            hip_z=float(sk.hips[0][2]),
            head_y=head_y,
            screen=view == "side",
        )
    camera = sample_camera(view, app, pose, width, height, rng, sk if pose.setting == "desk" else None)
    light_dir, light = sample_lighting(camera, rng)
    return Scene(
        primitives=prims,
        camera=camera,
        light_dir=light_dir,
        light=light,
        tragus=tragus,
        c7=c7,
        room=app.room,
        view=view,
        pattern=app.pattern,
        pattern_period=app.pattern_period,
        colour2=app.clothes2,
    )
