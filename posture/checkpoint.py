"""Trained runs on disk: ``model.safetensors`` + ``config.json`` (+ metrics, history).

Data in, data out: tensors live in safetensors and everything else in JSON, so loading a run a
stranger hands us never unpickles anything. ``config.json`` is the contract the evaluator, the
predictor, the exporter and the app read; its keys are documented in :func:`save_checkpoint`.
"""

from __future__ import annotations

import logging
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from posture.cli import UserError
from posture.fileio import atomic_path, atomic_write_csv, atomic_write_json, read_json

log = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
METRICS_NAME = "metrics.json"
HISTORY_NAME = "history.csv"
FORMAT_VERSION = 1


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


def library_versions() -> dict[str, str]:
    """Versions that decide whether a checkpoint reproduces; stored in every config."""
    import numpy
    import torchvision

    from posture import __version__

    versions = {"posture": __version__, "python": platform.python_version(), "torch": torch.__version__,
                "torchvision": torchvision.__version__, "numpy": numpy.__version__}
    for mod in ("timm", "albumentations", "onnxruntime"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # optional at run time
            pass
    return versions


def save_checkpoint(run_dir: str | os.PathLike[str], state_dict: dict[str, torch.Tensor], config: dict[str, Any],
                    metrics: dict[str, Any] | None = None, history: pd.DataFrame | None = None) -> Path:
    """Write a run atomically, file by file.

    ``config`` must hold at least ``architecture`` (a zoo name), ``classes`` (names in index
    order) and ``preprocessing`` (:meth:`posture.transforms.Preprocessing.to_dict`); usually also
    ``head`` (the head spec), ``training`` (the training config) and, after evaluation,
    ``calibration`` (``temperature``, ``threshold``, ``positive_class``, ``policy``).
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
    """The run's ``config.json``, with a clear error when the folder is not a run."""
    path = Path(run_dir) / CONFIG_NAME
    if not path.is_file():
        raise UserError(f"{run_dir}: not a trained run (no {CONFIG_NAME}); train one with `python -m posture.finetune`")
    return read_json(path)


def update_config(run_dir: str | os.PathLike[str], **updates: Any) -> dict[str, Any]:
    """Merge top-level keys into a run's ``config.json`` (evaluation stores calibration this way)."""
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
    state = load_file(str(weights), device=str(device))
    metrics_path = run / METRICS_NAME
    metrics = read_json(metrics_path) if metrics_path.is_file() else {}
    return Checkpoint(run_dir=run, config=config, state_dict=state, metrics=metrics)


def find_latest_run(models_dir: str | os.PathLike[str] = "models") -> Path | None:
    """The most recently written run under ``models_dir`` (used by the app when no --run is given)."""
    root = Path(models_dir)
    if not root.is_dir():
        return None
    runs = [p.parent for p in root.glob(f"*/{WEIGHTS_NAME}") if (p.parent / CONFIG_NAME).is_file()]
    return max(runs, key=lambda p: (p / WEIGHTS_NAME).stat().st_mtime) if runs else None
