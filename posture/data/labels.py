"""The two classes, and the many names labeling teams give them.

Class order is part of every checkpoint (index 0 is ``forward_head``), so it is fixed here once
rather than derived from whatever folders happen to exist.
"""

from __future__ import annotations

from collections.abc import Mapping

FORWARD_HEAD = "forward_head"
NORMAL = "normal"
CLASS_NAMES: tuple[str, ...] = (FORWARD_HEAD, NORMAL)

#: Folder / CSV label spellings seen in real drops, matched case-insensitively after
#: normalising separators (``Turtle-Neck`` == ``turtle_neck``).
DEFAULT_LABEL_ALIASES: Mapping[str, str] = {
    "forward_head": FORWARD_HEAD,
    "forwardhead": FORWARD_HEAD,
    "forward": FORWARD_HEAD,
    "fhp": FORWARD_HEAD,
    "turtle_neck": FORWARD_HEAD,
    "turtleneck": FORWARD_HEAD,
    "turtle": FORWARD_HEAD,
    "text_neck": FORWARD_HEAD,
    "slouch": FORWARD_HEAD,
    "slouching": FORWARD_HEAD,
    "bad": FORWARD_HEAD,
    "bad_posture": FORWARD_HEAD,
    "incorrect": FORWARD_HEAD,
    "normal": NORMAL,
    "good": NORMAL,
    "good_posture": NORMAL,
    "upright": NORMAL,
    "straight": NORMAL,
    "correct": NORMAL,
    "neutral": NORMAL,
}


def normalise_label_text(text: str) -> str:
    """Lower-case and unify separators so ``Turtle Neck`` and ``turtle-neck`` compare equal."""
    return "_".join(text.strip().lower().replace("-", " ").replace("_", " ").split())


def resolve_label(text: str, aliases: Mapping[str, str] | None = None) -> str | None:
    """Map a folder name or CSV label to a class name; ``None`` when it is unknown."""
    table = {normalise_label_text(k): v for k, v in (aliases or DEFAULT_LABEL_ALIASES).items()}
    return table.get(normalise_label_text(text))
