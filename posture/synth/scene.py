"""The 3-D figure: who the subject is, how they hold their head, and where the camera stands.

The craniovertebral angle is *the* pose parameter: the tragus is placed at distance ``L`` from C7
along a line ``cva_deg`` above the horizontal (in the sagittal plane), and the head, ear, neck and
face are built around that point. Trunk flexion and rounded shoulders follow the angle loosely
(see :func:`sample_pose`); appearance, camera and light are drawn independently of it, so that
posture is what separates the classes.

World frame: centimetres, C7 at the origin, +y up, +z the way the subject faces, +x lateral.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

SKIN_TONES = np.array([  # light to dark anchors; a subject's tone is interpolated between two neighbours
    (0.98, 0.85, 0.74), (0.93, 0.76, 0.62), (0.85, 0.64, 0.48), (0.72, 0.50, 0.35),
    (0.55, 0.36, 0.24), (0.40, 0.26, 0.17), (0.28, 0.18, 0.12),
])
HAIR_COLOURS = np.array([
    (0.07, 0.06, 0.05), (0.20, 0.13, 0.08), (0.38, 0.24, 0.13), (0.62, 0.47, 0.28),
    (0.85, 0.72, 0.45), (0.55, 0.23, 0.10), (0.62, 0.62, 0.62), (0.88, 0.88, 0.86),
])
HAIR_STYLES = ("short", "short", "buzz", "ponytail", "bun", "bald")
PATTERNS = ("solid", "solid", "stripes", "checks", "two_tone")


@dataclass(frozen=True)
class Ellipsoid:
    """One shaded primitive. ``rot`` columns are its local axes in world coordinates.

    ``clip`` keeps only the surface where ``dot(normal, p) >= offset`` for ``p`` in the unit-sphere
    frame: hair that stops at a hairline, a beard that covers only the jaw.
    """

    center: np.ndarray
    rot: np.ndarray
    radii: np.ndarray
    colour: np.ndarray
    clip: tuple[np.ndarray, float] | None = None
    clothing: bool = False
    shine: float = 0.0


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
    room: "Room"


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
    return Room(wall_top=wall, wall_bottom=bottom, items=tuple(items), chair=bool(rng.random() < 0.5),
                chair_colour=_hsv(rng.uniform(0, 1), rng.uniform(0, 0.5), rng.uniform(0.05, 0.4)))


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """One person: proportions, skin, hair, clothes, glasses, and the room they are pictured in."""
    s = rng.uniform(0.88, 1.12)
    hue = rng.uniform(0, 1)
    clothes = _hsv(hue, rng.uniform(0.0, 0.85), rng.uniform(0.12, 0.95))
    clothes2 = _hsv(hue + rng.uniform(0.15, 0.85), rng.uniform(0.0, 0.8), rng.uniform(0.1, 1.0))
    return Appearance(
        scale=s,
        shoulder_half=s * rng.uniform(17.0, 22.0),
        torso_depth=s * rng.uniform(19.0, 25.0),
        neck_radius=s * rng.uniform(5.0, 6.3),
        tragus_dist=s * rng.uniform(16.0, 17.5),
        head_radii=(s * rng.uniform(7.0, 8.0), s * rng.uniform(10.3, 11.5), s * rng.uniform(9.3, 10.3)),
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
    )


def sample_pose(cva_deg: float, rng: np.random.Generator) -> Pose:
    """The rest of the posture around a given CVA.

    A head carried forward is usually also flexed (chin down, the "text neck") and comes with a
    slumped upper back and rounded shoulders (they are associated clinically), so head flexion,
    trunk flexion and shoulder protraction grow smoothly as the CVA falls, from the angle itself
    rather than the label, with independent scatter on top. Which side the camera stands on is
    independent of the posture.
    """
    slump = min(max((66.0 - cva_deg) / 34.0, 0.0), 1.0)
    return Pose(cva_deg=cva_deg, head_pitch_deg=16.0 * slump + rng.normal(0.0, 4.0),
                trunk_lean_deg=15.0 * slump + rng.normal(0.0, 2.0),
                protraction=4.0 * slump + rng.uniform(0.0, 1.0), facing=1 if rng.random() < 0.5 else -1)


def _e(center, rot, radii, colour, **kw) -> Ellipsoid:  # type: ignore[no-untyped-def]
    return Ellipsoid(np.asarray(center, float), np.asarray(rot, float), np.asarray(radii, float),
                     np.clip(np.asarray(colour, float), 0, 1), **kw)


def build_figure(app: Appearance, pose: Pose) -> tuple[list[Ellipsoid], np.ndarray, np.ndarray]:
    """Primitives of the posed upper body, and the 3-D tragus (camera-side ear) and C7 points.

    The side-view camera sits on side ``pose.facing``; that ear's tragus is the labelled one.
    """
    s = app.scale
    c7 = np.zeros(3)
    rt = rot_x(pose.trunk_lean_deg)
    rh = rot_x(pose.head_pitch_deg)
    rx, ry, rz = app.head_radii
    side = float(pose.facing)
    prims: list[Ellipsoid] = []

    def trunk(p):  # type: ignore[no-untyped-def]
        return c7 + rt @ np.asarray(p, float)

    # Trunk, clothed: trapezius slopes from the neck to the shoulders; chest, belly, shoulders, arms.
    sh, td, pr = app.shoulder_half, app.torso_depth / 2, pose.protraction
    cl = app.clothes
    prims.append(_e(trunk((0, -6.0 * s, 3.8 * s)), rt, (sh * 0.78, 5.2 * s, 5.2 * s), cl, clothing=True))
    prims.append(_e(trunk((0, -17.5 * s, td - 1.0 * s + pr * 0.3)), rt, (sh * 0.88, 12.5 * s, td), cl, clothing=True))
    prims.append(_e(trunk((0, -38 * s, td - 0.5 * s)), rt, (sh * 0.8, 22 * s, td * 0.95), cl, clothing=True))
    for lat in (-1, 1):
        prims.append(_e(trunk((lat * (sh - 5.0 * s), -10.0 * s, 5.0 * s + pr)), rt, (6.0 * s, 6.0 * s, 6.5 * s), cl,
                        clothing=True))
        arm_rot = rt @ rot_x(-8.0) @ np.array([[math.cos(lat * 0.08), -math.sin(lat * 0.08), 0],
                                                [math.sin(lat * 0.08), math.cos(lat * 0.08), 0], [0, 0, 1]])
        prims.append(_e(trunk((lat * (sh - 4.5 * s), -26 * s, 5.0 * s + pr)), arm_rot, (5.2 * s, 15 * s, 5.2 * s), cl,
                        clothing=True))

    # Head: the tragus lies L from C7 at the CVA above horizontal; the skull is built around it.
    a = math.radians(pose.cva_deg)
    tragus_mid = c7 + app.tragus_dist * np.array([0.0, math.sin(a), math.cos(a)])
    head = tragus_mid + rh @ np.array([0.0, 1.0 * s, 1.8 * s])
    ear_x = rx * 0.97

    def hd(p):  # type: ignore[no-untyped-def]
        return head + rh @ np.asarray(p, float)

    skin = app.skin
    tragus = hd((side * ear_x, -1.0 * s, -1.8 * s))
    prims.append(_e(head, rh, (rx, ry, rz), skin, shine=0.15))
    jaw = hd((0, -5.8 * s, 3.0 * s))
    prims.append(_e(jaw, rh, (rx * 0.75, 5.5 * s, 5.8 * s), skin, shine=0.1))

    # Neck: from just in front of C7 up under the back of the skull, so it tilts with the head.
    base = trunk((0, -3.0 * s, app.neck_radius - 0.6 * s))
    top = hd((0, -5.0 * s, -2.2 * s))
    axis = top - base
    length = float(np.linalg.norm(axis))
    prims.append(_e((base + top) / 2, _axis_frame(axis), (app.neck_radius, length / 2 + 2.5 * s,
                                                           app.neck_radius * 0.95), skin * 0.95))
    # Nape: the neck's root, whose back surface passes through C7 (the vertebra prominens).
    nr = app.neck_radius
    prims.append(_e(trunk((0, -0.5 * s, nr * 0.9)), rt, (nr * 0.95, 4.5 * s, nr * 0.9), skin * 0.95))

    for lat in (-1, 1):  # ears, with the tragus at their front edge
        prims.append(_e(hd((lat * (ear_x + 0.4 * s), -0.4 * s, -3.0 * s)), rh, (1.1 * s, 3.1 * s, 1.9 * s),
                        skin * np.array([0.97, 0.88, 0.86])))
        prims.append(_e(hd((lat * ear_x, -1.0 * s, -1.6 * s)), rh, (0.8 * s, 0.9 * s, 0.7 * s), skin * 0.9))

    # Face: eyes, brows, nose, mouth.
    for lat in (-1, 1):
        ex = lat * 2.9 * s
        ez = rz * 0.9
        prims.append(_e(hd((ex, 0.4 * s, ez - 0.35 * s)), rh, (1.4 * s, 0.85 * s, 0.7 * s), (0.95, 0.95, 0.93)))
        prims.append(_e(hd((ex, 0.4 * s, ez + 0.15 * s)), rh, (0.6 * s, 0.6 * s, 0.3 * s), (0.12, 0.09, 0.07)))
        prims.append(_e(hd((ex, 2.4 * s, ez - 0.1 * s)), rh, (1.9 * s, 0.45 * s, 0.6 * s), app.hair * 0.9))
    prims.append(_e(hd((0, -2.6 * s, rz * 0.95 + 0.4 * s)), rh @ rot_x(12), (1.3 * s, 2.6 * s, 1.7 * s), skin * 0.97,
                    shine=0.2))
    prims.append(_e(hd((0, -8.0 * s, 3.0 * s + 5.3 * s)), rh, (2.2 * s, 0.55 * s, 0.7 * s),
                    skin * np.array([0.85, 0.6, 0.6])))

    if app.glasses:
        g = app.glasses_colour
        for lat in (-1, 1):
            prims.append(_e(hd((lat * 2.9 * s, 0.4 * s, rz * 0.9 + 0.9 * s)), rh, (2.0 * s, 1.5 * s, 0.25 * s), g))
            front = np.array([lat * 4.6 * s, 0.6 * s, rz * 0.78])
            back = np.array([lat * (ear_x + 0.25 * s), 0.6 * s, -1.8 * s])
            prims.append(_e(hd((front + back) / 2), rh, (0.3 * s, 0.3 * s, float(np.linalg.norm(front - back)) / 2), g))
        prims.append(_e(hd((0, 0.7 * s, rz * 0.95 + 0.6 * s)), rh, (1.2 * s, 0.3 * s, 0.3 * s), g))

    hair = app.hair
    style = app.hair_style
    if style != "bald":
        grow = 0.3 * s if style == "buzz" else 0.8 * s
        hairline = np.array([0.0, 1.0, -0.7]) / math.hypot(1.0, 0.7)
        prims.append(_e(hd((0, 0.9 * s, -0.6 * s)), rh, (rx + grow, ry + grow, rz + grow * 0.6), hair,
                        clip=(hairline, 0.1), shine=0.25))
        if style == "ponytail":
            prims.append(_e(hd((0, -5.0 * s, -rz + 0.2 * s)), rh @ rot_x(20), (2.4 * s, 7.0 * s, 2.4 * s), hair))
        elif style == "bun":
            prims.append(_e(hd((0, 5.5 * s, -rz + 0.5 * s)), rh, (3.5 * s, 3.2 * s, 3.2 * s), hair))
    if app.beard:
        prims.append(_e(jaw + rh @ np.array([0, -0.5 * s, 0.3 * s]), rh, (rx * 0.8, 5.9 * s, 6.1 * s), hair * 0.9,
                        clip=(np.array([0.0, -0.8, 0.6]), 0.15)))
    return prims, tragus, c7


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


def sample_camera(view: str, app: Appearance, pose: Pose, width: int, height: int,
                  rng: np.random.Generator) -> Camera:
    """Frame the upper body; the framing is anchored at C7, never at the head, so the head moves.

    Side: a level camera square to the body (no roll, yaw and tilt within 1°, as in clinical
    photogrammetry) so the 2-D angle from the projected tragus and C7 matches the CVA. Front: a
    laptop webcam at or below eye level, close enough that a head coming forward looks bigger.
    """
    s = app.scale
    frame_h = s * rng.uniform(46.0, 62.0)  # world cm the image height spans at the target distance
    if view == "side":
        # Optical axis through C7: perspective then scales the tragus radially about C7, which keeps
        # the angle; the body is placed in the frame by shifting the principal point (a crop).
        target = np.zeros(3)
        frame_point = np.array([0.0, rng.uniform(3.0, 7.0) * s, rng.uniform(5.0, 9.0) * s])
        dist = rng.uniform(180.0, 320.0)
        yaw = math.radians(rng.uniform(-1.0, 1.0))
        tilt = math.radians(rng.uniform(-1.0, 1.0))
        direction = np.array([pose.facing * math.cos(yaw), 0.0, math.sin(yaw)])
        position = target + dist * (direction * math.cos(tilt) + np.array([0.0, math.sin(tilt), 0.0]))
        rot = _look_at(position, target)
    else:
        target = np.array([0.0, rng.uniform(4.0, 12.0) * s, rng.uniform(6.0, 10.0) * s])
        frame_point = target
        dist = rng.uniform(40.0, 65.0)
        yaw = math.radians(rng.uniform(-8.0, 8.0))
        elev = math.radians(rng.uniform(-8.0, 2.0))
        direction = np.array([math.sin(yaw) * math.cos(elev), math.sin(elev), math.cos(yaw) * math.cos(elev)])
        position = target + dist * direction
        rot = _look_at(position, target, roll_deg=rng.uniform(-3.0, 3.0))
    focal = height * dist / frame_h
    centred = Camera(position=position, rot=rot, focal=focal, cx=0.0, cy=0.0, width=width, height=height)
    fu, fv = centred.project(frame_point)
    cx = width / 2 + rng.uniform(-0.06, 0.06) * width - fu
    cy = height / 2 + rng.uniform(-0.05, 0.05) * height - fv
    return Camera(position=position, rot=rot, focal=focal, cx=cx, cy=cy, width=width, height=height)


def sample_lighting(camera: Camera, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, float]]:
    """A key light from the camera's half-space, plus ambient and fill levels."""
    toward_cam = -camera.rot[2]
    d = toward_cam + rng.normal(0.0, 0.6, 3) + np.array([0.0, rng.uniform(0.2, 1.0), 0.0])
    d /= np.linalg.norm(d)
    return d, {"key": rng.uniform(0.5, 0.8), "ambient": rng.uniform(0.2, 0.4), "fill": rng.uniform(0.0, 0.2)}


def build_scene(view: str, cva_deg: float, app: Appearance, width: int, height: int,
                rng: np.random.Generator) -> Scene:
    """Pose the subject at ``cva_deg`` and frame them from ``view`` ("side" or "front")."""
    pose = sample_pose(cva_deg, rng)
    prims, tragus, c7 = build_figure(app, pose)
    camera = sample_camera(view, app, pose, width, height, rng)
    light_dir, light = sample_lighting(camera, rng)
    return Scene(primitives=prims, camera=camera, light_dir=light_dir, light=light, tragus=tragus, c7=c7,
                 room=app.room, view=view, pattern=app.pattern, pattern_period=app.pattern_period,
                 colour2=app.clothes2)
