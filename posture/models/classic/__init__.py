"""Paper-faithful classic CNNs, built from scratch, registered by name for the zoo.

``CLASSIC_MODELS`` maps a name to a :class:`ClassicSpec`; ``posture.models`` registers each one
and wraps it as a feature extractor plus a replaceable head. Every model answers the same small
interface (:class:`~posture.models.classic.base.ClassicModel`): ``forward_features``,
``num_features``, ``get_classifier``, ``reset_classifier`` and ``cam_target_layer``.

Where ``torchvision_equivalent`` is set, the module's state dict has torchvision's keys and
shapes, so torchvision's weights for that name load strictly (after
:func:`load_torchvision_state_dict`'s key fix-ups).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from posture.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from posture.models.classic.alexnet import (
    AlexNet,
    AlexNetTwoTower,
    alexnet,
    alexnet_2tower,
    copy_grouped_to_two_tower,
    two_tower_state_dict,
)
from posture.models.classic.base import ClassicModel
from posture.models.classic.cifar_resnet import CifarResNet, cifar_resnet20, cifar_resnet32, cifar_resnet56
from posture.models.classic.densenet import DenseNet, densenet121, remap_densenet_keys
from posture.models.classic.googlenet import GoogLeNet, GoogLeNetOutputs, googlenet, googlenet_loss
from posture.models.classic.lenet import LeNet5, lenet5
from posture.models.classic.recipes import RECIPES, Recipe, make_optimizer, make_scheduler
from posture.models.classic.resnet import ResNet, resnet18, resnet50
from posture.models.classic.vgg import VGG, vgg16, vgg16_bn

HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ClassicSpec:
    """How to build one classic network and what its input looks like.

    ``min_input_size`` is the smallest square input the strides allow (the bench trains at a
    reduced size where the architecture permits); ``None`` means the size is fixed (LeNet-5).
    """

    builder: Callable[..., ClassicModel]
    input_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    torchvision_equivalent: str | None = None
    min_input_size: int | None = 32
    paper: str = ""


CLASSIC_MODELS: dict[str, ClassicSpec] = {
    "classic_lenet5": ClassicSpec(lenet5, 32, HALF, HALF, None, None, "LeCun et al. 1998"),
    "classic_alexnet": ClassicSpec(alexnet, 227, min_input_size=67, paper="Krizhevsky et al. 2012"),
    "classic_alexnet_2tower": ClassicSpec(alexnet_2tower, 227, min_input_size=67, paper="Krizhevsky et al. 2012"),
    "classic_vgg16": ClassicSpec(vgg16, 224, torchvision_equivalent="vgg16", paper="Simonyan & Zisserman 2015"),
    "classic_vgg16_bn": ClassicSpec(
        vgg16_bn, 224, torchvision_equivalent="vgg16_bn", paper="Simonyan & Zisserman 2015 + batch norm"
    ),
    "classic_googlenet": ClassicSpec(googlenet, 224, paper="Szegedy et al. 2015"),
    "classic_resnet18": ClassicSpec(resnet18, 224, torchvision_equivalent="resnet18", paper="He et al. 2016"),
    "classic_resnet50": ClassicSpec(resnet50, 224, torchvision_equivalent="resnet50", paper="He et al. 2016"),
    "classic_cifar_resnet20": ClassicSpec(cifar_resnet20, 32, min_input_size=8, paper="He et al. 2016, sec. 4.2"),
    "classic_cifar_resnet32": ClassicSpec(cifar_resnet32, 32, min_input_size=8, paper="He et al. 2016, sec. 4.2"),
    "classic_cifar_resnet56": ClassicSpec(cifar_resnet56, 32, min_input_size=8, paper="He et al. 2016, sec. 4.2"),
    "classic_densenet121": ClassicSpec(
        densenet121, 224, torchvision_equivalent="densenet121", paper="Huang et al. 2017"
    ),
}


def build_classic(name: str, num_classes: int = 1000, **kwargs: Any) -> ClassicModel:
    """Build a classic network by registry name (``KeyError`` names the known ones)."""
    try:
        spec = CLASSIC_MODELS[name]
    except KeyError:
        raise KeyError(f"unknown classic model {name!r}; known: {', '.join(CLASSIC_MODELS)}") from None
    return spec.builder(num_classes=num_classes, **kwargs)


def load_torchvision_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], strict: bool = True) -> Any:
    """Load a torchvision state dict (1000-class or re-headed) into the matching classic module.

    Fixes DenseNet's old ``norm.1`` key spelling first; everything else already has the same keys.
    """
    sd = dict(state_dict)
    if isinstance(model, DenseNet):
        sd = remap_densenet_keys(sd)
    return model.load_state_dict(sd, strict=strict)


__all__ = [
    "CLASSIC_MODELS",
    "ClassicSpec",
    "ClassicModel",
    "build_classic",
    "load_torchvision_state_dict",
    "LeNet5",
    "AlexNet",
    "AlexNetTwoTower",
    "VGG",
    "GoogLeNet",
    "GoogLeNetOutputs",
    "ResNet",
    "CifarResNet",
    "DenseNet",
    "googlenet_loss",
    "copy_grouped_to_two_tower",
    "two_tower_state_dict",
    "remap_densenet_keys",
    "RECIPES",
    "Recipe",
    "make_optimizer",
    "make_scheduler",
]
