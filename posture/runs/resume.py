"""Resume state for an interrupted run: one safetensors file holding the tensors and, in its
header metadata, everything else as JSON.

Why not ``torch.save``: a resume folder is just as likely to be handed around as a finished run,
and loading it must never unpickle. Optimiser state is flattened into named tensors
(``optim.<param index>.<name>``) plus its JSON-able ``param_groups``; RNG states are the uint8
tensors torch already uses.

Why one file: tensors and metadata written as two files are two renames, and a kill between them
paired epoch N+1's weights with epoch N's epoch counter, so ``--resume`` silently trained a
different run. One file replaced by one rename is the old epoch or the new one, whole. A file
that cannot be read (cut short, or from the old two-file format) is no resume state.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from posture.io.fileio import atomic_path, json_text

RESUME_DIR = ".resume"
TENSORS = "state.safetensors"
META = "state.json"  # the old format's second file: removed when a new state is saved
META_KEY = "posture.resume"  # the header metadata entry that holds the JSON
FORMAT = 2


def resume_dir(run_dir: Path) -> Path:
    return Path(run_dir) / RESUME_DIR


def has_resume_state(run_dir: Path) -> bool:
    return read_meta(run_dir) is not None


def read_meta(run_dir: Path) -> dict[str, Any] | None:
    """The saved state's metadata (``epoch``, ``phase``, ...) from the file header, or ``None``."""
    try:
        with safe_open(str(resume_dir(run_dir) / TENSORS), framework="pt") as f:
            meta = json.loads((f.metadata() or {})[META_KEY])
    except (OSError, ValueError, KeyError, TypeError, SafetensorError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, per_param in state["state"].items():
        for name, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{name}"] = value
            else:
                scalars.setdefault(str(idx), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for idx, values in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def _jsonable(value: Any) -> Any:
    """Scheduler states hold Counters (MultiStepLR milestones) whose int keys JSON would stringify."""
    if isinstance(value, Counter):
        return {"__counter__": [[k, v] for k, v in value.items()]}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _from_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__counter__"}:
            return Counter({k: v for k, v in value["__counter__"]})
        return {k: _from_jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_jsonable(v) for v in value]
    return value


def save_state(
    run_dir: Path,
    *,
    model: dict[str, torch.Tensor],
    best: dict[str, torch.Tensor],
    optimizer: dict[str, Any],
    scheduler: dict[str, Any],
    meta: dict[str, Any],
) -> None:
    """Write the state after an epoch: one file, one rename (see the module docstring)."""
    d = resume_dir(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    optim_tensors, optim_meta = _flatten_optimizer(optimizer)
    tensors = {f"model.{k}": v for k, v in model.items()}
    tensors.update({f"best.{k}": v for k, v in best.items()})
    tensors.update(optim_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    header = {"format": FORMAT, "optimizer": optim_meta, "scheduler": _jsonable(scheduler), **meta}
    with atomic_path(d / TENSORS) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json_text(header, indent=None)})
    (d / META).unlink(missing_ok=True)


def load_state(run_dir: Path) -> dict[str, Any]:
    """The saved state as ``model``/``best`` state dicts, ``optimizer``/``scheduler`` dicts and ``meta``."""
    with safe_open(str(resume_dir(run_dir) / TENSORS), framework="pt") as f:  # one open: one consistent file
        meta = json.loads(f.metadata()[META_KEY])
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (a safe_open handle is not iterable)
    model = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    best = {k[len("best.") :]: v for k, v in tensors.items() if k.startswith("best.")}
    return {
        "model": model,
        "best": best,
        "optimizer": _unflatten_optimizer(tensors, meta["optimizer"]),
        "scheduler": _from_jsonable(meta["scheduler"]),
        "rng": tensors.get("rng.torch"),
        "meta": meta,
    }


def clear_state(run_dir: Path) -> None:
    shutil.rmtree(resume_dir(run_dir), ignore_errors=True)
