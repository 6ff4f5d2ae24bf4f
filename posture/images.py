"""Decode a photo the way people actually hand them over, into plain 8-bit RGB.

Phones write EXIF orientation instead of rotating pixels; scanners write CMYK; PNG exports come
as palette, RGBA or 16-bit grayscale. Every stage (ingest, training, prediction, the app) goes
through :func:`open_rgb` so they all see the same pixels.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, ImageOps

from posture.walk import read_regular_file

#: Refuse images with more pixels than this (decompression bombs); about a 120-megapixel photo.
DEFAULT_MAX_PIXELS = 120_000_000


class ImageDecodeError(ValueError):
    """The bytes are not a decodable image; ``reason`` is a short code for reports."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def to_rgb8(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; alpha is flattened onto ``background`` (white)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit / 32-bit grayscale: scale the actual range to 0..255 rather than clipping.
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        if mode.startswith("I;16") and hi <= 65535:
            scaled = arr / 257.0
        else:
            scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        return Image.fromarray(np.clip(scaled + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        base = Image.new("RGB", rgba.size, background)
        base.paste(rgba, mask=rgba.getchannel("A"))
        return base
    if mode == "CMYK":
        return img.convert("RGB")
    return img.convert("RGB")


def open_rgb(source: str | os.PathLike[str] | bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Fully decode ``source`` (a path or bytes), apply EXIF orientation, return 8-bit RGB.

    Raises :class:`ImageDecodeError` with reason ``empty_file``, ``not_an_image``, ``too_large``
    or ``corrupt``; never a bare PIL exception, so callers can report and move on. A path that
    is not a regular file, or is larger than :data:`posture.walk.DEFAULT_MAX_BYTES`, raises
    :class:`posture.walk.RefusedFile` (an ``OSError``) without being read.
    """
    # A path is read as a regular file with a byte cap: a FIFO or device must not block or flood us.
    data = read_regular_file(source) if not isinstance(source, bytes) else source
    if len(data) == 0:
        raise ImageDecodeError("empty_file", "0 bytes")
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError("too_large", str(exc)) from None
    except Exception as exc:  # PIL raises UnidentifiedImageError, SyntaxError, ValueError...
        raise ImageDecodeError("not_an_image", f"{type(exc).__name__}: {exc}") from None
    width, height = img.size
    if width * height > max_pixels:
        raise ImageDecodeError("too_large", f"{width}x{height} pixels exceeds the limit of {max_pixels}")
    try:
        img.load()  # full decode: truncated files fail here, not later in a DataLoader worker
        ImageOps.exif_transpose(img, in_place=True)  # in place: no copy of every photo that needs no turn
        return to_rgb8(img)
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError("too_large", str(exc)) from None
    except Exception as exc:
        raise ImageDecodeError("corrupt", f"{type(exc).__name__}: {exc}") from None


def load_rgb_array(source: str | os.PathLike[str] | bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """:func:`open_rgb` as an ``H×W×3 uint8`` array, the form albumentations takes."""
    return np.asarray(open_rgb(source, max_pixels=max_pixels))
