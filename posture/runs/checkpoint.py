"""Trained runs on disk: ``model.safetensors`` + ``config.json`` (+ metrics, history).

Data in, data out: tensors live in safetensors and everything else in JSON, so loading a run a
stranger hands us never unpickles anything. ``config.json`` is the contract the evaluator, the
predictor, the exporter and the app read; its keys are documented in :func:`save_checkpoint`.

Runs get copied, synced and hand-edited, so loading checks what it reads: a truncated or foreign
file, a config without its contract keys, or weights from another run (say, a different class
count) is one :class:`~posture.cli.UserError` naming the file and what to do, never a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import save_file

from posture.cli import UserError
from posture.io.fileio import (
    DamagedFileError,
    atomic_path,
    atomic_write_csv,
    atomic_write_json,
    read_json,
    read_tensors,
)
from posture.io.formats import CONFIG_NAME, HISTORY_NAME, METRICS_NAME, WEIGHTS_NAME
from posture.runs.runconfig import ConfigFieldError, check_run_config

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
#: What to tell someone whose run folder is damaged.
REPAIR = "copy the run folder again, or retrain it with `python -m posture.finetune`"
#: ... and whose stored calibration is damaged (calibrate loads the run first, so the entry must go).
RECALIBRATE = (
    "delete the 'calibration' entry from config.json and fit it again with `python -m posture.calibrate`, "
    "or copy the run folder again"
)


@dataclass
class Checkpoint:
    """A loaded run: its config, its tensors and whatever metrics were stored with it."""

    run_dir: Path
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def class_names(self) -> list[str]:
        return list(self.config["classes"])

    @property
    def architecture(self) -> str:
        return str(self.config["architecture"])

    def load_into(self, model: torch.nn.Module) -> None:
        """Load these weights into ``model`` (built from this config), strictly.

        Why not plain ``load_state_dict``: weights and config from different runs (a class added,
        another architecture) fail there with a wall of tensor shapes; this names both files and
        says which tensors disagree.
        """
        expected = model.state_dict()
        missing = sorted(set(expected) - set(self.state_dict))
        unexpected = sorted(set(self.state_dict) - set(expected))
        wrong = [k for k in expected if k in self.state_dict and expected[k].shape != self.state_dict[k].shape]
        if not (missing or unexpected or wrong):
            model.load_state_dict(self.state_dict)
            return
        where = f"{self.run_dir / WEIGHTS_NAME} does not fit {self.run_dir / CONFIG_NAME}"
        if wrong:
            k = wrong[0]
            detail = (
                f"{k} is {list(self.state_dict[k].shape)} in the weights but {list(expected[k].shape)} for the "
                f"{self.architecture} with {len(self.class_names)} classes the config describes"
                + (f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else "")
            )
        else:
            detail = (
                f"{len(missing)} tensors missing (e.g. {missing[0]})"
                if missing
                else f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})"
            )
        raise UserError(f"{where}: {detail}; the two files come from different runs: {REPAIR}")


def library_versions() -> dict[str, str]:
    """Versions that decide whether a checkpoint reproduces; stored in every config."""
    import numpy
    import torchvision

    from posture import __version__

    versions = {
        "posture": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
    }
    for mod in ("timm", "albumentations", "onnxruntime"):
        with contextlib.suppress(Exception):  # optional at run time
            versions[mod] = __import__(mod).__version__
    return versions


def save_checkpoint(
    run_dir: str | os.PathLike[str],
    state_dict: dict[str, torch.Tensor],
    config: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    history: pd.DataFrame | None = None,
) -> Path:
    """Write a run atomically, file by file.

    ``config`` must hold at least ``architecture`` (a zoo name), ``classes`` (names in index
    order) and ``preprocessing`` (:meth:`posture.data.transforms.Preprocessing.to_dict`); usually also
    ``head`` (the head spec), ``training`` (the training config), ``trained_on`` (what it learnt
    from, :mod:`posture.evaluation.provenance`) and, after ``python -m posture.calibrate``, ``calibration``
    (``temperature``, ``threshold``, ``positive_class``, ``policy``, ``fitted_on``, ``data``).
    ``format_version`` and ``versions`` are filled in here.
    """
    for key in ("architecture", "classes", "preprocessing"):
        if key not in config:
            raise ValueError(f"checkpoint config needs {key!r}")
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    with atomic_path(run / WEIGHTS_NAME) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "architecture": str(config["architecture"])})
    full_config = {"format_version": FORMAT_VERSION, **config, "versions": library_versions()}
    atomic_write_json(run / CONFIG_NAME, full_config)
    if metrics is not None:
        atomic_write_json(run / METRICS_NAME, metrics)
    if history is not None:
        atomic_write_csv(run / HISTORY_NAME, history)
    return run


def read_config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The run's ``config.json``, with a clear error when the folder is not a run, is an unfinished
    one, or its config is damaged or holds a field its readers cannot use (:mod:`posture.runs.runconfig`)."""
    path = Path(run_dir) / CONFIG_NAME
    if not path.is_file():
        from posture.runs.resume import RESUME_DIR

        if (Path(run_dir) / RESUME_DIR).is_dir():
            raise UserError(
                f"{run_dir}: an interrupted training run (only {RESUME_DIR}/, no {CONFIG_NAME} yet); "
                f"finish it with `python -m posture.finetune ... --out {run_dir} --resume` (same options) "
                "or start again with --overwrite"
            )
        raise UserError(f"{run_dir}: not a trained run (no {CONFIG_NAME}); train one with `python -m posture.finetune`")
    config = _read_json_object(path)
    if not isinstance(config, dict):
        raise UserError(f"{path} holds a JSON {type(config).__name__}, not a run's config object; {REPAIR}")
    try:
        check_run_config(config)
    except ConfigFieldError as exc:
        remedy = RECALIBRATE if exc.field.startswith("calibration") else REPAIR
        raise UserError(f"{path} is not a usable run config: {exc}; {remedy}") from None
    return config


def _read_json_object(path: Path) -> Any:
    """``read_json``, with a file nested too deeply for the JSON parser named as damaged too."""
    try:
        return read_json(path)
    except DamagedFileError as exc:
        raise UserError(f"{exc}; {REPAIR}") from None
    except RecursionError:
        raise UserError(f"{path} nests lists or objects too deeply to be a run's file; {REPAIR}") from None


def update_config(run_dir: str | os.PathLike[str], **updates: Any) -> dict[str, Any]:
    """Merge top-level keys into a run's ``config.json`` (``posture.calibrate`` stores calibration this way)."""
    config = read_config(run_dir)
    config.update(updates)
    atomic_write_json(Path(run_dir) / CONFIG_NAME, config)
    return config


def load_checkpoint(run_dir: str | os.PathLike[str], device: str | torch.device = "cpu") -> Checkpoint:
    """Load a run without unpickling: safetensors for tensors, JSON for the rest."""
    run = Path(run_dir)
    config = read_config(run)
    weights = run / WEIGHTS_NAME
    if not weights.is_file():
        raise UserError(f"{run}: {WEIGHTS_NAME} is missing; the run did not finish")
    try:
        state = read_tensors(weights, device=str(device))
    except DamagedFileError as exc:
        raise UserError(f"{exc}; {REPAIR}") from None
    broken = non_finite_tensors(state)
    if broken:
        raise UserError(
            f"{weights} holds NaN or infinite values (in {broken[0]}"
            + (f" and {len(broken) - 1} more tensors" if len(broken) > 1 else "")
            + "), so every answer it gave would be meaningless: retrain the run (a lower --lr often helps) "
            "or copy the run folder again"
        )
    return Checkpoint(run_dir=run, config=config, state_dict=state, metrics=read_metrics(run))


def non_finite_tensors(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or an infinity.

    Why at load time: a run whose training diverged, or whose file was damaged in a way safetensors
    cannot see, still loads and answers ``forward_head nan`` with exit 0; the app shows NaN
    confidences and evaluation crashes in its metrics. Refusing the run names the cause once.
    """
    return [name for name, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def read_metrics(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``metrics.json`` if there is a readable one, else ``{}`` with a warning: the numbers describe
    a run, the run works without them."""
    path = Path(run_dir) / METRICS_NAME
    if not path.is_file():
        return {}
    try:
        metrics = read_json(path)
    except (DamagedFileError, RecursionError) as exc:
        problem = exc if isinstance(exc, DamagedFileError) else f"{path} nests lists or objects too deeply"
        log.warning("%s; ignoring it (the run's recorded scores are unknown, its answers are unaffected)", problem)
        return {}
    return metrics if isinstance(metrics, dict) else {}


def find_latest_run(models_dir: str | os.PathLike[str] = "models") -> Path | None:
    """The most recently written run under ``models_dir`` (used by the app when no --run is given)."""
    root = Path(models_dir)
    if not root.is_dir():
        return None
    runs = [p.parent for p in root.glob(f"*/{WEIGHTS_NAME}") if (p.parent / CONFIG_NAME).is_file()]
    return max(runs, key=lambda p: (p / WEIGHTS_NAME).stat().st_mtime) if runs else None
