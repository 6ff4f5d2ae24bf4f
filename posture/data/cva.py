"""Craniovertebral angle (CVA): the clinical measure of forward head posture.

CVA is the angle at C7 between the horizontal and the line from C7 to the ear's tragus, on a
side view. Image coordinates have y pointing *down*, so "up" is negative y; the angle does not
depend on which way the person faces. A small CVA means the head sits forward of the trunk.
"""

from __future__ import annotations

import math

DEFAULT_CVA_THRESHOLD_DEG = 50.0
#: The angles a seated or standing person can show: 90° is the ear straight above C7; below 0°
#: the ear would sit below C7, which is a mis-click or a typo, not a posture. Labels outside
#: this range are rejected by ``posture.ingest`` rather than turned into a class.
PLAUSIBLE_CVA_DEG = (0.0, 90.0)


def plausible_cva(cva_deg: float) -> bool:
    """True when ``cva_deg`` lies in :data:`PLAUSIBLE_CVA_DEG` (both ends included)."""
    return PLAUSIBLE_CVA_DEG[0] <= cva_deg <= PLAUSIBLE_CVA_DEG[1]


def craniovertebral_angle(ear_x: float, ear_y: float, c7_x: float, c7_y: float) -> float:
    """CVA in degrees from the tragus and C7 in image pixels (y down), in [-90, 90].

    The angle is measured from whichever horizontal direction the face points (only the
    horizontal distance counts), so it is the same under a mirror flip. 90° means the ear is
    straight above C7; a negative value means the ear is below C7 (a mis-click, usually).
    """
    dx = abs(ear_x - c7_x)
    rise = c7_y - ear_y  # positive when the ear is above C7 (y grows downwards)
    if dx == 0 and rise == 0:
        raise ValueError("ear and C7 are the same point; the angle is undefined")
    return math.degrees(math.atan2(rise, dx))


def label_from_cva(cva_deg: float, threshold_deg: float = DEFAULT_CVA_THRESHOLD_DEG) -> str:
    """``forward_head`` below the threshold, ``normal`` at or above it."""
    from posture.data.labels import FORWARD_HEAD, NORMAL

    return FORWARD_HEAD if cva_deg < threshold_deg else NORMAL
