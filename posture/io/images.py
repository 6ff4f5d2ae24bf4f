"""Decode a photo the way people actually hand them over, into plain 8-bit RGB.

Phones write EXIF orientation instead of rotating pixels; scanners write CMYK; PNG exports come
as palette, RGBA or 16-bit grayscale. Every stage (ingest, training, prediction, the app) goes
through :func:`open_rgb` so they all see the same pixels.

Prediction and the app decode at the size the model needs (``max_side``, :data:`MODEL_MAX_SIDE`),
not at the size the camera wrote: a 100-megapixel JPEG is 300 MB of pixels decoded whole, while
BlazePose looks at 256 pixels and the CNNs at 224. JPEGs are decoded smaller by the codec itself
(:meth:`PIL.Image.Image.draft`, which scales by 1/2, 1/4 or 1/8 in the DCT), so a batch of huge
photos costs memory in proportion to the batch, not to the photos.
"""

from __future__ import annotations

import io
import logging
import os
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from posture.io.walk import read_regular_file

log = logging.getLogger(__name__)

#: Refuse images with more pixels than this (decompression bombs); about a 120-megapixel photo.
DEFAULT_MAX_PIXELS = 120_000_000
#: The longest side a photo is decoded at for the model: what ``posture.ingest`` stores training
#: photos at by default (``--max-side 1024``), so a photo predicted from the camera's own file meets
#: the model at the size its training photos had. Ample for landmarks (BlazePose resizes to 256)
#: and for every CNN of the zoo; photos this size or smaller are decoded exactly as before.
MODEL_MAX_SIDE = 1024

# Pillow warns (DecompressionBombWarning) about images between its own limit, ~89 megapixels, and
# twice that, where it refuses. Here ``max_pixels`` decides, right after the header is read, and
# the decision is logged; Pillow's warning would only reach the terminal as a raw Python warning.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
#: How Python spells a file object in messages (``<_io.BytesIO object at 0x7f...>``): never shown to people.
_FILE_OBJECT = re.compile(r"<_?[\w.]+ object at 0x[0-9a-fA-F]+>")


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
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        # 16-bit grayscale: round(v / 257) in integers, exactly as in floats, at a quarter of the
        # memory (a 50-megapixel scan would otherwise need over a gigabyte of float64 copies).
        wide = np.asarray(img).astype(np.uint32)
        wide *= 2
        wide += 257
        wide //= 514
        return Image.fromarray(wide.astype(np.uint8), "L").convert("RGB")
    if mode in ("I", "F"):
        # 32-bit grayscale: scale the actual range to 0..255 rather than clipping.
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
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


def source_name(source: str | os.PathLike[str] | bytes) -> str:
    """How messages name an image: its file name, or "the data" for bytes."""
    return repr(Path(source).name) if not isinstance(source, bytes) else "the data"


def _detail(exc: BaseException, name: str) -> str:
    """A decoder's message with the file object it names replaced by the file's own name."""
    return f"{type(exc).__name__}: {_FILE_OBJECT.sub(name, str(exc))}"


def fitted_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """``width`` x ``height`` scaled so the long side is at most ``max_side`` (``None``: unchanged)."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def fit_within(img: Image.Image, max_side: int | None) -> Image.Image:
    """``img`` downscaled (Lanczos, as ingest downscales) so its long side is at most ``max_side``."""
    size = fitted_size(img.width, img.height, max_side)
    return img if size == img.size else img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def open_rgb(
    source: str | os.PathLike[str] | bytes, max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int | None = None
) -> Image.Image:
    """Fully decode ``source`` (a path or bytes), apply EXIF orientation, return 8-bit RGB.

    ``max_side``: decode no larger than needed for a long side of ``max_side`` pixels (JPEGs are
    scaled by the codec while decoding), then downscale to it; ``None`` keeps the stored size.

    Raises :class:`ImageDecodeError` with reason ``empty_file``, ``not_an_image``, ``too_large``
    or ``corrupt``; never a bare PIL exception, so callers can report and move on. A path that
    is not a regular file, or is larger than :data:`posture.io.walk.DEFAULT_MAX_BYTES`, raises
    :class:`posture.io.walk.RefusedFile` (an ``OSError``) without being read.
    """
    # A path is read as a regular file with a byte cap: a FIFO or device must not block or flood us.
    data = read_regular_file(source) if not isinstance(source, bytes) else source
    name = source_name(source)
    if len(data) == 0:
        raise ImageDecodeError("empty_file", "0 bytes")
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError("too_large", _detail(exc, name)) from None
    except UnidentifiedImageError:
        detail = f"no image format recognised in {name} (it starts {data[:16]!r})"
        raise ImageDecodeError("not_an_image", detail) from None
    except Exception as exc:  # PIL raises SyntaxError, ValueError, OSError...
        raise ImageDecodeError("not_an_image", _detail(exc, name)) from None
    width, height = img.size
    if width * height > max_pixels:
        raise ImageDecodeError("too_large", f"{width}x{height} pixels exceeds the limit of {max_pixels}")
    if Image.MAX_IMAGE_PIXELS is not None and width * height > Image.MAX_IMAGE_PIXELS:
        log.debug("%s: %dx%d pixels, within the limit of %d; decoding it", name, width, height, max_pixels)
    try:
        target = fitted_size(width, height, max_side)
        if target != (width, height):
            img.draft(None, (target[0] * 2, target[1] * 2))  # JPEG: the codec decodes at 1/2..1/8 scale
        img.load()  # full decode: truncated files fail here, not later in a DataLoader worker
        ImageOps.exif_transpose(img, in_place=True)  # in place: no copy of every photo that needs no turn
        return fit_within(to_rgb8(img), max_side)
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError("too_large", _detail(exc, name)) from None
    except Exception as exc:
        raise ImageDecodeError("corrupt", _detail(exc, name)) from None


def load_rgb_array(
    source: str | os.PathLike[str] | bytes, max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int | None = None
) -> np.ndarray:
    """:func:`open_rgb` as an ``H×W×3 uint8`` array, the form albumentations takes."""
    return np.asarray(open_rgb(source, max_pixels=max_pixels, max_side=max_side))
