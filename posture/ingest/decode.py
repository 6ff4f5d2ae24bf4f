"""Decode, check, hash and re-encode one image: the per-file work that runs in worker processes.

Each worker writes its re-encoded image straight into the staging folder and returns only small
metadata, so the parent never holds thousands of images in memory or pipes their pixels around.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from multiprocessing import get_all_start_methods, get_context
from multiprocessing.context import BaseContext
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image

from posture.io.images import ImageDecodeError, open_rgb
from posture.io.walk import DEFAULT_MAX_BYTES, RefusedFile, read_regular_file
from posture.runtime.processes import die_with

#: Side of the gray thumbnail both perceptual hashes are computed from.
HASH_SIDE = 32


@dataclass(frozen=True)
class DecodeSettings:
    max_pixels: int
    min_side: int
    max_side: int  # 0: keep the size
    image_format: str  # "jpg" or "png"
    jpeg_quality: int = 95
    max_bytes: int = DEFAULT_MAX_BYTES


@dataclass(frozen=True)
class DecodeTask:
    index: int
    src: str  # absolute path of the source file
    dst: str  # where to write the re-encoded image


@dataclass(frozen=True)
class Decoded:
    """The outcome for one file: ``reason`` is empty on success, else a rejected.csv reason."""

    index: int
    reason: str = ""
    detail: str = ""
    source_sha256: str = ""
    sha256: str = ""  # of the written file
    orig_width: int = 0
    orig_height: int = 0
    width: int = 0
    height: int = 0
    phash: int = 0
    dhash: int = 0
    flat: bool = False  # one colour: its perceptual hashes say nothing (see is_flat)

    @property
    def ok(self) -> bool:
        return not self.reason


def _hash_int(h: imagehash.ImageHash) -> int:
    """The 64 hash bits as an int, in the bit order of ``str(h)`` (imagehash's hex form)."""
    return int.from_bytes(np.packbits(h.hash.flatten()).tobytes(), "big")


def hash_thumbnail(img: Image.Image) -> Image.Image:
    """The 32x32 gray thumbnail both perceptual hashes and the flatness check read.

    The hashes only look at 32x32 (phash) and 9x8 (dhash) pixels; shrinking once with a cheap
    box reduction and one Lanczos step, instead of twice from full size, halves the hashing time
    and gives copies of a picture at any size the same thumbnail. Made once per picture: the
    flatness check reading its own full-size gray copy cost ingest about 8 % of its CPU time.
    """
    gray = img.convert("L")
    factor = min(gray.size) // (2 * HASH_SIDE)
    if factor > 1:
        gray = gray.reduce(factor)
    return gray.resize((HASH_SIDE, HASH_SIDE), Image.Resampling.LANCZOS)


def perceptual_hashes(thumb: Image.Image) -> tuple[int, int]:
    """imagehash's phash and dhash (64 bits each) of a :func:`hash_thumbnail`."""
    return _hash_int(imagehash.phash(thumb)), _hash_int(imagehash.dhash(thumb))


#: A picture whose gray thumbnail varies less than this (standard deviation, of 255) is flat.
FLAT_STD = 1.0


def is_flat(thumb: Image.Image) -> bool:
    """True for a picture of (nearly) one colour, judged on its :func:`hash_thumbnail`.

    Why: perceptual hashes describe structure, and a flat picture has none: every flat picture,
    red or blue, gets the same hashes, so comparing them would call any two flat pictures near
    copies. Flat pictures are only matched as exact (byte) copies.
    """
    return float(np.asarray(thumb, dtype=np.float64).std()) < FLAT_STD


def stored_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size an image of ``width`` x ``height`` is stored at: the long side capped at ``max_side`` (0: no cap)."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def decode_one(task: DecodeTask, settings: DecodeSettings) -> Decoded:
    """Never raises for a bad file: every failure becomes a ``Decoded`` with a reason."""
    try:
        data = read_regular_file(task.src, settings.max_bytes)  # never blocks on a FIFO, never reads unbounded
    except RefusedFile as exc:
        return Decoded(task.index, exc.reason, exc.detail)
    source_sha = hashlib.sha256(data).hexdigest()
    try:
        img = open_rgb(data, max_pixels=settings.max_pixels)
    except ImageDecodeError as exc:
        return Decoded(task.index, exc.reason, exc.detail, source_sha256=source_sha)
    except MemoryError:
        return Decoded(task.index, "too_large", "out of memory while decoding", source_sha256=source_sha)
    try:
        orig_w, orig_h = img.size
        size = stored_size(orig_w, orig_h, settings.max_side)
        if min(size) < settings.min_side:  # judged on what training will see, after downscaling
            shown = f"{orig_w}x{orig_h}" + (
                "" if size == (orig_w, orig_h) else f", stored as {size[0]}x{size[1]} (--max-side {settings.max_side})"
            )
            return Decoded(
                task.index,
                "too_small",
                f"{shown}: shorter side below --min-side {settings.min_side}",
                source_sha256=source_sha,
                orig_width=orig_w,
                orig_height=orig_h,
            )
        if size != (orig_w, orig_h):
            img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        thumb = hash_thumbnail(img)
        phash, dhash = perceptual_hashes(thumb)
        flat = is_flat(thumb)
        buf = io.BytesIO()
        if settings.image_format == "png":
            img.save(buf, format="PNG")
        else:
            img.save(buf, format="JPEG", quality=settings.jpeg_quality)
        encoded = buf.getvalue()
        Path(task.dst).write_bytes(encoded)
        return Decoded(
            task.index,
            source_sha256=source_sha,
            sha256=hashlib.sha256(encoded).hexdigest(),
            orig_width=orig_w,
            orig_height=orig_h,
            width=img.width,
            height=img.height,
            phash=phash,
            dhash=dhash,
            flat=flat,
        )
    except Exception as exc:  # noqa: BLE001 - a bad file must become a rejection, never a crash
        return Decoded(task.index, "corrupt", f"{type(exc).__name__}: {exc}", source_sha256=source_sha)


def decode_all(
    tasks: Sequence[DecodeTask], settings: DecodeSettings, workers: int, progress: bool = True
) -> Iterator[Decoded]:
    """Decode ``tasks`` on ``workers`` processes (in this process when 1), yielding in task order.

    Workers are forked (instant, modules already imported) when this process runs a single
    thread; a parent that already runs threads (torch, a web app) could deadlock a forked child,
    so then a ``forkserver`` that preloads this module starts them instead. Either way a worker
    dies with this process (:func:`posture.runtime.processes.die_with`): a killed ingest leaves none behind.
    """
    work = partial(decode_one, settings=settings)
    if workers <= 1 or len(tasks) < 2:
        results: Iterator[Decoded] = map(work, tasks)
        yield from _with_progress(results, len(tasks), progress)
        return
    chunksize = max(1, min(32, len(tasks) // (workers * 8)))
    with ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)), mp_context=pool_context(), initializer=die_with, initargs=(os.getpid(),)
    ) as pool:
        results = pool.map(work, tasks, chunksize=chunksize)  # workers start before a progress thread can
        yield from _with_progress(results, len(tasks), progress)


def _with_progress(results: Iterator[Decoded], total: int, progress: bool) -> Iterator[Decoded]:
    if not progress or not total:
        yield from results
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc="ingest", unit="img") as bar:
        for result in results:
            yield result
            bar.update()


def pool_context() -> BaseContext:
    """How decoding workers start: ``fork`` (fastest) unless the caller runs threads, which a fork
    would copy mid-flight (a lock held by one of them stays held in the child forever)."""
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and t.name != "tqdm_monitor"]
    if sys.platform.startswith("linux") and not others:  # tqdm's monitor only sleeps on an event
        return get_context("fork")
    ctx = get_context("forkserver" if "forkserver" in get_all_start_methods() else "spawn")
    if ctx.get_start_method() == "forkserver":
        ctx.set_forkserver_preload([__name__])
    return ctx
