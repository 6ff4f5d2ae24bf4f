"""Desk, chair, keyboard and screen around a seated subject: boxes placed from the skeleton.

Why furniture at all: a person at a desk is what a posture webcam and the seated clinical photo
show, and the desk edge, the chair back and the screen are part of what a person detector sees
around a seated body. They are placed from the body (the palms rest on the desk top, the pelvis on
the seat), so they never float or cut through the figure, and their look is drawn per subject.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posture.synth.primitives import Ellipsoid

WOOD = np.array(
    [(0.55, 0.38, 0.22), (0.72, 0.55, 0.36), (0.85, 0.78, 0.66), (0.3, 0.2, 0.12), (0.9, 0.9, 0.88), (0.2, 0.2, 0.22)]
)


@dataclass(frozen=True)
class Furniture:
    """One subject's desk and chair, kept across their pictures."""

    desk_colour: np.ndarray
    desk_depth: float
    chair_colour: np.ndarray
    chair_back: bool
    screen: str  # "monitor" or "laptop"
    keyboard_colour: np.ndarray


def sample_furniture(rng: np.random.Generator) -> Furniture:
    return Furniture(
        desk_colour=WOOD[int(rng.integers(len(WOOD)))] * rng.uniform(0.85, 1.1),
        desk_depth=float(rng.uniform(55.0, 80.0)),
        chair_colour=np.array([0.1, 0.1, 0.12]) + rng.uniform(0.0, 0.35, 3),
        chair_back=bool(rng.random() < 0.8),
        screen=str(rng.choice(["monitor", "laptop"])),
        keyboard_colour=np.array([0.1, 0.1, 0.1]) + rng.uniform(0.0, 0.8) * np.ones(3),
    )


def _box(
    center: tuple[float, float, float],
    half: tuple[float, float, float],
    colour: np.ndarray,
    rot: np.ndarray | None = None,
) -> Ellipsoid:
    return Ellipsoid(
        np.asarray(center, float),
        np.eye(3) if rot is None else rot,
        np.asarray(half, float),
        np.clip(np.asarray(colour, float), 0, 1),
        box=True,
    )


def build_furniture(
    f: Furniture, s: float, *, seat_y: float, hands_y: float, hands_z: float, hip_z: float, head_y: float, screen: bool
) -> list[Ellipsoid]:
    """Boxes of the desk (top, legs), keyboard, chair (seat, back, post) and, unless the
    camera is the screen's own webcam (``screen=False``), a monitor or laptop lid."""
    floor_y = seat_y - 47.0 * s
    top_y, front_z = hands_y - 1.2, hands_z - 14.0
    depth = f.desk_depth if screen else min(f.desk_depth, 40.0)  # a webcam's desk ends at its screen
    desk = f.desk_colour
    prims = [
        _box((0.0, top_y, front_z + depth / 2), (65.0, 1.5, depth / 2), desk),
        _box((0.0, hands_y + 0.2, hands_z + 2.0), (21.0, 1.0, 7.0), f.keyboard_colour),
    ]
    for lat in (-1, 1):  # four legs
        for z in (front_z + 3.0, front_z + depth - 3.0):
            prims.append(_box((lat * 61.0, (top_y + floor_y) / 2, z), (2.0, (top_y - floor_y) / 2, 2.0), desk * 0.8))
    chair = f.chair_colour
    prims.append(_box((0.0, seat_y - 3.0, hip_z + 4.0), (23.0, 3.0, 22.0), chair))
    prims.append(
        _box((0.0, (seat_y - 6.0 + floor_y) / 2, hip_z + 4.0), (2.5, (seat_y - 6.0 - floor_y) / 2, 2.5), chair * 0.7)
    )
    if f.chair_back:
        prims.append(_box((0.0, seat_y + 30.0 * s, hip_z - 18.0 * s), (21.0, 20.0 * s, 2.5), chair))
    if screen:
        far = front_z + min(depth - 5.0, 45.0)
        if f.screen == "monitor":
            prims.append(_box((0.0, head_y - 6.0, far), (27.0, 16.0, 1.5), np.array([0.06, 0.06, 0.07])))
            prims.append(
                _box(
                    (0.0, (head_y - 22.0 + top_y) / 2, far + 2.0),
                    (2.5, (head_y - 22.0 - top_y) / 2, 1.5),
                    np.array([0.15, 0.15, 0.16]),
                )
            )
        else:
            tilt = np.array([[1.0, 0.0, 0.0], [0.0, 0.97, 0.26], [0.0, -0.26, 0.97]])
            prims.append(
                _box((0.0, top_y + 12.0, hands_z + 14.0), (16.0, 11.0, 0.7), np.array([0.5, 0.5, 0.52]), rot=tilt)
            )
    return prims
