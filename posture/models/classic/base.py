"""The small interface every classic network shares, so the zoo can wrap any of them the same way.

Why a base class rather than duplicating four methods per file: the zoo (``posture.models``) splits
each network into a feature extractor and a replaceable head, and Grad-CAM needs one named layer.
If every paper-faithful network answers ``forward_features`` / ``get_classifier`` /
``reset_classifier`` / ``cam_target_layer`` identically, one parametrised test covers them all.

Rule for ``forward_features``: it returns exactly what the paper's final classification Linear
receives (so any dropout the paper puts in front of that Linear is included; it is a no-op in
eval mode, which is how frozen features are extracted). Hence
``forward(x) == get_classifier()(forward_features(x))`` for every model.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


def _resolve(module: nn.Module, dotted: str) -> tuple[nn.Module, str]:
    """Parent module and attribute name of a dotted path such as ``"classifier.6"``."""
    *parents, leaf = dotted.split(".")
    for name in parents:
        module = getattr(module, name)
    return module, leaf


class ClassicModel(nn.Module):
    """Base for the classic networks: a feature trunk plus one final Linear named by ``classifier_attr``."""

    #: dotted attribute path of the final classification Linear
    classifier_attr: str = "fc"
    #: width of ``forward_features``' output
    num_features: int = 0

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def cam_target_layer(self) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_classifier(self) -> nn.Module:
        parent, leaf = _resolve(self, self.classifier_attr)
        return getattr(parent, leaf)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace only the final Linear (``num_classes=0`` leaves the features: an Identity)."""
        parent, leaf = _resolve(self, self.classifier_attr)
        if num_classes > 0:
            new: nn.Module = nn.Linear(self.num_features, num_classes)
            self.init_classifier(new)  # type: ignore[arg-type]
        else:
            new = nn.Identity()
        old = getattr(parent, leaf)
        if isinstance(old, nn.Module):
            with contextlib.suppress(StopIteration):
                new.to(next(old.parameters()).device)
        setattr(parent, leaf, new)
        self.num_classes = num_classes

    def init_classifier(self, linear: nn.Linear) -> None:
        """How a fresh final Linear starts; models override this with their paper's rule."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.get_classifier()(self.forward_features(x))


def check_input_size(name: str, input_size: int | None, minimum: int, fixed: bool = False) -> None:
    """Fail early, in words, when a size hint cannot work with the architecture's strides."""
    if input_size is None:
        return
    if fixed and input_size != minimum:
        raise ValueError(f"{name} takes {minimum}x{minimum} images (got input_size={input_size})")
    if input_size < minimum:
        raise ValueError(f"{name} needs input_size >= {minimum} (got {input_size})")


def init_resnet_weights(model: nn.Module) -> None:
    """He et al.'s initialisation for ResNets: Kaiming-normal convolutions (fan-out), BatchNorm at identity."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
