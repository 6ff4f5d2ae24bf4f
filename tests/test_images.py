"""Photos arrive in every mode PIL knows; every stage must see the same upright 8-bit RGB pixels."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from posture.io.images import ImageDecodeError, load_rgb_array, open_rgb


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = open_rgb(_encode(img, "JPEG", exif=exif.tobytes()))
    assert out.size == (20, 40)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "I;16", "I", "1"])
def test_every_mode_becomes_rgb8(mode: str) -> None:
    fmt = "TIFF" if mode in ("CMYK", "I;16", "I") else "PNG"
    img = Image.new(mode, (16, 16))
    out = open_rgb(_encode(img, fmt))
    assert out.mode == "RGB" and out.size == (16, 16)


def test_alpha_is_flattened_on_white() -> None:
    img = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    arr = load_rgb_array(_encode(img, "PNG"))
    assert arr.dtype == np.uint8 and (arr == 255).all()


def test_sixteen_bit_keeps_its_range() -> None:
    arr16 = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)
    out = load_rgb_array(_encode(Image.fromarray(arr16), "PNG"))
    assert out.min() == 0 and out.max() == 255


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"", "empty_file"),
        (b"this is a text file, not a photo", "not_an_image"),
    ],
)
def test_bad_bytes_have_reasons(payload: bytes, reason: str) -> None:
    with pytest.raises(ImageDecodeError) as info:
        open_rgb(payload)
    assert info.value.reason == reason


def test_truncated_jpeg_is_corrupt() -> None:
    data = _encode(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")
    with pytest.raises(ImageDecodeError) as info:
        open_rgb(data[: len(data) // 2])
    assert info.value.reason == "corrupt"


def test_pixel_limit_rejects_bombs() -> None:
    data = _encode(Image.new("L", (200, 200)), "PNG")
    with pytest.raises(ImageDecodeError) as info:
        open_rgb(data, max_pixels=10_000)
    assert info.value.reason == "too_large"
