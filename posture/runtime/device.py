"""Pick the compute device (CUDA, then Apple MPS, then CPU, unless the user names one) and count
the CPU cores worth a thread."""

from __future__ import annotations

import os

import psutil
import torch

from posture.cli import UserError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` takes the fastest device present; naming an absent one is a user error."""
    name = name.lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine (try --device auto)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("--device mps: Apple MPS is not available on this machine (try --device auto)")
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise UserError(f"--device {name}: choose one of {', '.join(DEVICE_CHOICES)}")
    return torch.device(name)


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
    # psutil counts the whole machine; a container's affinity mask may allow fewer CPUs.
    return max(1, min(psutil.cpu_count(logical=False) or available, available))
