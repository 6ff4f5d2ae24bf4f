"""Exact and near-duplicate detection, so one picture never sits in both train and test.

Exact copies share the SHA-256 of their file bytes; a copy in another container or with other
metadata has the same hashes (distance 0) and is found as a near copy.
Near copies (re-saved JPEGs, resized copies, burst frames) are within a few bits on *both* a
perceptual hash (DCT, robust to resizing and compression) and a difference hash (gradients):
asking both to agree keeps distinct photos of a similar scene apart. Flat (one-colour) pictures
have no structure to hash, so they are matched as exact copies only.

The search is greedy in priority order (largest picture first, then path): each image is compared
with the images kept so far using vectorised XOR + popcount, which is O(n * kept) numpy work and
handles tens of thousands of images in seconds; and every ``duplicate_of`` points at a kept image
that is itself within the threshold (no chains).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class HashedImage:
    key: int  # caller's identifier
    path: str  # used for ordering and reports
    label: str
    pixels: int  # width * height of the original, the "better copy" measure
    content_sha256: str
    phash: int
    dhash: int
    flat: bool = False  # a one-colour picture: matched by its bytes only (its hashes carry no information)


@dataclass(frozen=True)
class Duplicate:
    key: int
    kept_key: int
    kind: str  # "exact" or "near"
    phash_distance: int
    dhash_distance: int
    label_conflict: bool


def _popcount(values: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values)
    as_bytes = values.view(np.uint8).reshape(-1, 8)
    return np.unpackbits(as_bytes, axis=1).sum(axis=1)


def find_duplicates(images: Sequence[HashedImage], threshold: int) -> dict[int, Duplicate]:
    """Map each duplicate's key to the kept image it copies; images not in the result are kept.

    ``threshold`` is the largest Hamming distance (of 64 bits) allowed on both hashes; a negative
    value finds exact duplicates only.
    """
    order = sorted(images, key=lambda im: (-im.pixels, im.path))
    kept_p = np.zeros(len(order), dtype=np.uint64)
    kept_d = np.zeros(len(order), dtype=np.uint64)
    hashed: list[HashedImage] = []  # the kept images that near copies are looked for among
    by_sha: dict[str, HashedImage] = {}
    result: dict[int, Duplicate] = {}
    for image in order:
        twin = by_sha.get(image.content_sha256)
        if twin is not None:
            result[image.key] = Duplicate(image.key, twin.key, "exact", 0, 0, twin.label != image.label)
            continue
        if threshold >= 0 and hashed and not image.flat:
            n = len(hashed)
            dp = _popcount(kept_p[:n] ^ np.uint64(image.phash))
            dd = _popcount(kept_d[:n] ^ np.uint64(image.dhash))
            close = np.flatnonzero((dp <= threshold) & (dd <= threshold))
            if close.size:
                best = close[np.argmin(dp[close].astype(np.int64) + dd[close])]  # first on ties
                other = hashed[best]
                result[image.key] = Duplicate(
                    image.key, other.key, "near", int(dp[best]), int(dd[best]), other.label != image.label
                )
                continue
        by_sha[image.content_sha256] = image
        if not image.flat:
            kept_p[len(hashed)] = image.phash
            kept_d[len(hashed)] = image.dhash
            hashed.append(image)
    return result
