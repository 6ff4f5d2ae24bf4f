"""Frozen-backbone features: computed once per image (and per augmented view), then cached on disk.

Why: with the backbone frozen, every epoch of head training would push the same pixels through
the same network. Running the backbone once and training the head on stored vectors turns
minutes per epoch into milliseconds, and a second head, a rerun or another split reuses them.

The cache is a plain file store, one ``.safetensors`` file per image holding one vector per view::

    <cache_dir>/<key>/meta.json                      what the key stands for (for humans)
    <cache_dir>/<key>/backbone.onnx                  the exported backbone (ONNX backend)
    <cache_dir>/<key>/<sha[:2]>/<sha256>.safetensors tensors "clean", "aug<v>-s<seed>-x<strength>-<k>"

``<key>`` digests the architecture, the weights fingerprint and the preprocessing, so features of
different weights or input sizes never mix. Augmented views are seeded by (augmentation seed,
image sha256, view index), which makes them reproducible no matter which worker or rank
computed them. Files are written atomically and never unpickled; a file that fails to load is
treated as missing, so the whole folder can be deleted at any time.

Extraction is as fast as two cores allow: DataLoader workers decode and transform while the
main process runs the backbone in batches under ``torch.inference_mode``; on CPU the backbone
runs through ONNX Runtime (about 2-3x faster than eager PyTorch) after a parity check against
torch, falling back to torch with a warning on any failure.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from posture.data.transforms import Preprocessing, apply, build_eval_transform, build_train_transform
from posture.io.fileio import atomic_path, atomic_write_json
from posture.io.formats import BACKENDS
from posture.io.images import ImageDecodeError, load_rgb_array
from posture.runtime.distributed import all_reduce_sum

if TYPE_CHECKING:
    from posture.models.classifier import PostureClassifier
    from posture.pose.landmarks import LandmarkSet

log = logging.getLogger(__name__)

#: Bump when the meaning of a cached vector changes (transform pipeline, pooling, ...).
FEATURE_FORMAT_VERSION = 1
#: Bump when ``build_train_transform`` changes, so old augmented views are not reused.
AUG_VERSION = 1
#: Largest |onnx - torch| accepted on the parity batch, relative to max(1, |torch features|).
ONNX_PARITY_TOL = 1e-3


def default_cache_dir() -> Path:
    """``$POSTURE_CACHE`` or ``~/.cache/posture/features``."""
    env = os.environ.get("POSTURE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "posture" / "features"


@dataclass(frozen=True)
class FeatureSpec:
    """Everything that decides what a cached vector means (the cache key) and which views exist."""

    arch: str
    weights_fingerprint: str
    preprocessing: Preprocessing
    aug_views: int = 0
    aug_seed: int = 0
    aug_strength: float = 1.0
    #: 3-D view augmentation of the geometry (degrees; :func:`posture.pose.geometry.augment_landmarks`). Not part
    #: of the key: geometry views are made from the cached landmarks at every run, never stored.
    aug_view3d: float = 0.0

    def key(self) -> str:
        ident = {
            "arch": self.arch,
            "weights": self.weights_fingerprint,
            "preprocessing": self.preprocessing.to_dict(),
            "format": FEATURE_FORMAT_VERSION,
        }
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]

    def view_names(self) -> list[str]:
        """View 0 is the clean (evaluation) image; views 1..K are seeded augmentations."""
        return ["clean"] + [
            f"aug{AUG_VERSION}-s{self.aug_seed}-x{self.aug_strength:g}-{k}" for k in range(1, self.aug_views + 1)
        ]

    def view_seed(self, sha256: str, view: int) -> int:
        digest = hashlib.sha256(f"{self.aug_seed}:{sha256}:{view}".encode()).digest()
        return int.from_bytes(digest[:4], "little")


class FeatureCache:
    """The on-disk store described in the module docstring; safe to delete at any time."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()

    def key_dir(self, spec: FeatureSpec) -> Path:
        return self.root / spec.key()

    def _file(self, spec: FeatureSpec, sha256: str) -> Path:
        return self.key_dir(spec) / sha256[:2] / f"{sha256}.safetensors"

    def load(self, spec: FeatureSpec, sha256: str) -> dict[str, torch.Tensor]:
        """Stored views of one image; an unreadable file counts as empty (it is only a cache)."""
        path = self._file(spec, sha256)
        if not path.is_file():
            return {}
        try:
            return load_file(str(path))
        except Exception as exc:  # torn or foreign file: recompute
            log.debug("ignoring unreadable cache file %s: %s", path, exc)
            return {}

    def store(self, spec: FeatureSpec, sha256: str, views: dict[str, torch.Tensor]) -> None:
        """Merge ``views`` into the image's file (atomic replace)."""
        merged = {**self.load(spec, sha256), **{k: v.detach().cpu().float().contiguous() for k, v in views.items()}}
        path = self._file(spec, sha256)
        with atomic_path(path) as tmp:
            save_file(merged, str(tmp))

    def write_meta(self, spec: FeatureSpec) -> None:
        meta = self.key_dir(spec) / "meta.json"
        if not meta.is_file():
            atomic_write_json(
                meta,
                {
                    "arch": spec.arch,
                    "weights_fingerprint": spec.weights_fingerprint,
                    "preprocessing": spec.preprocessing.to_dict(),
                    "format": FEATURE_FORMAT_VERSION,
                },
            )

    def onnx_path(self, spec: FeatureSpec) -> Path:
        return self.key_dir(spec) / "backbone.onnx"


@dataclass(frozen=True)
class ExtractOptions:
    """How features are computed, as opposed to what they mean (:class:`FeatureSpec`).

    None of these is part of the cache key: a run on another device, backend, batch size or rank
    count reads and writes the same cached vectors. ``world_size > 1`` (under ``torch.distributed``)
    splits the images still missing from the cache across ranks; only rank 0 draws a progress bar.
    """

    cache: FeatureCache | None = None
    backend: str = "auto"  # one of BACKENDS; "auto" is ONNX Runtime on CPU, torch elsewhere
    batch_size: int = 32  # image-views per backbone call
    workers: int = 0  # DataLoader (and landmark) worker processes; 0 decodes in this process
    device: torch.device | str = "cpu"
    rank: int = 0
    world_size: int = 1
    progress: bool = True


@dataclass
class ExtractionStats:
    """What extraction did; tests use ``computed`` to prove a rerun hits the cache."""

    computed: int = 0  # image-views run through the backbone in this call
    from_cache: int = 0  # image-views read from the cache
    backend: str = "none"  # the backend actually used ("none" when nothing was computed)
    parity_max_abs_diff: float | None = None
    seconds: float = 0.0
    failed: list[dict[str, str]] = field(default_factory=list)  # [{"path", "reason"}]

    def to_dict(self) -> dict[str, Any]:
        return {
            "computed": self.computed,
            "from_cache": self.from_cache,
            "backend": self.backend,
            "parity_max_abs_diff": self.parity_max_abs_diff,
            "seconds": round(self.seconds, 3),
            "failed": list(self.failed),
        }


@dataclass
class FeatureSet:
    """``features[i, v]`` is image ``i``'s vector for view ``v``; ``ok[i]`` is False for unreadable images
    and, in pose-based runs, for photos that cannot be assessed (``not_assessed[i]`` says why)."""

    features: torch.Tensor  # [N, V+1, F] float32
    ok: torch.Tensor  # [N] bool
    stats: ExtractionStats
    not_assessed: dict[int, str] = field(default_factory=dict)
    landmarks: dict[str, Any] | None = None  # the landmark stage's summary (pose-based runs)
    #: Each photo's view as its landmarks say (front / oblique / side; None without a person), pose-based runs.
    views: list[str | None] | None = None


# --------------------------------------------------------------------------- decoding


class _ViewDataset(Dataset):
    """Decodes each image once and returns the views of it that the cache lacks."""

    def __init__(
        self,
        paths: Sequence[Path],
        shas: Sequence[str],
        todo: Sequence[list[int]],
        spec: FeatureSpec,
        boxes: Sequence[tuple[int, int, int, int] | None] | None = None,
    ) -> None:
        self.paths, self.shas, self.todo, self.spec = list(paths), list(shas), list(todo), spec
        self.boxes = list(boxes) if boxes is not None else None
        # Crop boxes found beforehand (the landmark stage) are applied here, so no pipeline runs
        # BlazePose again; without them a cropping run's pipelines share one pose detector, whose
        # cache finds each photo's landmarks once for the clean view and all augmented views.
        detector, crop_in_pipeline = None, self.boxes is None
        if spec.preprocessing.crop == "pose" and crop_in_pipeline:
            from posture.pose.detector import PoseDetector

            detector = PoseDetector()
        self._eval = build_eval_transform(spec.preprocessing, crop=crop_in_pipeline, detector=detector)
        self._train = (
            build_train_transform(spec.preprocessing, spec.aug_strength, detector=detector, crop=crop_in_pipeline)
            if spec.aug_views
            else None
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, list[int], str]:
        try:
            image = load_rgb_array(self.paths[i])
        except (ImageDecodeError, OSError) as exc:
            reason = exc.reason if isinstance(exc, ImageDecodeError) else "unreadable"
            return torch.empty(0), i, [], f"{reason}: {exc}"
        box = self.boxes[i] if self.boxes is not None else None
        if box is not None:
            x0, y0, x1, y1 = box
            image = np.ascontiguousarray(image[y0:y1, x0:x1])
        tensors = []
        for view in self.todo[i]:
            if view == 0:
                tensors.append(apply(self._eval, image))
            else:
                assert self._train is not None
                self._train.set_random_seed(self.spec.view_seed(self.shas[i], view))
                tensors.append(apply(self._train, image))
        return torch.stack(tensors), i, list(self.todo[i]), ""


_Item = tuple[torch.Tensor, int, list[int], str]


def _collate(batch: list[_Item]) -> tuple[torch.Tensor, list[tuple[int, int]], list[tuple[int, str]]]:
    tensors = [t for t, _, views, _ in batch if views]
    slots = [(i, v) for _, i, views, _ in batch for v in views]
    failed = [(i, err) for _, i, _, err in batch if err]
    return (torch.cat(tensors) if tensors else torch.empty(0)), slots, failed


# --------------------------------------------------------------------------- backends

Runner = Callable[[torch.Tensor], torch.Tensor]


def _torch_runner(backbone: nn.Module, device: torch.device) -> Runner:
    backbone.eval().to(device)
    channels_last = device.type in ("cpu", "cuda")
    if channels_last:
        backbone.to(memory_format=torch.channels_last)

    def run(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            x = batch.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return backbone(x).float().cpu()

    return run


def export_backbone_onnx(backbone: nn.Module, input_size: int, path: str | os.PathLike[str]) -> Path:
    """Export ``backbone`` (images → pooled features) with a dynamic batch axis, atomically."""
    target = Path(path)
    backbone = backbone.eval().cpu()
    example = torch.zeros(2, 3, input_size, input_size)
    with atomic_path(target) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # the TorchScript exporter is ~6x faster to run than dynamo and handles these CNNs
            torch.onnx.export(
                backbone,
                (example,),
                str(tmp),
                input_names=["images"],
                output_names=["features"],
                dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        except Exception as exc:
            log.debug("TorchScript ONNX export failed (%s); trying the dynamo exporter", exc)
            torch.onnx.export(
                backbone,
                (example,),
                str(tmp),
                input_names=["images"],
                output_names=["features"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                dynamo=True,
            )
    return target


def _onnx_runner(backbone: nn.Module, spec: FeatureSpec, cache: FeatureCache | None, stats: ExtractionStats) -> Runner:
    """An ONNX Runtime session over the exported backbone, checked against torch first."""
    import onnxruntime as ort

    size = spec.preprocessing.input_size
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    opts.log_severity_level = 3
    if cache is not None:
        path = cache.onnx_path(spec)
        if not path.is_file():
            log.info("exporting the backbone to ONNX (%s)", path)
            export_backbone_onnx(backbone, size, path)
        session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    else:  # no cache: export to a temporary file; the session keeps the model in memory
        with tempfile.TemporaryDirectory(prefix="posture-onnx-") as tmp:
            path = Path(tmp) / "backbone.onnx"
            export_backbone_onnx(backbone, size, path)
            session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def run(batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {input_name: batch.numpy()})[0]).float()

    probe = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        reference = backbone.eval().cpu()(probe).float()
    got = run(probe)
    if got.shape != reference.shape:
        raise RuntimeError(f"ONNX features have shape {tuple(got.shape)}, torch {tuple(reference.shape)}")
    diff = float((got - reference).abs().max())
    stats.parity_max_abs_diff = diff
    if not diff <= ONNX_PARITY_TOL * max(1.0, float(reference.abs().max())):
        raise RuntimeError(f"ONNX parity check failed: max |onnx - torch| = {diff:.3g}")
    return run


def make_runner(
    backbone: nn.Module,
    spec: FeatureSpec,
    backend: str,
    device: torch.device,
    cache: FeatureCache | None,
    stats: ExtractionStats,
) -> Runner:
    """Pick the backend: ``auto`` is ONNX Runtime on CPU (faster there) and torch on accelerators."""
    if backend not in BACKENDS:
        raise ValueError(f"extract backend must be one of {BACKENDS}, not {backend!r}")
    want_onnx = backend == "onnx" or (backend == "auto" and device.type == "cpu")
    if want_onnx:
        try:
            runner = _onnx_runner(backbone, spec, cache, stats)
            stats.backend = "onnx"
            return runner
        except Exception as exc:
            log.warning("ONNX Runtime extraction unavailable (%s: %s); using torch", type(exc).__name__, exc)
    stats.backend = "torch"
    return _torch_runner(backbone, device)


# --------------------------------------------------------------------------- extraction


def _file_sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return hashlib.sha256(str(path).encode()).hexdigest()  # unreadable: fails later, per item


def extract_features(
    backbone: nn.Module,
    root: str | os.PathLike[str],
    frame: pd.DataFrame,
    spec: FeatureSpec,
    options: ExtractOptions = ExtractOptions(),
    *,
    num_features: int | None = None,
    boxes: Sequence[tuple[int, int, int, int] | None] | None = None,
) -> FeatureSet:
    """Features of every row of ``frame`` (columns ``path`` relative to ``root``, optional ``sha256``).

    ``boxes`` (one per row): the region of each photo the backbone sees, for a run that crops to
    head and shoulders and has found the landmarks already (:func:`extract_run_features`).
    Cached views are read, missing ones computed and stored. Under ``torch.distributed`` with
    ``options.world_size > 1``, ranks split the missing images and the result is summed across
    ranks, so every rank returns the full set. Unreadable images are logged, marked ``ok=False``
    and get zero vectors rather than stopping the run.
    """
    start = time.perf_counter()
    device = torch.device(options.device)
    paths, shas = frame_paths(Path(root), frame)
    if num_features is None:
        num_features = getattr(backbone, "num_features", None) or _probe_features(backbone, spec)
    job = _Extraction(spec, options.cache, [str(p) for p in frame["path"]], paths, shas, int(num_features))
    job.read_cache()
    _all_ranks_read_the_cache(options.world_size)
    pending = [i for i in range(len(paths)) if job.todo[i]]
    mine = pending[options.rank :: options.world_size]
    if mine:
        job.compute(backbone, mine, options, device, boxes)
    if options.world_size > 1:
        job.gather(mine, pending)
    job.stats.seconds = time.perf_counter() - start
    if job.stats.computed:
        st = job.stats
        log.info(
            "features: %d computed (%s), %d from cache, %.1f s", st.computed, st.backend, st.from_cache, st.seconds
        )
    return FeatureSet(features=job.features, ok=job.failed == 0, stats=job.stats)


def _all_ranks_read_the_cache(world_size: int) -> None:
    """Ranks share the cache folder: without this barrier a fast rank can store part of its shard
    before a slow one has read the cache, the ranks then disagree on what is pending, and the
    shards (and their sum) no longer line up; seen as a flaky DDP result under load."""
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()


class _Extraction:
    """One :func:`extract_features` call's work: which views each image still needs, the vectors
    found so far, the images that failed and the statistics."""

    def __init__(
        self,
        spec: FeatureSpec,
        cache: FeatureCache | None,
        rel_paths: list[str],
        paths: list[Path],
        shas: list[str],
        num_features: int,
    ) -> None:
        self.spec, self.cache, self.rel_paths, self.paths, self.shas = spec, cache, rel_paths, paths, shas
        self.names = spec.view_names()
        self.num_features = num_features
        self.features = torch.zeros(len(paths), len(self.names), num_features)
        self.failed = torch.zeros(len(paths), dtype=torch.int32)
        self.todo: list[list[int]] = []
        self.stats = ExtractionStats()

    def read_cache(self) -> None:
        """Fill in every stored view; ``todo[i]`` lists the views image ``i`` still lacks."""
        for i, sha in enumerate(self.shas):
            stored = self.cache.load(self.spec, sha) if self.cache is not None else {}
            missing = []
            for v, name in enumerate(self.names):
                if name in stored and stored[name].numel() == self.num_features:
                    self.features[i, v] = stored[name]
                    self.stats.from_cache += 1
                else:
                    missing.append(v)
            self.todo.append(missing)

    def compute(
        self,
        backbone: nn.Module,
        mine: list[int],
        options: ExtractOptions,
        device: torch.device,
        boxes: Sequence[tuple[int, int, int, int] | None] | None,
    ) -> None:
        """Run the backbone over this rank's images ``mine`` (decoded by ``options.workers``), storing each view."""
        show_bar = options.progress and options.rank == 0  # one bar under torchrun, not one per rank
        if self.cache is not None:
            self.cache.write_meta(self.spec)
        runner = make_runner(backbone, self.spec, options.backend, device, self.cache, self.stats)
        dataset = _ViewDataset(
            [self.paths[i] for i in mine],
            [self.shas[i] for i in mine],
            [self.todo[i] for i in mine],
            self.spec,
            boxes=[boxes[i] for i in mine] if boxes is not None else None,
        )
        n_views = len(self.names)
        per_batch = max(1, options.batch_size // n_views) if n_views > 1 else options.batch_size
        loader = DataLoader(
            dataset,
            batch_size=per_batch,
            shuffle=False,
            num_workers=options.workers,
            collate_fn=_collate,
            pin_memory=device.type == "cuda",
            persistent_workers=False,
            prefetch_factor=4 if options.workers > 0 else None,
        )
        bar = tqdm(total=len(mine), desc="extracting features", unit="img", disable=not show_bar, leave=False)
        for batch, slots, failed in loader:
            for local, err in failed:
                self._fail(mine[local], err)
            if slots:
                self._store(runner(batch), [(mine[local], v) for local, v in slots])
            bar.update(len(set(s for s, _ in slots)) + len(failed))
        bar.close()

    def _fail(self, i: int, err: str) -> None:
        self.failed[i] = 1
        self.stats.failed.append({"path": self.rel_paths[i], "reason": err})
        log.warning("skipping unreadable image %s (%s)", self.paths[i], err)

    def _store(self, out: torch.Tensor, slots: list[tuple[int, int]]) -> None:
        """Row ``r`` of ``out`` is view ``v`` of image ``i`` for ``slots[r] == (i, v)``."""
        per_image: dict[int, dict[str, torch.Tensor]] = {}
        for row, (i, v) in enumerate(slots):
            self.features[i, v] = out[row]
            per_image.setdefault(i, {})[self.names[v]] = out[row]
        if self.cache is not None:
            for i, views in per_image.items():
                self.cache.store(self.spec, self.shas[i], views)
        self.stats.computed += len(slots)

    def gather(self, mine: list[int], pending: list[int]) -> None:
        """Each rank filled disjoint rows (cached rows identically everywhere): sum the computed ones."""
        n = len(self.paths)
        computed_rows = torch.zeros(n, dtype=torch.bool)
        computed_rows[mine] = True
        contrib = self.features.clone()
        contrib[~computed_rows] = 0
        contrib = all_reduce_sum(contrib)
        pending_rows = torch.zeros(n, dtype=torch.bool)
        pending_rows[pending] = True
        self.features = torch.where(pending_rows[:, None, None], contrib, self.features)
        self.failed = all_reduce_sum(self.failed)
        self.stats.computed = int(all_reduce_sum(torch.tensor([self.stats.computed], dtype=torch.int64)).item())


def frame_paths(root: Path, frame: pd.DataFrame) -> tuple[list[Path], list[str]]:
    """Each row's file and its sha256 (the manifest's, else hashed now): the cache's keys."""
    paths = [Path(root) / p for p in frame["path"]]
    if "sha256" in frame.columns:
        shas = [
            str(s) if isinstance(s, str) and s else _file_sha256(p) for s, p in zip(frame["sha256"], paths, strict=True)
        ]
    else:
        shas = [_file_sha256(p) for p in paths]
    return paths, shas


def pose_views(
    landmarks: Sequence[np.ndarray | None],
    shapes: Sequence[tuple[int, int] | None],
    shas: Sequence[str],
    names: Sequence[str],
    spec: FeatureSpec,
) -> tuple[torch.Tensor, dict[int, str]]:
    """Geometry ``[N, V+1, F]`` for each photo's clean landmarks and ``spec.aug_views`` views made in
    landmark space (seeded like the CNN views), and the reason for each photo that cannot be assessed."""
    from posture.pose.geometry import augment_landmarks, compute_features, posture_features

    n_views = spec.aug_views + 1
    out = torch.zeros(len(landmarks), n_views, len(names))
    reasons: dict[int, str] = {}
    for i, (lm, shape) in enumerate(zip(landmarks, shapes, strict=True)):
        clean, reason = posture_features(lm, names, shape)
        if clean is None or lm is None:  # no features without landmarks
            reasons[i] = reason or "cannot assess"
            continue
        out[i, 0] = torch.from_numpy(clean)
        for v in range(1, n_views):
            rng = np.random.default_rng(spec.view_seed(shas[i], v))
            view = augment_landmarks(lm, rng, spec.aug_strength, view3d=spec.aug_view3d)
            out[i, v] = torch.from_numpy(np.nan_to_num(compute_features(view, names, shape)))
    return out, reasons


def extract_run_features(
    model: PostureClassifier,
    root: str | os.PathLike[str],
    frame: pd.DataFrame,
    spec: FeatureSpec,
    options: ExtractOptions = ExtractOptions(),
    *,
    detector: Any = None,
) -> FeatureSet:
    """The head's raw input for every row, for any extractor of the zoo: ``[CNN ‖ geometry]``.

    Runs that read landmarks (the ``pose`` extractor, fusions, ``--crop pose``) find them first,
    once per photo (:func:`posture.pose.landmarks.detect_landmarks`, cached); the CNN then sees each
    photo's head-and-shoulders crop from those landmarks, and the geometry and its augmented views
    come from them too. Photos a pose-based run cannot assess get ``ok=False`` and a reason.
    """
    root = Path(root)
    uses_pose = bool(getattr(model, "pose_features", ()))
    uses_image = getattr(model, "uses_image", True)
    crops = spec.preprocessing.crop == "pose" and uses_image
    shas: list[str] = []
    marks: LandmarkSet | None = None
    if uses_pose or crops:
        shas, marks = _landmark_stage(root, frame, options, detector)
    parts: list[torch.Tensor] = []
    ok = torch.ones(len(frame), dtype=torch.bool)
    stats = ExtractionStats()
    if uses_image:
        boxes = _pose_boxes(marks, spec) if crops else None
        cnn = extract_features(model.backbone, root, frame, spec, options, num_features=model.num_features, boxes=boxes)
        parts.append(cnn.features)
        ok &= cnn.ok
        stats = cnn.stats
    not_assessed: dict[int, str] = {}
    if uses_pose and marks is not None:
        geometry, not_assessed = _geometry_part(marks, shas, model.pose_features, spec, frame, ok, stats)
        parts.append(geometry)
    features = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
    views = None
    if uses_pose and marks is not None:
        from posture.pose.geometry import view_of

        views = [view_of(lm) if lm is not None else None for lm in marks.landmarks]
    return FeatureSet(
        features=features,
        ok=ok,
        stats=stats,
        not_assessed=not_assessed,
        landmarks=marks.to_dict() if marks is not None else None,
        views=views,
    )


def _landmark_stage(
    root: Path, frame: pd.DataFrame, options: ExtractOptions, detector: Any
) -> tuple[list[str], LandmarkSet]:
    """Every row's sha256 and landmarks, found before any pixels reach the CNN: both the crop boxes
    and the geometry come from them, so BlazePose runs once per photo however many views follow."""
    from posture.pose.landmarks import detect_landmarks

    paths, shas = frame_paths(root, frame)
    marks = detect_landmarks(
        paths,
        shas,
        options.cache,
        detector=detector,
        workers=options.workers,
        progress=options.progress,
        rank=options.rank,
        world_size=options.world_size,
    )
    return shas, marks


def _pose_boxes(marks: Any, spec: FeatureSpec) -> list[tuple[int, int, int, int] | None] | None:
    """Each photo's head-and-shoulders crop from its landmarks (None where it has none)."""
    from posture.pose.detector import crop_box

    if marks is None:
        return None
    scale = spec.preprocessing.crop_scale
    return [
        crop_box(shape, lm, scale) if shape is not None else None
        for lm, shape in zip(marks.landmarks, marks.shapes, strict=True)
    ]


def _geometry_part(
    marks: Any,
    shas: list[str],
    names: tuple[str, ...],
    spec: FeatureSpec,
    frame: pd.DataFrame,
    ok: torch.Tensor,
    stats: ExtractionStats,
) -> tuple[torch.Tensor, dict[int, str]]:
    """Geometry views of every row, marking in ``ok``/``stats`` the photos BlazePose could not read
    (a decode failure is reported once, even when the CNN part reported it too)."""
    geometry, not_assessed = pose_views(marks.landmarks, marks.shapes, shas, names, spec)
    for i, reason in marks.failed.items():
        ok[i] = False
        not_assessed.pop(i, None)
        path = str(frame["path"].iloc[i])
        if not any(f["path"] == path for f in stats.failed):
            stats.failed.append({"path": path, "reason": reason})
    for i in not_assessed:
        ok[i] = False
    stats.seconds += marks.seconds
    return geometry, not_assessed


def _probe_features(backbone: nn.Module, spec: FeatureSpec) -> int:
    size = spec.preprocessing.input_size
    with torch.inference_mode():
        was_training = backbone.training
        out = backbone.eval().cpu()(torch.zeros(1, 3, size, size))
        backbone.train(was_training)
    return int(out.shape[-1])


__all__ = [
    "FeatureSpec",
    "FeatureCache",
    "FeatureSet",
    "ExtractionStats",
    "ExtractOptions",
    "extract_features",
    "extract_run_features",
    "default_cache_dir",
    "export_backbone_onnx",
    "frame_paths",
    "make_runner",
    "pose_views",
    "BACKENDS",
]
