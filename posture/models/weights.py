"""Where pretrained weights come from, and loading them without ever unpickling.

Why check the cache before building: torchvision would otherwise try to download inside the
model constructor, and on an offline machine the user gets a long urllib traceback instead of
"put this file here, or pass --weights FILE / --weights none".
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch

from posture.cli import UserError

log = logging.getLogger(__name__)

NONE_WORDS = frozenset({"none", "random", "scratch", "false", ""})
DEFAULT_WORDS = frozenset({"default", "imagenet", "pretrained", "true"})


class WeightsUnavailableError(UserError):
    """The model's genuine weights are not on this machine and cannot be downloaded now."""


def resolve_pretrained(pretrained: bool | str | os.PathLike[str] | None) -> bool | Path:
    """Normalise ``pretrained`` to ``True`` (genuine weights), ``False`` (random) or a file path."""
    if pretrained is None or pretrained is False:
        return False
    if pretrained is True:
        return True
    text = os.fspath(pretrained)
    if text.strip().lower() in NONE_WORDS:
        return False
    if text.strip().lower() in DEFAULT_WORDS:
        return True
    path = Path(text).expanduser()
    if not path.is_file():
        raise UserError(f"weights file {text} does not exist (use --weights none for random initialisation)")
    if path.suffix.lower() not in (".pth", ".pt", ".bin", ".safetensors"):
        raise UserError(f"weights file {text}: expected a .pth or .safetensors state dict")
    return path


def load_state_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a ``.pth`` loaded with ``weights_only=True``."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path), device="cpu"))
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, or a pickle that needs arbitrary code
        raise UserError(
            f"cannot read weights file {path}: {exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None
    for key in ("state_dict", "model", "model_state_dict"):  # common training-script wrappers
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"weights file {path} does not hold a state dict of tensors")
    return {re.sub(r"^module\.", "", k): v for k, v in obj.items()}


def file_sha256(path: str | os.PathLike[str], length: int = 16) -> str:
    """Content digest of a weights file (streamed, so multi-GB files are fine)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]


def torchvision_cache_file(url: str) -> Path:
    """Where ``torch.hub`` keeps (or would download) the file for ``url`` (honours TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def require_torchvision_file(name: str, url: str) -> Path:
    """The cached torchvision weights file, or a one-line explanation of how to provide it."""
    path = torchvision_cache_file(url)
    if path.is_file():
        return path
    raise WeightsUnavailableError(
        f"pretrained weights for '{name}' are not on this machine: {path.name} is missing from {path.parent} "
        f"(download {url} into that folder, or pass --weights FILE with a state dict, "
        f"or --weights none to start from random initialisation)"
    )
