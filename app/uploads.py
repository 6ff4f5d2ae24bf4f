"""Uploads, as the web demo receives them: decoded safely, or one message for the person who sent them.

Why a module of its own: every button of the page (check, calibrate, batch) reads an upload the
same way, and what can go wrong (an empty, damaged or huge file, a file the janitor already swept)
must read the same in each place, in the visitor's words rather than a decoder's.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import numpy as np

from posture.io.images import ImageDecodeError, open_rgb

#: Why these reasons, in the user's words.
_FRIENDLY = {
    "empty_file": "The file is empty.",
    "not_an_image": "That file is not an image we can read. Please upload a JPEG, PNG or WebP photo.",
    "corrupt": "The image is damaged or incomplete (perhaps a partial upload). Please try another file.",
    "too_large": "The image has too many pixels. Please upload a photo of at most {mp:.0f} megapixels.",
}
_SWEPT = (
    "This photo is no longer on the server (uploads are deleted a few minutes after their last use); "
    "please add it again."
)


class UploadError(ValueError):
    """An upload we cannot classify; the message is meant for the person who uploaded it."""


def decode_upload(
    source: str | os.PathLike[str] | bytes | None, max_pixels: int, max_side: int | None = None
) -> np.ndarray:
    """Decode an upload to ``H×W×3 uint8`` RGB (at most ``max_side`` pixels on its long side, decoded
    at that size: :func:`posture.io.images.open_rgb`) or raise :class:`UploadError` with a friendly message."""
    if source is None:
        raise UploadError("Please upload a photo (or take one with the webcam) first.")
    try:
        return np.asarray(open_rgb(source, max_pixels=max_pixels, max_side=max_side))
    except ImageDecodeError as exc:
        raise UploadError(
            _FRIENDLY.get(exc.reason, "The image could not be read.").format(mp=max_pixels / 1e6)
        ) from None
    except OSError as exc:  # posture.io.walk.RefusedFile says "missing_file" for a file gone meanwhile
        gone = isinstance(exc, FileNotFoundError) or getattr(exc, "reason", None) == "missing_file"
        raise UploadError(_SWEPT if gone else "The upload could not be read; please try again.") from None


@contextlib.contextmanager
def read_upload(
    source: str | os.PathLike[str] | bytes | None,
    max_pixels: int,
    forget: Callable[[str], None],
    max_side: int | None = None,
) -> Iterator[np.ndarray]:
    """Decode an upload, and hand its temporary file to ``forget`` whatever happens (it was just used)."""
    try:
        yield decode_upload(source, max_pixels, max_side)
    finally:
        if isinstance(source, str):
            forget(source)
