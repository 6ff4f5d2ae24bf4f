"""The craniovertebral angle: the number every angle-derived label rests on."""

from __future__ import annotations

import math

import numpy as np
import pytest

from posture.data.cva import DEFAULT_CVA_THRESHOLD_DEG, craniovertebral_angle, label_from_cva
from posture.data.labels import FORWARD_HEAD, NORMAL


@pytest.mark.parametrize(
    ("ear", "c7", "expected"),
    [
        ((10, 0), (0, 10), 45.0),  # ear up and to the right
        ((0, 0), (0, 10), 90.0),  # ear straight above C7: perfectly upright
        ((10, 10), (0, 10), 0.0),  # ear level with C7: head fully forward
        ((300, 127), (0, 300), math.degrees(math.atan2(173, 300))),
        ((100 + 100 * math.cos(math.radians(30)), 500 - 100 * math.sin(math.radians(30))), (100, 500), 30.0),
        ((100 + 100 * math.cos(math.radians(55)), 500 - 100 * math.sin(math.radians(55))), (100, 500), 55.0),
    ],
)
def test_known_points_give_known_angle(ear: tuple[float, float], c7: tuple[float, float], expected: float) -> None:
    assert craniovertebral_angle(*ear, *c7) == pytest.approx(expected, abs=1e-9)


def test_y_axis_points_down() -> None:
    """In image pixels a *smaller* y is higher up: an ear with smaller y than C7 is above it."""
    above = craniovertebral_angle(ear_x=50, ear_y=20, c7_x=0, c7_y=70)
    below = craniovertebral_angle(ear_x=50, ear_y=120, c7_x=0, c7_y=70)
    assert above == pytest.approx(45.0)
    assert below == pytest.approx(-45.0)  # a mis-click, reported as a negative angle


def test_either_facing_direction_gives_the_same_angle() -> None:
    facing_right = craniovertebral_angle(160, 40, 100, 100)
    facing_left = craniovertebral_angle(40, 40, 100, 100)
    assert facing_right == pytest.approx(facing_left) == pytest.approx(45.0)


def test_mirror_translation_and_uniform_scale_keep_the_angle() -> None:
    """Why clicks on a downscaled or mirrored copy still measure the original photo correctly."""
    rng = np.random.default_rng(0)
    width = 1000.0
    for _ in range(200):
        ex, ey, cx, cy = rng.uniform(0, width, size=4)
        base = craniovertebral_angle(ex, ey, cx, cy)
        assert craniovertebral_angle(width - ex, ey, width - cx, cy) == pytest.approx(base, abs=1e-9)
        dx, dy = rng.uniform(-300, 300, size=2)
        assert craniovertebral_angle(ex + dx, ey + dy, cx + dx, cy + dy) == pytest.approx(base, abs=1e-9)
        s = rng.uniform(0.1, 5)
        assert craniovertebral_angle(ex * s, ey * s, cx * s, cy * s) == pytest.approx(base, abs=1e-9)
        assert -90.0 <= base <= 90.0


def test_angle_grows_as_the_head_moves_back_over_the_trunk() -> None:
    angles = [craniovertebral_angle(c7x_offset, 0, 0, 100) for c7x_offset in (200, 100, 50, 10, 0)]
    assert angles == sorted(angles)
    assert angles[-1] == pytest.approx(90.0)


def test_coincident_points_are_rejected() -> None:
    with pytest.raises(ValueError, match="same point"):
        craniovertebral_angle(5, 5, 5, 5)


def test_straight_below_is_minus_ninety() -> None:
    assert craniovertebral_angle(0, 10, 0, 0) == pytest.approx(-90.0)


def test_threshold_boundary() -> None:
    """Below the threshold is forward head; exactly at it is normal."""
    assert DEFAULT_CVA_THRESHOLD_DEG == 50.0
    assert label_from_cva(49.99) == FORWARD_HEAD
    assert label_from_cva(50.0) == NORMAL
    assert label_from_cva(63.0) == NORMAL
    assert label_from_cva(-10.0) == FORWARD_HEAD
    assert label_from_cva(49.0, threshold_deg=48.0) == NORMAL
    assert label_from_cva(47.9, threshold_deg=48.0) == FORWARD_HEAD
