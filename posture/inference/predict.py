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
import copy
import glob
import json
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from PIL import Image
from scipy import special

from posture.cli import UserError, add_logging_flags, add_options, config_from_args, option, run_main, setup_logging
from posture.data.transforms import Preprocessing, build_eval_transform
from posture.io.fileio import DamagedFileError
from posture.io.formats import BACKENDS, IMAGE_EXTENSIONS, ONNX_NAME, WEIGHTS_NAME
from posture.io.images import MODEL_MAX_SIDE, ImageDecodeError, fit_within, load_rgb_array, to_rgb8
from posture.pose.geometry import GEOMETRY_VERSION, changed_since
from posture.runs.checkpoint import load_checkpoint
from posture.runtime.device import physical_cores

if TYPE_CHECKING:
    from posture.models.classifier import PostureClassifier
    from posture.pose.detector import OtherPeople

log = logging.getLogger(__name__)

ImageInput = np.ndarray | Image.Image | str | os.PathLike[str] | bytes

#: A view with fewer training photos than this is one the run has not learnt (:meth:`Predictor.outside_training`).
MIN_VIEW_PHOTOS = 5
#: Names of the exported graph's inputs for the Predictor's ``images`` and ``geometry``.
ONNX_INPUTS = {"images": "input", "geometry": "geometry"}
#: The reason given for an answer that is not a number (never a label with NaN confidences).
NOT_A_NUMBER = (
    "the model gave no usable answer for this photo (its probabilities are not numbers); the run or "
    "its model.onnx is damaged: export or train it again"
)


def _with_note(text: str | None, note: str | None) -> str | None:
    """``text`` followed by ``note`` (either may be missing)."""
    return " ".join(part for part in (text, note) if part) or None


@dataclass(frozen=True)
class Prediction:
    """The answer for one image: the decided label, its confidence and every class's probability.

    A pose-based run that cannot assess the photo (nobody found, head and shoulders not visible)
    answers ``label=None`` with the ``reason``. Pose-based answers also carry the ``geometry`` that
    decided them and an ``explanation`` in words.
    """

    label: str | None
    confidence: float | None
    probabilities: dict[str, float] | None
    reason: str | None = None
    geometry: dict[str, float] | None = None
    explanation: str | None = None
    #: The view the photo shows, as the landmarks say (front / oblique / side); pose-based runs only.
    view: str | None = None
    #: How many other people the photo shows beside the one measured (``None``: not looked for,
    #: the run reads no landmarks); the explanation, or the reason, says which one was measured.
    others: int | None = None

    @property
    def assessed(self) -> bool:
        return self.label is not None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "confidence": self.confidence, "probabilities": self.probabilities}
        if not self.assessed:
            out["reason"] = self.reason
        if self.view is not None:
            out["view"] = self.view
        if self.geometry is not None:
            out["geometry"] = self.geometry
        if self.explanation is not None:
            out["explanation"] = self.explanation
        if self.others is not None:
            out["others"] = self.others
        return out


@dataclass(frozen=True)
class Analysis:
    """What the Predictor saw in one photo before the network: the pixels, the landmarks (runs that
    read them), the region the CNN sees, the raw geometry, or why the photo cannot be assessed."""

    rgb: np.ndarray
    landmarks: np.ndarray | None = None
    box: tuple[int, int, int, int] | None = None
    geometry: np.ndarray | None = None
    reason: str | None = None
    #: Who else the photo shows (runs that read landmarks, when a person was found).
    others: OtherPeople | None = None
    view: str | None = None


@dataclass(frozen=True)
class Prepared:
    """One photo made ready for the network, without its pixels: what :meth:`Predictor.predict_prepared`
    needs to answer. Small, so a worker process that decoded the photo can hand it back cheaply,
    and a batch of them costs memory by the model's input size, never by the photo's.

    ``problem``: the photo could not be read (it gets an error, not an answer); ``inputs``: the
    network's inputs, one row per key (``None`` when the photo cannot be assessed, see ``reason``).
    """

    problem: str | None = None
    reason: str | None = None
    inputs: dict[str, np.ndarray] | None = None
    geometry: np.ndarray | None = None
    others: OtherPeople | None = None
    view: str | None = None
    #: Metres per unit of the scaled geometry, for an explanation in centimetres
    #: (:func:`posture.pose.geometry.metric_scales`).
    scales: dict[str, float] | None = None


class Backend(Protocol):
    """Turns the network's inputs (``images``: a normalised ``N×3×S×S`` float32 batch, and/or
    ``geometry``: ``N×F`` raw posture geometry) into ``N×C`` logits."""

    name: str

    def logits(self, inputs: dict[str, np.ndarray]) -> np.ndarray: ...


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

    def logits(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            x = geometry = None
            if "images" in inputs:
                x = torch.from_numpy(np.ascontiguousarray(inputs["images"])).to(self.device)
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
            if "geometry" in inputs:
                geometry = torch.from_numpy(np.ascontiguousarray(inputs["geometry"], dtype=np.float32)).to(self.device)
            return self.model(x, geometry).float().cpu().numpy()


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
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime's errors share no base class but Exception
            reason = str(exc).splitlines()[0].rsplit("failed:", 1)[-1].strip(" .") if str(exc) else type(exc).__name__
            raise DamagedFileError(f"{self.path} cannot be loaded by ONNX Runtime ({reason})") from exc
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_name = self.session.get_outputs()[0].name

    def logits(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        feed = {
            ONNX_INPUTS[key]: np.ascontiguousarray(value, dtype=np.float32)
            for key, value in inputs.items()
            if ONNX_INPUTS[key] in self.input_names
        }
        return np.asarray(self.session.run([self.output_name], feed)[0], dtype=np.float32)


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
        log.warning(
            "%s is older than %s (retrained?); using torch. Re-export with `python -m posture.export --run %s`",
            onnx_path,
            WEIGHTS_NAME,
            run,
        )
        return "torch"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        log.warning("onnxruntime is not installed; using torch")
        return "torch"
    return "onnx"


def _load_onnx(run: Path, required: bool, threads: int | None, device: str) -> OnnxBackend | None:
    """The ONNX backend, or ``None`` (with a warning) when ``model.onnx`` is damaged and torch can answer
    instead; asked for explicitly (``required``), a damaged graph is a :class:`UserError`."""
    remedy = f"re-export it with `python -m posture.export --run {run}`"
    try:
        return OnnxBackend(run / ONNX_NAME, threads=threads, device=device)
    except DamagedFileError as exc:
        if required:
            raise UserError(f"{exc}; {remedy}, or use --backend torch") from None
        log.warning("%s; using torch instead (same answers, slower). To use ONNX Runtime again, %s", exc, remedy)
        return None


def to_rgb_array(image: ImageInput, max_side: int | None = MODEL_MAX_SIDE) -> np.ndarray:
    """Accept what callers naturally have (array, PIL image, path, bytes) as ``H×W×3 uint8`` RGB,
    at most ``max_side`` pixels on its long side (:data:`posture.io.images.MODEL_MAX_SIDE`: the size
    the model needs; files are decoded at that size, arrays downscaled to it), so every way of
    handing the Predictor a photo gives the same answer and a huge photo costs no more than a big one."""
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise ValueError(f"expected an H×W×3 RGB array, got shape {image.shape}")
        if image.shape[2] == 4:
            image = image[..., :3]
        rgb = np.ascontiguousarray(image.astype(np.uint8, copy=False))
        if max_side is None or max(rgb.shape[:2]) <= max_side:
            return rgb
        return np.asarray(fit_within(Image.fromarray(rgb), max_side))
    if isinstance(image, Image.Image):
        return np.asarray(fit_within(to_rgb8(image), max_side))
    return load_rgb_array(image, max_side=max_side)


def read_problem(exc: ImageDecodeError | OSError) -> str:
    """Why a photo could not be read, as one short phrase (the CLI's error lines, ``--upright``)."""
    if isinstance(exc, ImageDecodeError):
        return f"{exc.reason} ({exc.detail})"
    return f"unreadable ({exc.strerror or exc})"


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities of ``logits`` ``[N, C]`` at ``temperature`` (computed in float64)."""
    return special.softmax(logits.astype(np.float64) / float(temperature), axis=1).astype(np.float32)


class Predictor:
    """A trained run, ready to answer: landmarks, crop, preprocessing, backend, temperature,
    threshold and (optionally) a session's upright reference, in one place."""

    def __init__(
        self,
        config: dict[str, Any],
        backend: Backend,
        model: PostureClassifier | None = None,
        run_dir: Path | None = None,
        detector: Any = None,
    ) -> None:
        """``detector``: a :class:`~posture.pose.detector.PoseDetector` to share (and its cache of answers) with
        other predictors; by default one is built on first use."""
        from posture.models import extractor_parts

        self.config = config
        self.backend = backend
        self.model = model  # kept for Grad-CAM and explanations even when the ONNX backend answers
        self.run_dir = run_dir
        self.class_names: list[str] = list(config["classes"])
        self.preprocessing = Preprocessing.from_dict(config["preprocessing"])
        parts = extractor_parts(str(config.get("architecture", "")))
        self.uses_image = parts.cnn is not None
        pose = config.get("pose") or {}
        self.pose_features: tuple[str, ...] = (
            tuple(f["name"] if isinstance(f, dict) else str(f) for f in pose.get("features", [])) if parts.pose else ()
        )
        trained_version = int(pose.get("geometry_version", 1))
        stale = changed_since(self.pose_features, trained_version)
        if stale:
            where = run_dir if run_dir is not None else "this run"
            raise UserError(
                f"{where} was trained when {', '.join(stale)} meant something else (posture geometry version "
                f"{trained_version}, now {GEOMETRY_VERSION}); its head would misread today's "
                "numbers: train it again with `python -m posture.finetune`"
            )
        self.upright = np.asarray(pose["upright_reference"], np.float64) if pose.get("upright_reference") else None
        #: What the run saw in training (``pose.coverage``): geometry outside it cannot be assessed.
        self.coverage: dict[str, Any] | None = pose.get("coverage") or None
        #: Mean raw geometry of this session's upright photos (:meth:`with_reference`); None: uncalibrated.
        self.reference: np.ndarray | None = None
        self.crops = self.uses_image and self.preprocessing.crop == "pose"
        self._detector: Any = detector
        self._transform = build_eval_transform(self.preprocessing, crop=False)
        self.temperature, self.threshold, self.positive_class = self._calibration(config.get("calibration"))

    def _calibration(self, record: dict[str, Any] | None) -> tuple[float, float | None, str]:
        """(temperature, threshold, positive class) of a ``calibration`` record; none: raw argmax."""
        from posture.evaluation.metrics import positive_index

        record = record or {}
        threshold = record.get("threshold")
        positive = record.get("positive_class")
        if positive not in self.class_names:
            positive = self.class_names[positive_index(self.class_names)]
        return float(record.get("temperature", 1.0)), None if threshold is None else float(threshold), str(positive)

    @classmethod
    def from_run(
        cls,
        run_dir: str | os.PathLike[str],
        backend: str = "auto",
        device: str | torch.device = "cpu",
        threads: int | None = None,
        detector: Any = None,
    ) -> Predictor:
        """Load ``models/RUN``.

        ``backend``: ``auto`` (ONNX Runtime when an up-to-date ``model.onnx`` is there, else
        torch), ``torch`` or ``onnx``. ``threads``: intra-op threads per forward pass (default:
        PyTorch's own setting for torch, one per physical core for ONNX Runtime). A server that
        runs k requests at once should pass ``physical_cores() // k``: more threads than cores
        makes OpenMP's spinning workers fight, and eager PyTorch then slows down many times over.
        A pose-based run needs MediaPipe; without it this says what to install.
        """
        from posture.models import model_from_config

        chosen = resolve_backend(run_dir, backend, device)
        ckpt = load_checkpoint(run_dir)
        model = model_from_config(ckpt.config)
        ckpt.load_into(model)
        model.eval()
        if model.uses_pose or model.preprocessing.crop == "pose":
            from posture.pose.detector import load_blazepose

            load_blazepose()
        if threads is not None and torch.device(device).type == "cpu":
            # Process-wide in PyTorch; it matters for ONNX too, since Grad-CAM runs the torch model.
            torch.set_num_threads(max(1, int(threads)))
        engine: Backend | None = None
        if chosen == "onnx":
            engine = _load_onnx(Path(run_dir), required=backend == "onnx", threads=threads, device=str(device))
            chosen = "onnx" if engine is not None else "torch"
        if engine is not None:
            model = model.to(device)
        else:
            engine = TorchBackend(model, device, threads=threads)
        log.debug("predictor for %s on %s (%s)", run_dir, chosen, device)
        return cls(ckpt.config, engine, model=model, run_dir=Path(run_dir), detector=detector)

    @property
    def backend_name(self) -> str:
        return getattr(self.backend, "name", type(self.backend).__name__)

    @property
    def uses_pose(self) -> bool:
        """Whether this run reads posture geometry (and so can answer "cannot assess")."""
        return bool(self.pose_features)

    @property
    def needs_landmarks(self) -> bool:
        return self.uses_pose or self.crops

    @property
    def detector(self) -> Any:
        """One BlazePose graph for this predictor, built on first use (thread-safe, see PoseDetector)."""
        if self._detector is None:
            from posture.pose.detector import PoseDetector

            self._detector = PoseDetector()
        return self._detector

    # -- what the network is fed ------------------------------------------------------------------
    def analyse(self, image: ImageInput, *, within_training: bool = True) -> Analysis:
        """Landmarks (once per photo), the CNN's region and the raw geometry, or why it cannot be assessed.

        ``within_training=False`` keeps geometry that lies outside what the run was trained on (a session's
        upright reference photo, which calibration then moves into it)."""
        rgb = to_rgb_array(image)
        if not self.needs_landmarks:
            return Analysis(rgb)
        from posture.pose.detector import crop_box, other_people
        from posture.pose.geometry import posture_features, view_of

        landmarks = self.detector.detect(rgb)
        others = other_people(landmarks, self.detector.faces(rgb)) if landmarks is not None else None
        box = crop_box(rgb.shape, landmarks, self.preprocessing.crop_scale) if self.crops else None
        if not self.uses_pose:
            return Analysis(rgb, landmarks, box, others=others)
        geometry, reason = posture_features(landmarks, self.pose_features, rgb.shape[:2])
        view = view_of(landmarks) if landmarks is not None and reason is None else None
        if geometry is not None and view is not None and within_training:
            reason = self.outside_training(geometry, view)
            if reason is not None:
                geometry = None
        return Analysis(rgb, landmarks, box, geometry, reason, others, view)

    def outside_training(self, geometry: np.ndarray, view: str) -> str | None:
        """Why this photo lies outside what the run was trained on (``None``: inside), so the answer would
        be a head's extrapolation: a view it never saw, or geometry beyond the training photos' range
        (``config.json`` ``pose.coverage``, :func:`posture.training.finetune.training_coverage`)."""
        from posture.pose.geometry import format_value, phrase

        if not self.coverage:
            return None
        views = self.coverage.get("views") or {}
        if views and int(views.get(view, 0)) < MIN_VIEW_PHOTOS:
            seen = ", ".join(sorted(v for v, n in views.items() if int(n) >= MIN_VIEW_PHOTOS)) or "none"
            return f"the model was not trained on {view} views (trained on: {seen})"
        bounds = self.coverage.get("range") or {}
        values = self.geometry_input(geometry)
        for name, value in zip(self.pose_features, values, strict=True):
            if name in bounds and not bounds[name][0] <= value <= bounds[name][1]:
                low, high = (format_value(name, float(b)) for b in bounds[name])
                return (
                    f"this photo is outside what the model was trained on ({phrase(name, float(value))}; "
                    f"trained on {low} to {high})"
                )
        return None

    def prepare(self, image: ImageInput) -> Prepared:
        """Read and analyse one photo and compute its network inputs; a photo that cannot be read
        comes back with its ``problem`` instead of raising, so a batch goes on without it."""
        try:
            return self.prepared(self.analyse(image))
        except (ImageDecodeError, OSError) as exc:
            return Prepared(problem=read_problem(exc))

    def prepared(self, analysis: Analysis) -> Prepared:
        """An analysis reduced to what answering needs (:class:`Prepared`): no pixels, no landmarks."""
        inputs = self.inputs([analysis]) if analysis.reason is None else None
        scales = None
        if self.uses_pose and analysis.geometry is not None and analysis.landmarks is not None:
            from posture.pose.geometry import metric_scales

            scales = metric_scales(analysis.landmarks)
        return Prepared(
            reason=analysis.reason,
            inputs=inputs,
            geometry=analysis.geometry,
            others=analysis.others,
            view=analysis.view,
            scales=scales,
        )

    def preprocess(self, image: ImageInput | Analysis) -> np.ndarray:
        """The one eval pipeline of the CNN part: crop (if the run does), letterbox to the model's size,
        normalise; ``3×S×S`` float32."""
        if not self.uses_image:
            raise ValueError(f"{self.config.get('architecture')} reads no pixels (posture geometry only)")
        analysis = image if isinstance(image, Analysis) else self.analyse(image)
        rgb = analysis.rgb
        if analysis.box is not None:
            x0, y0, x1, y1 = analysis.box
            rgb = np.ascontiguousarray(rgb[y0:y1, x0:x1])
        return self._transform(image=rgb)["image"].numpy()

    def crop_box(self, image: ImageInput | Analysis) -> tuple[int, int, int, int]:
        """The region ``(x_min, y_min, x_max, y_max)`` of the photo the CNN sees: the whole photo,
        or head and shoulders for a run that crops (fusions, ``--crop pose``)."""
        analysis = image if isinstance(image, Analysis) else self.analyse(image)
        if analysis.box is not None:
            return analysis.box
        return 0, 0, int(analysis.rgb.shape[1]), int(analysis.rgb.shape[0])

    def geometry_input(self, geometry: np.ndarray) -> np.ndarray:
        """The geometry the head reads: raw, or moved by this session's offset from the training
        sessions' upright photos when a reference is set (:meth:`with_reference`)."""
        geometry = np.asarray(geometry, np.float64)
        if self.reference is not None and self.upright is not None:
            return geometry - self.reference + self.upright
        return geometry

    def inputs(self, analyses: Sequence[Analysis]) -> dict[str, np.ndarray]:
        """The network's inputs for assessed photos (every analysis here must be assessable)."""
        out: dict[str, np.ndarray] = {}
        if self.uses_image:
            out["images"] = np.stack([self.preprocess(a) for a in analyses]).astype(np.float32)
        if self.uses_pose:
            rows = []
            for a in analyses:
                if a.geometry is None:
                    raise ValueError(f"cannot assess this photo: {a.reason}")
                rows.append(self.geometry_input(a.geometry))
            out["geometry"] = np.stack(rows).astype(np.float32)
        return out

    # -- answers ------------------------------------------------------------------------------------
    def logits_of(self, analyses: Sequence[Analysis], batch_size: int = 32) -> np.ndarray:
        """``N×C`` logits of analysed photos; NaN rows for the ones that cannot be assessed."""
        return self.logits_of_prepared([self.prepared(a) for a in analyses], batch_size)

    def logits_of_prepared(self, items: Sequence[Prepared], batch_size: int = 32) -> np.ndarray:
        """``N×C`` logits of prepared photos, ``batch_size`` assessable ones per forward pass; NaN rows
        for the others. Rows are stacked here, so a photo prepared in a worker process gets exactly
        the answer it gets when prepared in this one."""
        out = np.full((len(items), len(self.class_names)), np.nan, np.float32)
        ready = [i for i, item in enumerate(items) if item.inputs is not None]
        for start in range(0, len(ready), batch_size):
            rows = ready[start : start + batch_size]
            batch = [inputs for i in rows if (inputs := items[i].inputs) is not None]
            out[rows] = self.backend.logits({key: np.concatenate([x[key] for x in batch]) for key in batch[0]})
        return out

    def logits(self, images: Sequence[ImageInput], batch_size: int = 32) -> np.ndarray:
        """``N×C`` logits; rows of NaN for photos a pose-based run cannot assess."""
        return self.logits_of([self.analyse(im) for im in images], batch_size)

    def predict_proba(self, images: Sequence[ImageInput], batch_size: int = 32, calibrated: bool = True) -> np.ndarray:
        """``N×C`` probabilities in class order, with the run's temperature unless ``calibrated=False``;
        NaN rows for photos that cannot be assessed."""
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
        return self.predict_analysed([self.analyse(im) for im in images], batch_size)

    def predict_analysed(self, analyses: Sequence[Analysis], batch_size: int = 32) -> list[Prediction]:
        """Answers for photos already analysed (the app draws the same landmarks it decided on)."""
        return self.predict_prepared([self.prepared(a) for a in analyses], batch_size)

    def predict_prepared(self, items: Sequence[Prepared], batch_size: int = 32) -> list[Prediction]:
        """Answers for prepared photos (:meth:`prepare`; every item must have been readable)."""
        if any(item.problem is not None for item in items):
            raise ValueError("a photo that could not be read has no answer; report its problem instead")
        probs = softmax(self.logits_of_prepared(items, batch_size), self.temperature)
        return [self._answer(item, row) for item, row in zip(items, probs, strict=True)]

    def _answer(self, item: Prepared, row: np.ndarray) -> Prediction:
        people = item.others.sentence() if item.others is not None else None
        count = item.others.count if item.others is not None else None
        if item.reason is not None:
            return Prediction(None, None, None, reason=_with_note(item.reason, people), others=count, view=item.view)
        if not np.isfinite(row).all():
            # NaN weights are refused when the run loads; a non-finite answer that still comes out
            # (a damaged model.onnx, a hand-made Predictor) is no answer at all.
            return Prediction(None, None, None, reason=NOT_A_NUMBER, others=count, view=item.view)
        label, confidence = self.decide(row)
        geometry = explanation = None
        if self.uses_pose and item.geometry is not None:
            geometry = {n: round(float(v), 4) for n, v in zip(self.pose_features, item.geometry, strict=True)}
            explanation = self.explain_geometry(item.geometry, label, scales=item.scales)
        return Prediction(
            label,
            confidence,
            {c: float(p) for c, p in zip(self.class_names, row, strict=True)},
            geometry=geometry,
            explanation=_with_note(explanation, people),
            others=count,
            view=item.view,
        )

    def explain_geometry(
        self, geometry: np.ndarray, label: str, top: int = 2, scales: dict[str, float] | None = None
    ) -> str:
        """The geometry that decided the answer, in words: the features that pushed hardest towards
        ``label`` (gradient × distance from the upright reference), each with its upright value.

        ``scales`` (:func:`posture.pose.geometry.metric_scales` of this person's landmarks) turn shoulder
        widths and face heights into centimetres, which is what a person understands."""
        from posture.pose.geometry import format_value, phrase

        reference = self.reference if self.reference is not None else self.upright
        order = list(range(len(self.pose_features)))
        if self.model is not None and len(self.class_names) == 2:
            order = self._drivers(geometry, label)
        parts = []
        for i in order[:top]:
            name = self.pose_features[i]
            text = phrase(name, float(geometry[i]), scales)
            if reference is not None:
                whose = "yours" if self.reference is not None else "in training"
                text += f" (upright, {whose}: {format_value(name, float(reference[i]), scales)})"
            parts.append(text)
        return f"{label.replace('_', ' ')}: " + "; ".join(parts) + "."

    def _drivers(self, geometry: np.ndarray, label: str) -> list[int]:
        model = self.model
        assert model is not None
        pos = self.class_names.index(label)
        x = torch.tensor(self.geometry_input(geometry), dtype=torch.float32).unsqueeze(0).requires_grad_(True)
        upright = self.upright if self.upright is not None else np.zeros(len(self.pose_features))
        n_cnn = model.num_features
        with torch.enable_grad():
            norm = model.feature_norm
            mean, std = norm.mean[n_cnn:], norm.std[n_cnn:]
            head_in = torch.cat([torch.zeros(1, n_cnn), ((x - mean) / std)], dim=1) if n_cnn else (x - mean) / std
            logits = model.head(head_in)
            margin = logits[0, pos] - logits[0, 1 - pos]
            (grad,) = torch.autograd.grad(margin, x)
        push = grad[0].numpy() * (self.geometry_input(geometry) - upright)
        return [int(i) for i in np.argsort(-push)]

    # -- variants -----------------------------------------------------------------------------------
    def with_reference(self, upright_photos: Sequence[ImageInput]) -> Predictor:
        """A copy calibrated to one capture session: geometry is taken relative to the mean of these
        photos of the person sitting upright (what posture apps call "calibrate").

        Why it helps: the camera's height shifts every geometry number of a session by about the
        same amount; subtracting the session's own upright photos removes that shift. Raises a
        :class:`UserError` when the run reads no geometry or no photo shows a measurable person.
        """
        if not self.uses_pose:
            raise UserError(
                f"{self.config.get('architecture')} reads no posture geometry; calibrating with an "
                "upright photo needs a pose-based run (--model pose or CNN+pose)"
            )
        if self.upright is None:
            raise UserError("this run stores no upright reference (config.json pose.upright_reference); retrain it")
        measured = [a.geometry for a in map(self._analyse_upright, upright_photos) if a.geometry is not None]
        if not measured:
            raise UserError(
                "no person could be measured in the upright photo(s); use a photo that shows the face "
                "and both shoulders"
            )
        return self.with_reference_geometry(np.mean(measured, axis=0))

    def _analyse_upright(self, photo: ImageInput) -> Analysis:
        """:meth:`analyse`, with a photo that cannot be read a :class:`UserError` naming it: the
        reference is what every later answer is measured against, so there is no going on without it."""
        try:
            return self.analyse(photo, within_training=False)
        except (ImageDecodeError, OSError) as exc:
            named = f"the upright photo {photo}" if isinstance(photo, str | os.PathLike) else "an upright photo"
            raise UserError(f"{named} cannot be read: {read_problem(exc)}") from None

    def with_calibration(self, record: dict[str, Any] | None) -> Predictor:
        """A copy that answers with this ``calibration`` record (temperature, threshold, positive
        class; ``None``: raw softmax and argmax); this predictor and its run are left as they are.

        Why a copy: the same predictor may serve others (the app's visitors, a benchmark's folds);
        a step that fits a calibration hands its result on instead of changing what they answer.
        """
        clone = copy.copy(self)
        clone.config = {**self.config, "calibration": dict(record) if record is not None else None}
        clone.temperature, clone.threshold, clone.positive_class = self._calibration(record)
        return clone

    def with_detector(self, detector: Any) -> Predictor:
        """A copy that measures with this BlazePose ``detector``: a stream's own graph in tracking mode
        (its state belongs to one sequence of frames), over the same network, backend and calibration."""
        clone = copy.copy(self)
        clone._detector = detector
        return clone

    def with_reference_geometry(self, reference: Sequence[float] | np.ndarray | None) -> Predictor:
        """A copy whose session reference is this raw geometry vector (``None``: uncalibrated).

        The web app keeps each visitor's reference (a few numbers, never the photo) in their own
        session and asks for such a copy per request, so visitors never share a calibration.
        """
        clone = copy.copy(self)
        if reference is None:
            clone.reference = None
            return clone
        vector = np.asarray(reference, np.float64)
        if vector.shape != (len(self.pose_features),):
            raise ValueError(
                f"a reference has {len(self.pose_features)} values ({', '.join(self.pose_features)}), "
                f"got shape {vector.shape}"
            )
        clone.reference = vector
        return clone


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
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
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
    if not pred.assessed:
        return f"{path}\tcannot assess: {pred.reason}"
    assert pred.probabilities is not None and pred.confidence is not None
    probs = "  ".join(f"{name}={p:.3f}" for name, p in pred.probabilities.items())
    line = f"{path}\t{pred.label}\t{pred.confidence:.3f}\t{probs}"
    return line + (f"\t{pred.explanation}" if pred.explanation else "")


#: Photos per worker process below which the default ``--workers`` starts no other one: a few
#: photos are answered before a process could start and build its BlazePose graph.
PHOTOS_PER_WORKER = 8


def auto_workers(n_photos: int) -> int:
    """One process per physical core, but no more than one per :data:`PHOTOS_PER_WORKER` photos."""
    return max(1, min(physical_cores(), n_photos // PHOTOS_PER_WORKER))


class WorkerPreparer:
    """:meth:`Predictor.prepare` in a worker process: the run is loaded there on first use, with its
    own BlazePose graph (MediaPipe's state does not survive a fork, and an ONNX Runtime session does
    not cross processes at all), and this session's upright reference applied as here."""

    def __init__(self, run_dir: Path, reference: np.ndarray | None) -> None:
        self.run_dir, self.reference = run_dir, reference
        self._predictor: Predictor | None = None

    def __call__(self, path: str) -> Prepared:
        if self._predictor is None:
            loaded = Predictor.from_run(self.run_dir, backend="torch", threads=1)
            self._predictor = loaded.with_reference_geometry(self.reference) if loaded.uses_pose else loaded
        return self._predictor.prepare(path)


class _PhotoFiles(torch.utils.data.Dataset):
    """Photo ``i`` prepared by whichever worker loads it."""

    def __init__(self, paths: Sequence[str], prepare: WorkerPreparer) -> None:
        self.paths, self.prepare = list(paths), prepare

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Prepared:
        return self.prepare(self.paths[i])


def _as_is(item: Any) -> Any:
    """Hands a worker's answer over unchanged (batch_size=None: one photo per item, no collation)."""
    return item


def prepared_photos(predictor: Predictor, paths: Sequence[str], workers: int, prefetch: int) -> Iterator[Prepared]:
    """Every photo of ``paths`` prepared, in order: here, or on ``workers`` processes that each hold
    at most ``prefetch`` photos ahead (so memory stays bounded however many photos there are)."""
    if workers <= 1 or len(paths) < 2:
        yield from map(predictor.prepare, paths)
        return
    from posture.pose.detector import worker_start_method

    if predictor.run_dir is None:
        raise ValueError("worker processes load the run from its folder; this predictor has none")
    usable = min(workers, len(paths), os.cpu_count() or 1)
    if usable < workers:  # each holds a model and a BlazePose graph: more than the CPUs only costs memory
        log.info("reading photos on %d worker processes (not %d): one per CPU and photo at most", usable, workers)
    loader = torch.utils.data.DataLoader(
        _PhotoFiles(paths, WorkerPreparer(predictor.run_dir, predictor.reference)),
        batch_size=None,
        collate_fn=_as_is,
        num_workers=usable,
        prefetch_factor=max(1, prefetch),
        # forked after this process built a BlazePose graph (--upright), a worker aborts: start it fresh then
        multiprocessing_context=worker_start_method(),
    )
    yield from loader


def predict_paths(
    predictor: Predictor,
    items: Sequence[str],
    as_json: bool = False,
    batch_size: int = 16,
    stream: Any = None,
    workers: int | None = 1,
) -> int:
    """Predict every image named by ``items`` and write one line each, in input order; returns the
    failure count.

    Photos are read one by one at the size the model needs (so a broken file only costs itself,
    and a huge one no more than a big one), on ``workers`` processes (``None``: :func:`auto_workers`),
    and answered in batches of ``batch_size`` in this process, so the answers are the same however
    many workers read the photos. A photo a pose-based run cannot assess is an answer (``label:
    null`` and a ``reason``), not a failure.
    """
    stream = stream or sys.stdout
    inputs = expand_inputs(items)
    readable = [path for path, problem in inputs if problem is None]
    workers = auto_workers(len(readable)) if workers is None else workers
    photos = prepared_photos(predictor, readable, workers, prefetch=batch_size // max(1, workers) + 1)
    failures = 0
    pending: list[tuple[str, Prepared]] = []

    def flush() -> None:
        nonlocal failures
        answers = iter(predictor.predict_prepared([item for _, item in pending if item.problem is None], batch_size))
        for path, item in pending:
            if item.problem is not None:
                failures += 1
                log.error("%s: %s", path, item.problem)
                if as_json:
                    print(json.dumps({"path": path, "error": item.problem}), file=stream, flush=True)
                continue
            pred = next(answers)
            line = json.dumps({"path": path, **pred.to_dict()}) if as_json else _format_line(path, pred)
            print(line, file=stream, flush=True)
        pending.clear()

    for path, problem in inputs:
        pending.append((path, Prepared(problem=problem) if problem is not None else next(photos)))
        if len(pending) >= batch_size:
            flush()
    flush()
    return failures


@dataclass(frozen=True)
class PredictConfig:
    """Every ``python -m posture.predict`` option (the CLI is generated from these fields)."""

    inputs: tuple[str, ...] = field(
        metadata=option(
            "image files, folders (searched recursively) or quoted glob patterns",
            positional=True,
            metavar="IMAGE|DIR|GLOB",
        )
    )
    run: str = field(metadata=option("trained run folder, e.g. models/sample"))
    as_json: bool = field(
        default=False,
        metadata=option(
            "one JSON object per line: path, label, confidence, probabilities (label null and a reason when the photo "
            "cannot be assessed; error when it cannot be read)",
            flag="--json",
        ),
    )
    upright: tuple[str, ...] = field(
        default=(),
        metadata=option(
            "calibrate pose-based runs to this camera with a photo of the same person sitting upright (repeat for "
            "several); geometry is then taken relative to it",
            repeat=True,
            metavar="PHOTO",
        ),
    )
    backend: str = field(
        default="auto",
        metadata=option("auto: ONNX Runtime when the run has an up-to-date model.onnx, else torch", choices=BACKENDS),
    )
    device: str = field(default="cpu", metadata=option("cpu, cuda or auto (torch backend)"))
    threads: int | None = field(default=None, metadata=option("intra-op threads (default: one per physical core)"))
    batch_size: int = field(default=16, metadata=option("images per forward pass"))
    workers: int | None = field(
        default=None,
        metadata=option(
            "processes that read photos and find their landmarks, each with its own BlazePose (at most one per "
            "CPU); the answers are the same and in input order whatever the number",
            default_text=f"one per physical core, at most one per {PHOTOS_PER_WORKER} photos",
        ),
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "upright", tuple(self.upright))
        if self.batch_size < 1:
            raise UserError("--batch-size must be at least 1")
        if self.threads is not None and self.threads < 1:
            raise UserError("--threads must be at least 1")
        if self.workers is not None and self.workers < 1:
            raise UserError("--workers must be at least 1")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m posture.predict",
        description="Classify photos with a trained run: one line per image (label, confidence, every "
        "class's probability and, for pose-based runs, the geometry that decided it), using the "
        "run's preprocessing, temperature and threshold. A pose-based run that finds no person, "
        "or not the head and both shoulders, says 'cannot assess' and why (label null in --json). "
        "Exit code 0 when every image was answered, 1 when any could not be read, 2 for usage "
        "errors.",
        epilog="examples:\n"
        "  python -m posture.predict --run models/sample photo.jpg photos/ 'more/*.png'\n"
        "  python -m posture.predict --run models/sample --upright me_upright.jpg photo.jpg --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(parser, PredictConfig)
    add_logging_flags(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    from posture.runtime.device import resolve_device

    cfg = config_from_args(PredictConfig, args)
    device = resolve_device(cfg.device)
    predictor = Predictor.from_run(cfg.run, backend=cfg.backend, device=device, threads=cfg.threads or physical_cores())
    if cfg.upright:
        predictor = predictor.with_reference([Path(p) for p in cfg.upright])
    log.debug("backend: %s", predictor.backend_name)
    failures = predict_paths(predictor, cfg.inputs, as_json=cfg.as_json, batch_size=cfg.batch_size, workers=cfg.workers)
    if failures:
        log.error("%d input(s) could not be classified", failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(run_main(main))
