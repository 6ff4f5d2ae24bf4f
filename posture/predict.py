"""One Predictor for every consumer: evaluation, the CLI, the web app and the benchmarks.

Why one class: train/serve skew comes from two preprocessing paths drifting apart. Everything that
turns a photo into probabilities goes through :meth:`Predictor.predict_proba`, which uses the
run's own preprocessing (``config.json``), its fitted temperature and its decision threshold.

Two backends answer the same question (normalised batch in, logits out): eager PyTorch, and ONNX
Runtime on the ``model.onnx`` that ``python -m posture.export`` writes after checking parity.
ONNX Runtime is the default when that file is present and newer than the weights, because on a
CPU it is the faster of the two; the torch model stays loaded either way for Grad-CAM.

``python -m posture.predict --run models/RUN photo.jpg folder/ 'shots/*.png'`` prints one result
per image; a file that cannot be read is reported and the rest still run.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from posture.checkpoint import WEIGHTS_NAME, load_checkpoint
from posture.cli import UserError, add_logging_flags, run_main, setup_logging
from posture.images import ImageDecodeError, load_rgb_array
from posture.transforms import Preprocessing, build_eval_transform

log = logging.getLogger(__name__)

ImageInput = np.ndarray | Image.Image | str | os.PathLike[str] | bytes

#: The exported graph beside the weights (written by ``python -m posture.export``).
ONNX_NAME = "model.onnx"
BACKENDS = ("auto", "torch", "onnx")
#: What the CLI picks up when handed a folder.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})


@dataclass(frozen=True)
class Prediction:
    """The answer for one image: the decided label, its confidence and every class's probability."""

    label: str
    confidence: float
    probabilities: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "confidence": self.confidence, "probabilities": self.probabilities}


class Backend(Protocol):
    """Turns a normalised ``N×3×S×S`` float32 batch into ``N×C`` logits."""

    name: str

    def logits(self, batch: np.ndarray) -> np.ndarray: ...


def physical_cores() -> int:
    """Physical CPU cores available to this process.

    Why not ``os.cpu_count()``: hyper-threads share one core's vector units, so running one
    inference thread per logical CPU mostly adds contention; both PyTorch's default and ONNX
    Runtime's guidance are one intra-op thread per physical core.
    """
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = os.cpu_count() or 1
    cores: set[tuple[str, str]] = set()
    try:
        physical_id = core_id = ""
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "physical id":
                physical_id = value
            elif key == "core id":
                core_id = value
            elif not key:
                if core_id:
                    cores.add((physical_id, core_id))
                physical_id = core_id = ""
        if core_id:
            cores.add((physical_id, core_id))
    except OSError:
        pass
    # cpuinfo lists the whole machine; a container's affinity mask may allow fewer CPUs.
    return max(1, min(len(cores) or available, available))


class TorchBackend:
    """Eager PyTorch in inference mode; channels-last on CPU, where it speeds up convolutions."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, device: torch.device | str = "cpu", threads: int | None = None) -> None:
        self.device = torch.device(device)
        if threads is not None and self.device.type == "cpu":
            # Process-wide in PyTorch; only set when the caller (a CLI, the app) asks for it.
            torch.set_num_threads(max(1, int(threads)))
        self.model = model.to(self.device).eval()
        self.channels_last = self.device.type == "cpu"
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return self.model(x).float().cpu().numpy()


class OnnxBackend:
    """ONNX Runtime on ``model.onnx``: all graph optimisations, one intra-op thread per physical core."""

    name = "onnx"

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None, device: str = "cpu") -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = int(threads) if threads else physical_cores()
        # One image batch at a time has no independent branches worth a second pool.
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.path = Path(path)
        self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def logits(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        return np.asarray(self.session.run([self.output_name], {self.input_name: x})[0], dtype=np.float32)


def resolve_backend(run_dir: str | os.PathLike[str], backend: str = "auto", device: str | torch.device = "cpu") -> str:
    """``auto`` → ``onnx`` when ``model.onnx`` exists, is newer than the weights and the device is
    a CPU; otherwise ``torch``. Asking for ``onnx`` without the file is a user error."""
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    run = Path(run_dir)
    onnx_path, weights = run / ONNX_NAME, run / WEIGHTS_NAME
    if backend == "torch":
        return "torch"
    if backend == "onnx":
        if not onnx_path.is_file():
            raise UserError(f"{onnx_path} does not exist; export it with `python -m posture.export --run {run}`")
        return "onnx"
    if not onnx_path.is_file() or torch.device(device).type != "cpu":
        return "torch"
    if weights.is_file() and onnx_path.stat().st_mtime < weights.stat().st_mtime:
        log.warning("%s is older than %s (retrained?); using torch. Re-export with `python -m posture.export "
                    "--run %s`", onnx_path, WEIGHTS_NAME, run)
        return "torch"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        log.warning("onnxruntime is not installed; using torch")
        return "torch"
    return "onnx"


def to_rgb_array(image: ImageInput) -> np.ndarray:
    """Accept what callers naturally have (array, PIL image, path, bytes) as ``H×W×3 uint8`` RGB."""
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise ValueError(f"expected an H×W×3 RGB array, got shape {image.shape}")
        if image.shape[2] == 4:
            image = image[..., :3]
        return np.ascontiguousarray(image.astype(np.uint8, copy=False))
    if isinstance(image, Image.Image):
        from posture.images import to_rgb8

        return np.asarray(to_rgb8(image))
    return load_rgb_array(image)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits.astype(np.float64) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class Predictor:
    """A trained run, ready to answer: preprocessing, backend, temperature and threshold in one place."""

    def __init__(self, config: dict[str, Any], backend: Backend, model: torch.nn.Module | None = None,
                 run_dir: Path | None = None) -> None:
        self.config = config
        self.backend = backend
        self.model = model  # kept for Grad-CAM even when the ONNX backend answers
        self.run_dir = run_dir
        self.class_names: list[str] = list(config["classes"])
        self.preprocessing = Preprocessing.from_dict(config["preprocessing"])
        self._transform = build_eval_transform(self.preprocessing)
        calibration = config.get("calibration") or {}
        self.temperature = float(calibration.get("temperature", 1.0))
        self.threshold: float | None = calibration.get("threshold")
        self.positive_class: str = calibration.get("positive_class", self.class_names[0])

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike[str], backend: str = "auto",
                 device: str | torch.device = "cpu", threads: int | None = None) -> Predictor:
        """Load ``models/RUN``.

        ``backend``: ``auto`` (ONNX Runtime when an up-to-date ``model.onnx`` is there, else
        torch), ``torch`` or ``onnx``. ``threads``: intra-op threads per forward pass (default:
        PyTorch's own setting for torch, one per physical core for ONNX Runtime). A server that
        runs k requests at once should pass ``physical_cores() // k``: more threads than cores
        makes OpenMP's spinning workers fight, and eager PyTorch then slows down many times over.
        """
        from posture.models import model_from_config

        chosen = resolve_backend(run_dir, backend, device)
        ckpt = load_checkpoint(run_dir)
        model = model_from_config(ckpt.config)
        model.load_state_dict(ckpt.state_dict)
        model.eval()
        if threads is not None and torch.device(device).type == "cpu":
            # Process-wide in PyTorch; it matters for ONNX too, since Grad-CAM runs the torch model.
            torch.set_num_threads(max(1, int(threads)))
        engine: Backend
        if chosen == "onnx":
            engine = OnnxBackend(Path(run_dir) / ONNX_NAME, threads=threads, device=str(device))
            model = model.to(device)
        else:
            engine = TorchBackend(model, device, threads=threads)
        log.debug("predictor for %s on %s (%s)", run_dir, chosen, device)
        return cls(ckpt.config, engine, model=model, run_dir=Path(run_dir))

    @property
    def backend_name(self) -> str:
        return getattr(self.backend, "name", type(self.backend).__name__)

    def preprocess(self, image: ImageInput) -> np.ndarray:
        """The one eval pipeline: crop (if the run does), letterbox to the model's size, normalise;
        ``3×S×S`` float32."""
        return self._transform(image=to_rgb_array(image))["image"].numpy()

    def crop_box(self, image: ImageInput) -> tuple[int, int, int, int]:
        """The region ``(x_min, y_min, x_max, y_max)`` of the photo the model sees: the whole photo,
        or head and shoulders for a run trained with ``--crop pose``."""
        rgb = to_rgb_array(image)
        first = self._transform.transforms[0] if len(self._transform.transforms) else None
        if first is not None and hasattr(first, "box"):
            return first.box(rgb)
        return 0, 0, int(rgb.shape[1]), int(rgb.shape[0])

    def logits(self, images: Sequence[ImageInput], batch_size: int = 32) -> np.ndarray:
        out = []
        for start in range(0, len(images), batch_size):
            batch = np.stack([self.preprocess(im) for im in images[start:start + batch_size]]).astype(np.float32)
            out.append(self.backend.logits(batch))
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)

    def predict_proba(self, images: Sequence[ImageInput], batch_size: int = 32, calibrated: bool = True) -> np.ndarray:
        """``N×C`` probabilities in class order, with the run's temperature unless ``calibrated=False``."""
        return softmax(self.logits(images, batch_size), self.temperature if calibrated else 1.0)

    def decide(self, probabilities: np.ndarray) -> tuple[str, float]:
        """Apply the stored decision threshold (binary runs) or argmax; returns (label, confidence)."""
        if self.threshold is not None and len(self.class_names) == 2:
            pos = self.class_names.index(self.positive_class)
            idx = pos if probabilities[pos] >= float(self.threshold) else 1 - pos
        else:
            idx = int(np.argmax(probabilities))
        return self.class_names[idx], float(probabilities[idx])

    def predict(self, image: ImageInput) -> Prediction:
        return self.predict_many([image])[0]

    def predict_many(self, images: Sequence[ImageInput], batch_size: int = 32) -> list[Prediction]:
        probs = self.predict_proba(images, batch_size)
        results = []
        for row in probs:
            label, confidence = self.decide(row)
            results.append(Prediction(label, confidence, {c: float(p) for c, p in zip(self.class_names, row)}))
        return results


# --------------------------------------------------------------------------------------------- CLI

def expand_inputs(items: Iterable[str]) -> list[tuple[str, str | None]]:
    """Turn ``IMAGE|DIR|GLOB`` arguments into ``(path, problem)`` pairs, in a stable order.

    A folder contributes its image files (recursively, sorted); a glob its matches; an argument
    that matches nothing comes back with a problem instead of stopping the others.
    """
    out: list[tuple[str, str | None]] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            out.extend((str(p), None) for p in files)
            if not files:
                out.append((item, "folder holds no image files"))
        elif path.exists():
            out.append((item, None))
        elif glob.has_magic(item):
            matches = sorted(m for m in glob.glob(item, recursive=True) if Path(m).is_file())
            out.extend((m, None) for m in matches)
            if not matches:
                out.append((item, "pattern matched no files"))
        else:
            out.append((item, "no such file"))
    return out


def _format_line(path: str, pred: Prediction) -> str:
    probs = "  ".join(f"{name}={p:.3f}" for name, p in pred.probabilities.items())
    return f"{path}\t{pred.label}\t{pred.confidence:.3f}\t{probs}"


def predict_paths(predictor: Predictor, items: Sequence[str], as_json: bool = False, batch_size: int = 16,
                  stream: Any = None) -> int:
    """Predict every image named by ``items`` and write one line each; returns the failure count.

    Images are decoded one by one (so a broken file only costs itself) and sent in batches.
    """
    stream = stream or sys.stdout
    failures = 0
    pending: list[tuple[str, np.ndarray]] = []

    def report_error(path: str, problem: str) -> None:
        nonlocal failures
        failures += 1
        log.error("%s: %s", path, problem)
        if as_json:
            print(json.dumps({"path": path, "error": problem}), file=stream, flush=True)

    def flush() -> None:
        if not pending:
            return
        for (path, _), pred in zip(pending, predictor.predict_many([im for _, im in pending], batch_size)):
            line = json.dumps({"path": path, **pred.to_dict()}) if as_json else _format_line(path, pred)
            print(line, file=stream, flush=True)
        pending.clear()

    for path, problem in expand_inputs(items):
        if problem is not None:
            report_error(path, problem)
            continue
        try:
            pending.append((path, load_rgb_array(path)))
        except ImageDecodeError as exc:
            report_error(path, f"{exc.reason} ({exc.detail})")
        except OSError as exc:
            report_error(path, f"unreadable ({exc.strerror or exc})")
        if len(pending) >= batch_size:
            flush()
    flush()
    return failures


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m posture.predict",
        description="Classify photos with a trained run: one line per image (label, confidence, every "
                    "class's probability), using the run's preprocessing, temperature and threshold. "
                    "Exit code 0 when every image was classified, 1 when any could not be read, 2 for "
                    "usage errors.")
    parser.add_argument("inputs", nargs="+", metavar="IMAGE|DIR|GLOB",
                        help="image files, folders (searched recursively) or quoted glob patterns")
    parser.add_argument("--run", required=True, help="trained run folder, e.g. models/sample")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per line: path, label, confidence, probabilities (or error)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="auto (default): ONNX Runtime when the run has an up-to-date model.onnx, else torch")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto (torch backend)")
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads (default: one per physical core)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    add_logging_flags(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    from posture.device import resolve_device

    if args.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    if args.threads is not None and args.threads < 1:
        raise UserError("--threads must be at least 1")
    device = resolve_device(args.device)
    threads = args.threads or physical_cores()
    predictor = Predictor.from_run(args.run, backend=args.backend, device=device, threads=threads)
    log.debug("backend: %s", predictor.backend_name)
    failures = predict_paths(predictor, args.inputs, as_json=args.json, batch_size=args.batch_size)
    if failures:
        log.error("%d input(s) could not be classified", failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(run_main(main))
