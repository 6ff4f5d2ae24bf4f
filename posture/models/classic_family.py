"""The paper-faithful classic networks (``posture.models.classic``) as zoo backbones.

Each :class:`~posture.models.classic.ClassicSpec` of ``CLASSIC_MODELS`` is registered under its
``classic_`` name, which never clashes with torchvision's; a network whose state dict matches a
torchvision model (``torchvision_equivalent``) loads that model's ImageNet weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from posture.data.transforms import Preprocessing
from posture.models.classic import CLASSIC_MODELS, ClassicSpec
from posture.models.classic.base import ClassicModel
from posture.models.classifier import Backbone
from posture.models.registry import ModelFamily, register_family
from posture.models.torchvision_family import TorchvisionFamily


class ClassicBackbone(nn.Module):
    """Runs a classic network's ``forward_features`` (its ``forward`` may return aux outputs)."""

    def __init__(self, net: ClassicModel) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)


def build(spec: ClassicSpec) -> Backbone:
    net = spec.builder(num_classes=1000)
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
    return Backbone(
        module=wrapper,
        num_features=int(net.num_features),
        blocks=blocks or ["net"],
        cam_layer=cam,
        drop_prefixes=(classifier_attr + ".", *aux),
        key_prefix="net.",
    )


@register_family
class ClassicFamily(ModelFamily):
    """The classic networks, random-init; those with a torchvision twin load its ImageNet weights."""

    name = "classic"
    _torchvision = TorchvisionFamily()

    def names(self) -> list[str]:
        return list(CLASSIC_MODELS)

    def build(self, name: str, input_size: int | None = None) -> Backbone:
        return build(CLASSIC_MODELS[name])

    def preprocessing(self, name: str) -> Preprocessing:
        spec = CLASSIC_MODELS[name]
        return Preprocessing(input_size=spec.input_size, mean=spec.mean, std=spec.std)

    def has_weights(self, name: str) -> bool:
        return CLASSIC_MODELS[name].torchvision_equivalent is not None

    def _twin(self, name: str) -> str:
        twin = CLASSIC_MODELS[name].torchvision_equivalent
        if twin is None:
            raise ValueError(f"{name} has no torchvision equivalent, so no pretrained weights")
        return twin

    def weights_file(self, name: str) -> Path:
        return self._torchvision.weights_file(self._twin(name))

    def weights_id(self, name: str) -> str:
        return self._torchvision.weights_id(self._twin(name))

    def convert_original(self, name: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self.has_weights(name):
            return state
        return self._torchvision.convert_original(self._twin(name), state)
