"""Body landmarks of a whole dataset, found once per photo and cached beside the CNN features.

Why a stage of its own: BlazePose is the expensive part of every pose-based run (about 35 ms a
photo on 2 cores, as much as a small CNN), and three things need its answer: the posture geometry
(:mod:`posture.pose.geometry`), the head-and-shoulders crop the CNN of a fusion sees, and the
explanation drawn in the app. Finding the landmarks once and caching them by image sha256 +
detector version (:func:`posture.pose.detector.detector_version`) makes each of those free, a rerun needs
no pose-model call at all, and augmented views are made from the landmarks, not from new calls.

Cache files live in the :class:`~posture.models.features.FeatureCache` layout, one per photo, with the
tensors ``landmarks`` (``33×7``, or empty when nobody was found) and ``shape`` (height, width).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from posture.io.images import ImageDecodeError, load_rgb_array

log = logging.getLogger(__name__)

#: Bump when the stored landmark layout changes.
LANDMARK_FORMAT_VERSION = 1


@dataclass(frozen=True)
class LandmarkSpec:
    """What decides a cached landmark file: the detector and its settings."""

    detector: str

    def key(self) -> str:
        ident = {"kind": "landmarks", "detector": self.detector, "format": LANDMARK_FORMAT_VERSION}
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


@dataclass
class LandmarkSet:
    """``landmarks[i]`` is photo ``i``'s ``33×7`` array or ``None`` (nobody found, or unreadable)."""

    landmarks: list[np.ndarray | None]
    shapes: list[tuple[int, int] | None]
    failed: dict[int, str] = field(default_factory=dict)  # unreadable photos: index -> reason
    computed: int = 0
    from_cache: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        found = sum(lm is not None for lm in self.landmarks)
        return {
            "photos": len(self.landmarks),
            "person_found": found,
            "computed": self.computed,
            "from_cache": self.from_cache,
            "seconds": round(self.seconds, 3),
        }


class _DetectDataset(Dataset):
    """Decodes a photo and runs BlazePose on it, in whichever worker process loads the item."""

    def __init__(self, paths: Sequence[Path], detector: Any) -> None:
        self.paths, self.detector = list(paths), detector

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None, tuple[int, int] | None, str]:
        try:
            image = load_rgb_array(self.paths[i])
        except (ImageDecodeError, OSError) as exc:
            reason = exc.reason if isinstance(exc, ImageDecodeError) else "unreadable"
            return i, None, None, f"{reason}: {exc}"
        return i, self.detector.detect(image), (int(image.shape[0]), int(image.shape[1])), ""


def _collate(batch: list[Any]) -> list[Any]:
    return batch


def _from_file(stored: dict[str, torch.Tensor]) -> tuple[np.ndarray | None, tuple[int, int]] | None:
    if "landmarks" not in stored or "shape" not in stored:
        return None
    lm = stored["landmarks"].numpy()
    shape = tuple(int(v) for v in stored["shape"].tolist())
    return (lm.reshape(33, 7).astype(np.float32) if lm.size == 33 * 7 else None), (shape[0], shape[1])


def detect_landmarks(
    paths: Sequence[Path],
    shas: Sequence[str],
    cache: Any = None,
    *,
    detector: Any = None,
    workers: int = 0,
    progress: bool = True,
    rank: int = 0,
    world_size: int = 1,
) -> LandmarkSet:
    """Landmarks of every photo: from the cache where present, else from BlazePose (then cached).

    ``cache`` is a :class:`~posture.models.features.FeatureCache` or ``None``. Under ``torch.distributed``
    each rank detects its share of the missing photos and the answers are summed across ranks, so
    every rank returns the full set.
    """
    from posture.pose.detector import PoseDetector, load_blazepose, worker_start_method

    start = time.perf_counter()
    own_detector = detector is None
    detector = detector or PoseDetector()
    spec = LandmarkSpec(detector.version)
    n = len(paths)
    result = LandmarkSet(landmarks=[None] * n, shapes=[None] * n)
    pending = []
    for i, sha in enumerate(shas):
        stored = _from_file(cache.load(spec, sha)) if cache is not None else None
        if stored is None:
            pending.append(i)
        else:
            result.landmarks[i], result.shapes[i] = stored
            result.from_cache += 1
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()  # every rank has read the cache before any rank writes to it (as in features.py)
    mine = pending[rank::world_size]
    if mine:
        if own_detector:
            load_blazepose()  # the install hint now, not an error inside a DataLoader worker
        loader = DataLoader(
            _DetectDataset([paths[i] for i in mine], detector),
            batch_size=4,
            num_workers=workers,
            collate_fn=_collate,
            prefetch_factor=4 if workers > 0 else None,
            # forked after this process ran BlazePose, a worker aborts: start it fresh then
            multiprocessing_context=worker_start_method() if workers > 0 else None,
        )
        bar = tqdm(
            total=len(mine), desc="finding body landmarks", unit="img", leave=False, disable=not progress or rank != 0
        )
        for batch in loader:
            for local, lm, shape, err in batch:
                i = mine[local]
                if err:
                    result.failed[i] = err
                    log.warning("skipping unreadable image %s (%s)", paths[i], err)
                else:
                    result.landmarks[i], result.shapes[i] = lm, shape
                    if cache is not None:
                        cache.store(
                            spec,
                            shas[i],
                            {
                                "landmarks": torch.from_numpy(lm if lm is not None else np.zeros(0, np.float32)),
                                "shape": torch.tensor(shape, dtype=torch.float32),
                            },
                        )
                result.computed += 1
            bar.update(len(batch))
        bar.close()
    if world_size > 1:
        _share_across_ranks(result, pending, mine)
    result.seconds = time.perf_counter() - start
    if result.computed:
        log.info(
            "body landmarks: %d photos measured, %d from cache, %.1f s",
            result.computed,
            result.from_cache,
            result.seconds,
        )
    return result


def _share_across_ranks(result: LandmarkSet, pending: list[int], mine: list[int]) -> None:
    """Sum each rank's share of the pending photos into every rank's result (disjoint rows)."""
    from posture.runtime.distributed import all_reduce_sum

    n = len(result.landmarks)
    dense = torch.zeros(n, 33 * 7 + 4, dtype=torch.float64)  # landmarks, found, h, w, failed
    for i in mine:
        lm, shape = result.landmarks[i], result.shapes[i]
        if lm is not None:
            dense[i, :231] = torch.from_numpy(lm.reshape(-1).astype(np.float64))
            dense[i, 231] = 1
        if shape is not None:
            dense[i, 232:234] = torch.tensor(shape, dtype=torch.float64)
        dense[i, 234] = 1 if i in result.failed else 0
    dense = all_reduce_sum(dense)
    computed = int(all_reduce_sum(torch.tensor([result.computed], dtype=torch.int64)).item())
    for i in pending:
        if dense[i, 234] > 0:
            result.failed.setdefault(i, "unreadable")
            continue
        result.shapes[i] = (int(dense[i, 232]), int(dense[i, 233]))
        result.landmarks[i] = dense[i, :231].numpy().reshape(33, 7).astype(np.float32) if dense[i, 231] > 0 else None
    result.computed = computed


__all__ = ["LandmarkSpec", "LandmarkSet", "detect_landmarks", "LANDMARK_FORMAT_VERSION"]
