"""The one shaded primitive the synthetic renderer knows: an ellipsoid, or a box.

Its own module so the figure (``scene``) and the furniture (``props``) can both build them
without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Ellipsoid:
    """One shaded primitive. ``rot`` columns are its local axes in world coordinates.

    ``clip`` keeps only the surface where ``dot(normal, p) >= offset`` for ``p`` in the unit-sphere
    frame: hair that stops at a hairline, a beard that covers only the jaw. ``box`` makes it a
    cuboid with half-extents ``radii`` instead (desks, chairs, screens).
    """

    center: np.ndarray
    rot: np.ndarray
    radii: np.ndarray
    colour: np.ndarray
    clip: tuple[np.ndarray, float] | None = None
    clothing: bool = False  # takes the shirt's pattern (stripes, checks) when the subject has one
    shine: float = 0.0
    box: bool = False
