"""``python -m posture.export --run models/RUN``: write ``models/RUN/model.onnx`` and prove it agrees.

Why a parity check is part of exporting rather than a separate test: an exporter can silently
change numerics (an unsupported op lowered differently, a BatchNorm left in training mode), and
the Predictor prefers ``model.onnx`` whenever it is present. So the graph is written to a
temporary file, run through ONNX Runtime on the same preprocessed images as the torch model, and
only renamed to ``model.onnx`` when the largest probability difference is within tolerance;
otherwise the command fails (exit 1) and no ``model.onnx`` is left behind (an older one, which
would now answer for weights it no longer matches, is removed too).

The graph is the network part of the :class:`~posture.models.PostureClassifier` producing
logits, with a dynamic batch axis: its inputs are ``input`` (the preprocessed image batch, for
runs that read pixels) and ``geometry`` (raw posture geometry, for pose-based runs; the
standardisation is inside the graph). BlazePose is no part of it: the Predictor finds the
landmarks first, as it does for torch. Temperature and threshold stay outside it, in the
Predictor, so recalibrating a run never needs a re-export. Parity is checked on probabilities at
the run's temperature when that is below 1 (it sharpens, and so magnifies, differences), else at 1,
on preprocessed parity images and on seeded geometry around the training photos' own statistics.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from posture.cli import UserError, add_logging_flags, add_options, config_from_args, option, run_main, setup_logging
from posture.inference.predict import ONNX_INPUTS, ONNX_NAME, OnnxBackend, Predictor, expand_inputs, softmax
from posture.io.fileio import atomic_path

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
DEFAULT_TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """The model could not be exported (an operator the exporter cannot express, ...)."""


class ParityError(ExportError):
    """ONNX Runtime's probabilities differ from PyTorch's by more than the tolerance."""


@dataclass(frozen=True)
class ExportConfig:
    """What to export and how strictly to check it (the CLI is generated from these fields)."""

    run_dir: Path = field(metadata=option("trained run folder, e.g. models/sample", flag="--run"))
    opset: int = field(default=DEFAULT_OPSET, metadata=option("ONNX opset (17 or newer)"))
    tolerance: float = field(
        default=DEFAULT_TOLERANCE,
        metadata=option("largest allowed probability difference between ONNX Runtime and PyTorch"),
    )
    images: tuple[str, ...] = field(
        default=(),
        metadata=option(
            "photos for the parity check", metavar="IMAGE|DIR|GLOB", default_text="seeded synthetic pictures"
        ),
    )
    n_synthetic: int = 6
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_dir", Path(self.run_dir))
        object.__setattr__(self, "images", tuple(self.images))
        if self.opset < 17:
            raise UserError(f"--opset {self.opset}: use 17 or newer")
        if not self.tolerance > 0:
            raise UserError(f"--tolerance {self.tolerance}: must be > 0")


@dataclass(frozen=True)
class ExportResult:
    path: Path
    max_abs_diff: float
    n_images: int
    opset: int


def synthetic_images(n: int = 6, seed: int = 0) -> list[np.ndarray]:
    """Deterministic test pictures: smooth gradients plus noise, in portrait, landscape and square
    shapes, so the letterbox padding and the content both reach the graph."""
    rng = np.random.default_rng(seed)
    shapes = [(240, 180), (180, 240), (200, 200), (97, 313), (320, 64), (64, 64)]
    out = []
    for i in range(n):
        h, w = shapes[i % len(shapes)]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        base = np.stack([xx / w, yy / h, (xx + yy) / (w + h)], axis=-1) * 255.0
        noise = rng.normal(0.0, 40.0, size=(h, w, 3))
        out.append(np.clip(base + noise, 0, 255).astype(np.uint8))
    return out


class _GraphInputs(torch.nn.Module):
    """The model with exactly the inputs its run reads, in the order the ONNX graph names them."""

    def __init__(self, model: torch.nn.Module, images: bool, geometry: bool) -> None:
        super().__init__()
        self.model, self.images, self.geometry = model, images, geometry

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        x = inputs[0] if self.images else None
        g = inputs[-1] if self.geometry else None
        return self.model(x, g)


def export_graph(model: torch.nn.Module, path: Path, inputs: dict[str, np.ndarray], opset: int) -> None:
    """``torch.onnx.export`` with the TorchScript-based exporter (``dynamo=False``): it handles
    every zoo architecture and needs no extra dependencies; batch is the only dynamic axis."""
    keys = [k for k in ("images", "geometry") if k in inputs]
    names = [ONNX_INPUTS[k] for k in keys]
    dummies = tuple(torch.zeros(2, *inputs[k].shape[1:]) for k in keys)
    wrapped = _GraphInputs(model, "images" in inputs, "geometry" in inputs).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice is not news to the user
        torch.onnx.export(
            wrapped,
            dummies,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=names,
            output_names=["logits"],
            dynamic_axes={**{n: {0: "batch"} for n in names}, "logits": {0: "batch"}},
            do_constant_folding=True,
            external_data=False,
        )


def parity_inputs(predictor: Predictor, images: Sequence[np.ndarray | str], seed: int = 0) -> dict[str, np.ndarray]:
    """What the graph is checked on: the preprocessed images (runs that read pixels) and, for
    pose-based runs, one geometry row per image drawn around the training photos' statistics."""
    model = predictor.model
    assert model is not None
    out: dict[str, np.ndarray] = {}
    n = len(images)
    if predictor.uses_image:
        out["images"] = np.stack([predictor.preprocess(im) for im in images]).astype(np.float32)
    if predictor.uses_pose:
        n_cnn, rng = model.num_features, np.random.default_rng(seed)
        mean = model.feature_norm.mean[n_cnn:].numpy()
        std = model.feature_norm.std[n_cnn:].numpy()
        out["geometry"] = (mean + std * rng.normal(size=(n, len(mean)))).astype(np.float32)
    return out


def _attach_metadata(path: Path, predictor: Predictor) -> None:
    """Store the classes and preprocessing inside the graph, so a model.onnx carried away alone
    still says how to feed it and how to read its output."""
    import onnx

    proto = onnx.load(str(path))
    meta = {
        "classes": predictor.class_names,
        "architecture": predictor.config.get("architecture"),
        "preprocessing": predictor.preprocessing.to_dict(),
        "output": "logits (apply softmax)",
        "geometry": list(predictor.pose_features),
    }
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = f"posture.{key}", json.dumps(value)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def parity_images(config: ExportConfig) -> list[np.ndarray | str]:
    if not config.images:
        return list(synthetic_images(config.n_synthetic, config.seed))
    paths: list[np.ndarray | str] = []
    for path, problem in expand_inputs(config.images):
        if problem:
            raise UserError(f"{path}: {problem}")
        paths.append(path)
    return paths


def export_onnx(config: ExportConfig) -> ExportResult:
    """Export the run's model to ``model.onnx``; raises :class:`ParityError` (and leaves no
    ``model.onnx``) when ONNX Runtime disagrees with PyTorch by more than ``config.tolerance``."""
    run = Path(config.run_dir)
    predictor = Predictor.from_run(run, backend="torch")
    model = predictor.model
    assert model is not None
    images = parity_images(config)
    inputs = parity_inputs(predictor, images, config.seed)
    target = run / ONNX_NAME
    try:
        with atomic_path(target) as tmp:
            try:
                export_graph(model, tmp, inputs, config.opset)
                _attach_metadata(tmp, predictor)
            except Exception as exc:  # noqa: BLE001 - exporter failures come in every type
                raise ExportError(
                    f"could not export {predictor.config.get('architecture')} to ONNX opset "
                    f"{config.opset}: {type(exc).__name__}: {exc}"
                ) from exc
            # Probabilities as served: with the run's temperature (a T below 1 magnifies differences).
            t = min(1.0, predictor.temperature)
            torch_probs = softmax(predictor.backend.logits(inputs), t)
            onnx_probs = softmax(OnnxBackend(tmp).logits(inputs), t)
            diff = float(np.max(np.abs(torch_probs - onnx_probs)))
            log.info("parity on %d images: max |Δp| = %.3g (tolerance %.1g)", len(images), diff, config.tolerance)
            if not diff <= config.tolerance:  # also catches NaN
                raise ParityError(
                    f"ONNX Runtime and PyTorch disagree: max |Δp| = {diff:.3g} > {config.tolerance:g} "
                    f"on {len(images)} images; {target} was not written"
                )
    except ParityError:  # (an export that merely failed leaves an existing model.onnx alone)
        if target.exists():  # an older export must not keep answering for these weights
            target.unlink()
            log.warning("removed the previous %s", target)
        raise
    return ExportResult(path=target, max_abs_diff=diff, n_images=len(images), opset=config.opset)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m posture.export",
        description="Export a trained run to ONNX (models/RUN/model.onnx, dynamic batch, logits out) and "
        "check that ONNX Runtime's probabilities match PyTorch's; on a mismatch it exits with "
        "code 1 and writes nothing. The Predictor, the CLI and the app use model.onnx "
        "automatically once it exists.",
    )
    add_options(parser, ExportConfig)
    add_logging_flags(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    config = config_from_args(ExportConfig, args)
    try:
        result = export_onnx(config)
    except ExportError as exc:
        log.error("error: %s", exc)
        return 1
    print(
        f"wrote {result.path} (opset {result.opset}); parity on {result.n_images} images: "
        f"max |Δp| = {result.max_abs_diff:.2g}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
