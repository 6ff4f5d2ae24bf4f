"""Every kind of bad input a real drop contains is rejected or skipped, listed, and counted; none crashes."""

from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from _ingest_helpers import class_tree, jpeg_bytes, photo, run, save
from posture.ingest.report import REASONS


def _rejected(result) -> dict[str, str]:
    return dict(zip(result.rejected["path"], result.rejected["reason"], strict=True))


@pytest.fixture()
def messy_drop(tmp_path):
    """A class-folder drop holding one file of every bad kind next to good photos."""
    src = class_tree(tmp_path / "messy", per_class=2)
    fh, nm = src / "forward_head", src / "normal"
    (fh / "empty.jpg").write_bytes(b"")
    (fh / "notes.jpg").write_text("this is not a picture\n")
    (fh / "cut.jpg").write_bytes(jpeg_bytes(photo(50, (200, 150)))[:900])  # truncated upload
    save(photo(51, (300, 300)), nm / "huge.png")  # rejected by the pixel limit below
    save(photo(52, (100, 40)), nm / "strip.jpg")  # short side 40 < 64
    save(photo(53), src / "misc" / "who-knows.jpg")  # folder names no class
    outside = tmp_path / "elsewhere.jpg"
    save(photo(54), outside)
    os.symlink(outside, nm / "linked-out.jpg")
    os.symlink(tmp_path, src / "linked-folder")
    # litter that is skipped, not rejected
    (src / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (fh / "._forward_head-0.jpg").write_bytes(b"\0\5\26\7AppleDouble")
    (nm / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (src / "desktop.ini").write_text("[.ShellClassInfo]\n")
    save(photo(55), src / ".trash" / "normal" / "old.jpg")
    (src / "README.txt").write_text("photos from Tuesday\n")
    (src / "normal" / "notes.csv").write_text("a,b\n")
    (src / "normal_empty_class").mkdir()
    (src / "upright").mkdir()  # an empty class folder (alias of normal)
    return src


def test_each_bad_file_is_rejected_with_its_reason(messy_drop, tmp_path):
    result = run(messy_drop, tmp_path / "out", max_pixels=300 * 300 - 1)
    got = _rejected(result)
    assert got == {
        "forward_head/empty.jpg": "empty_file",
        "forward_head/notes.jpg": "not_an_image",
        "forward_head/cut.jpg": "corrupt",
        "normal/huge.png": "too_large",
        "normal/strip.jpg": "too_small",
        "misc/who-knows.jpg": "unknown_label",
        "normal/linked-out.jpg": "outside_root",
        "linked-folder": "outside_root",
    }
    assert set(result.rejected["reason"]) <= set(REASONS)
    assert result.kept == 4
    assert all(result.rejected["detail"].str.len() > 0)
    on_disk = pd.read_csv(tmp_path / "out" / "rejected.csv")
    assert list(on_disk.columns) == ["path", "reason", "detail"]
    assert len(on_disk) == len(got)


def test_hidden_system_and_non_image_files_are_skipped_and_counted(messy_drop, tmp_path):
    result = run(messy_drop, tmp_path / "out", max_pixels=300 * 300 - 1)
    skipped = result.summary["skipped"]
    assert skipped["hidden_system"] == 5  # .DS_Store, ._x.jpg, Thumbs.db, desktop.ini, .trash/normal/old.jpg
    assert skipped["non_image"] == 2  # README.txt, notes.csv
    assert not any(".DS_Store" in p or "._" in p or "old.jpg" in p for p in result.rejected["path"])
    assert any("upright/ holds no usable image" in w for w in result.warnings)


def test_every_input_file_is_accounted_for_exactly_once(messy_drop, tmp_path):
    save(photo(0), messy_drop / "normal" / "copy-of-fh0.jpg")  # an exact duplicate as well
    result = run(messy_drop, tmp_path / "out", max_pixels=300 * 300 - 1)
    c = result.summary["counts"]
    assert c["files_found"] == c["kept"] + c["rejected"] + c["duplicates"] + c["skipped"]
    entries = sum(len(files) for _, _, files in os.walk(messy_drop)) + 1  # + the symlinked folder entry
    assert c["files_found"] == entries
    listed = list(result.manifest["source_path"]) + list(result.rejected["path"])
    assert len(listed) == len(set(listed)) == c["kept"] + c["rejected"] + c["duplicates"]
    assert sum(result.summary["rejected_by_reason"].values()) == c["rejected"]


def test_csv_rows_naming_missing_or_outside_files_are_rejected(tmp_path):
    src = tmp_path / "csvdrop"
    save(photo(0), src / "a.jpg")
    save(photo(1), src / "b.jpg")
    save(photo(2), tmp_path / "secret.jpg")
    pd.DataFrame(
        {
            "filename": ["a.jpg", "b.jpg", "gone.jpg", "../secret.jpg", str(tmp_path / "secret.jpg"), "c.jpg"],
            "label": ["normal", "forward_head", "normal", "normal", "normal", "sideways"],
        }
    ).to_csv(src / "labels.csv", index=False)
    save(photo(3), src / "c.jpg")
    result = run(src, tmp_path / "out")
    got = _rejected(result)
    assert got["gone.jpg"] == "missing_file"
    assert got["../secret.jpg"] == "outside_root"
    assert got[str(tmp_path / "secret.jpg")] == "outside_root"
    assert got["c.jpg"] == "unknown_label"
    assert result.summary["counts"]["csv_rows_rejected"] == 3
    assert sorted(result.manifest["source_path"]) == ["a.jpg", "b.jpg"]


def _exif_rotated_jpeg(img: Image.Image) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95, exif=exif)
    return buf.getvalue()


def test_unusual_image_modes_are_decoded_to_rgb(tmp_path):
    src = tmp_path / "modes" / "normal"
    base = photo(7, (160, 100))
    (src).mkdir(parents=True)
    (src / "rotated.jpg").write_bytes(_exif_rotated_jpeg(base))
    save(photo(8, (160, 100)).convert("L"), src / "gray.png")
    save(photo(9, (160, 100)).convert("P", palette=Image.Palette.ADAPTIVE), src / "palette.png")
    rgba = photo(10, (160, 100)).convert("RGBA")
    alpha = np.full((100, 160), 255, dtype=np.uint8)
    alpha[:, :80] = 0  # left half transparent
    rgba.putalpha(Image.fromarray(alpha, "L"))
    save(rgba, src / "alpha.png")
    save(photo(11, (160, 100)).convert("CMYK"), src / "cmyk.jpg")
    deep = (np.asarray(photo(12, (160, 100)).convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    save(Image.fromarray(deep), src / "deep16.png")  # mode I;16

    for name, mode in [
        ("gray.png", "L"),
        ("palette.png", "P"),
        ("alpha.png", "RGBA"),
        ("cmyk.jpg", "CMYK"),
        ("deep16.png", "I;16"),
    ]:
        with Image.open(src / name) as img:
            assert img.mode == mode, name  # the fixtures really are the awkward kinds

    result = run(tmp_path / "modes", tmp_path / "out", image_format="png", near_dup_threshold=-1)
    assert result.kept == 6, result.rejected
    by_src = result.manifest.set_index("source_path")
    assert (by_src.loc["normal/rotated.jpg", "width"], by_src.loc["normal/rotated.jpg", "height"]) == (100, 160)
    for row in result.manifest.itertuples():
        with Image.open(tmp_path / "out" / row.path) as img:
            assert img.mode == "RGB" and img.size == (row.width, row.height)
    with Image.open(tmp_path / "out" / by_src.loc["normal/alpha.png", "path"]) as img:
        left = np.asarray(img)[:, :70]
    assert left.min() == 255  # transparency flattened onto white


def test_large_images_are_downscaled_to_max_side(tmp_path):
    src = tmp_path / "big"
    save(photo(1, (1500, 600)), src / "forward_head" / "wide.jpg")
    save(photo(2, (300, 200)), src / "normal" / "small.jpg")
    result = run(src, tmp_path / "out")  # default --max-side 1024
    sizes = {r.source_path: (r.width, r.height, r.orig_width, r.orig_height) for r in result.manifest.itertuples()}
    assert sizes["forward_head/wide.jpg"] == (1024, 410, 1500, 600)
    assert sizes["normal/small.jpg"] == (300, 200, 300, 200)
    kept = run(src, tmp_path / "out2", max_side=0)
    assert set(kept.manifest["width"]) == {1500, 300}


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width x height`` pixels in a few bytes: a decompression bomb's calling card."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_a_decompression_bomb_is_rejected_without_decoding_it(tmp_path):
    src = class_tree(tmp_path / "bomb", per_class=1)
    (src / "normal" / "bomb.png").write_bytes(_png_header_only(40_000, 40_000))
    result = run(src, tmp_path / "out")  # default --max-pixels
    assert _rejected(result) == {"normal/bomb.png": "too_large"}
    assert result.kept == 2
