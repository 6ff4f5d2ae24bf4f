"""The paper-faithful classic networks (``posture.models.classic``) as zoo backbones.

Why guarded: the classic package is written alongside the zoo; the registry must work without
it, and a broken classic module must not take the torchvision and EfficientNet names down with
it. Names are registered with a ``classic_`` prefix so they never clash with torchvision's.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import torch
from torch import nn

from posture.models.classifier import Backbone
from posture.transforms import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

log = logging.getLogger(__name__)
PREFIX = "classic_"


def specs() -> dict[str, Any]:
    """``{zoo name: ClassicSpec}``, empty when the classic package is missing or broken."""
    try:
        module = importlib.import_module("posture.models.classic")
        table = dict(getattr(module, "CLASSIC_MODELS"))
    except Exception as exc:  # ImportError, AttributeError, or a bug in a module being written
        log.debug("classic models unavailable: %s", exc)
        return {}
    return {(k if k.startswith(PREFIX) else PREFIX + k): v for k, v in table.items()}


def _field(spec: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        value = spec.get(n) if isinstance(spec, dict) else getattr(spec, n, None)
        if value is not None:
            return value
    return default


def preprocessing(spec: Any) -> Preprocessing:
    return Preprocessing(input_size=int(_field(spec, "input_size", "image_size", default=224)),
                         mean=tuple(_field(spec, "mean", default=IMAGENET_MEAN)),
                         std=tuple(_field(spec, "std", default=IMAGENET_STD)),
                         interpolation=str(_field(spec, "interpolation", default="bilinear")))


def torchvision_equivalent(spec: Any) -> str | None:
    """The torchvision model whose ImageNet weights fit this network, if any."""
    return _field(spec, "torchvision_name", "torchvision_equivalent", "torchvision", "pretrained_from")


class ClassicBackbone(nn.Module):
    """Runs a classic network's ``forward_features`` (its ``forward`` may return aux outputs)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)


def build(spec: Any) -> Backbone:
    builder = _field(spec, "builder", "build", "fn")
    net = builder(num_classes=1000)
    classifier_attr = str(getattr(net, "classifier_attr", "fc"))
    net.reset_classifier(0)
    wrapper = ClassicBackbone(net)
    cam = ""
    if hasattr(net, "cam_target_layer"):
        target = net.cam_target_layer()
        cam = next((f"net.{n}" if n else "net" for n, m in net.named_modules() if m is target), "")
    # Auxiliary classifiers (GoogLeNet) are no stage of the feature path.
    aux = tuple(f"{n}." for n, _ in net.named_children() if n.startswith("aux"))
    blocks: list[str | tuple[str, ...]] = []
    for n, c in net.named_children():
        if n.startswith("aux") or not any(True for _ in c.parameters()):
            continue
        if isinstance(c, nn.Sequential):  # a trunk such as ``features``: one stage per layer
            blocks += [f"net.{n}.{k}" for k, g in c.named_children() if any(True for _ in g.parameters())]
        elif isinstance(c, nn.ModuleList) and len(c) > 1:  # parallel towers (AlexNet's two GPUs)
            stages = [k for k, g in c[0].named_children() if any(True for _ in g.parameters())]
            blocks += [tuple(f"net.{n}.{t}.{k}" for t in range(len(c))) for k in stages]
        else:
            blocks.append(f"net.{n}")
    return Backbone(module=wrapper, num_features=int(net.num_features), blocks=blocks or ["net"],
                    cam_layer=cam, drop_prefixes=(classifier_attr + ".",),
                    extra={"key_prefix": "net.", "aux_prefixes": aux})
