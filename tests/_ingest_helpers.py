"""Small, distinct test photos and label drops for the ingest tests (built in tmp_path with PIL)."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from posture.ingest import IngestConfig, IngestResult, ingest


def photo(seed: int, size: tuple[int, int] = (120, 90)) -> Image.Image:
    """A smooth random picture: blobs, not noise, so perceptual hashes are stable but differ per seed."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(5, 6, 3), dtype=np.uint8)
    return Image.fromarray(coarse, "RGB").resize(size, Image.Resampling.BICUBIC)


def save(img: Image.Image, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kwargs)
    return path


def jpeg_bytes(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def class_tree(
    root: Path, per_class: int = 3, classes: tuple[str, ...] = ("forward_head", "normal"), seed0: int = 0
) -> Path:
    """``root/<class>/<class>-<i>.jpg`` with distinct pictures."""
    seed = seed0
    for cls in classes:
        for i in range(per_class):
            save(photo(seed), root / cls / f"{cls}-{i}.jpg", quality=92)
            seed += 1
    return root


def run(src: Path, out: Path, **kwargs) -> IngestResult:
    """Ingest with test-friendly defaults: one process, no progress bar."""
    kwargs.setdefault("workers", 1)
    kwargs.setdefault("progress", False)
    return ingest(IngestConfig(src=src, out=out, **kwargs))


def tree_fingerprint(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every entry under ``root`` with its content hash, mtime (ns) and mode: proof nothing changed."""
    state: dict[str, tuple[str, int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            st = full.lstat()
            digest = ""
            if full.is_symlink():
                digest = "link:" + os.readlink(full)
            elif full.is_file():
                digest = hashlib.sha256(full.read_bytes()).hexdigest()
            state[full.relative_to(root).as_posix()] = (digest, st.st_mtime_ns, st.st_mode)
    return state
