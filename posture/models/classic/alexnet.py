"""AlexNet — Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep Convolutional
Neural Networks", NIPS 2012.

Design choices that matter:
- ReLU everywhere, local response normalisation after the ReLU of conv1 and conv2 (n=5,
  alpha=1e-4, beta=0.75, k=2), overlapping max-pooling (3x3, stride 2) after both LRNs and conv5,
  dropout 0.5 on the outputs of the two hidden fully connected layers.
- LRN scaling: ``torch.nn.LocalResponseNorm`` divides ``alpha`` by ``size``; the paper's formula
  does not, so ``alpha * size`` is passed to get the paper's normalisation.
- Connectivity: the paper trained on two GPUs. conv2, conv4 and conv5 only see the kernel maps
  on their own GPU, so the single-device form uses ``groups=2`` on exactly those layers, and LRN
  runs within each half (each GPU normalised its own 48/128 maps). conv3 and the dense layers see
  everything. :class:`AlexNetTwoTower` is the literal two-tower layout, runnable across two devices,
  with the same parameters; :func:`two_tower_state_dict` converts weights between the two.
- Input 227x227 (the size at which 11x11/4 gives the paper's 55x55 maps; the paper's text says
  224). An adaptive average pool before fc6 is the identity at 227 and lets smaller images through.
- Initialisation: weights N(0, 0.01); biases 1 in conv2, conv4, conv5 and the hidden fully
  connected layers (fc6, fc7), 0 elsewhere (the output layer included, as in the paper's text).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn

from posture.models.classic.base import ClassicModel, check_input_size

ALEXNET_INPUT_SIZE = 227
ALEXNET_MIN_INPUT_SIZE = 67  # smallest size whose pool5 output is still at least 1x1
_ONE_BIAS = ("conv2", "conv4", "conv5", "fc6", "fc7")


class GroupedLocalResponseNorm(nn.Module):
    """The paper's LRN (alpha not divided by size), applied separately within each channel group."""

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0, groups: int = 1) -> None:
        super().__init__()
        self.groups = groups
        # torch computes x / (k + alpha/size * sum(x^2))^beta; the paper has alpha * sum(x^2).
        self.lrn = nn.LocalResponseNorm(size, alpha=alpha * size, beta=beta, k=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.groups == 1:
            return self.lrn(x)
        return torch.cat([self.lrn(part) for part in x.chunk(self.groups, dim=1)], dim=1)


def _init_alexnet(model: nn.Module) -> None:
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(module.weight, 0.0, 0.01)
            leaf = name.rsplit(".", 1)[-1]
            if module.bias is not None:
                nn.init.constant_(module.bias, 1.0 if leaf in _ONE_BIAS else 0.0)


class AlexNet(ClassicModel):
    """Single-device AlexNet with the paper's two-GPU connectivity expressed as ``groups=2``."""

    classifier_attr = "fc8"

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5, groups: int = 2) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_features = 4096
        g = groups
        self.features = nn.Sequential(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(3, 96, 11, stride=4)),
                    ("relu1", nn.ReLU(inplace=True)),
                    ("norm1", GroupedLocalResponseNorm(groups=g)),
                    ("pool1", nn.MaxPool2d(3, 2)),
                    ("conv2", nn.Conv2d(96, 256, 5, padding=2, groups=g)),
                    ("relu2", nn.ReLU(inplace=True)),
                    ("norm2", GroupedLocalResponseNorm(groups=g)),
                    ("pool2", nn.MaxPool2d(3, 2)),
                    ("conv3", nn.Conv2d(256, 384, 3, padding=1)),
                    ("relu3", nn.ReLU(inplace=True)),
                    ("conv4", nn.Conv2d(384, 384, 3, padding=1, groups=g)),
                    ("relu4", nn.ReLU(inplace=True)),
                    ("conv5", nn.Conv2d(384, 256, 3, padding=1, groups=g)),
                    ("relu5", nn.ReLU()),
                    ("pool5", nn.MaxPool2d(3, 2)),
                ]
            )
        )
        self.avgpool = nn.AdaptiveAvgPool2d(6)
        self.hidden = nn.Sequential(
            OrderedDict(
                [
                    ("fc6", nn.Linear(256 * 6 * 6, 4096)),
                    ("relu6", nn.ReLU(inplace=True)),
                    ("drop6", nn.Dropout(dropout)),
                    ("fc7", nn.Linear(4096, 4096)),
                    ("relu7", nn.ReLU(inplace=True)),
                    ("drop7", nn.Dropout(dropout)),
                ]
            )
        )
        self.fc8 = nn.Linear(4096, num_classes) if num_classes > 0 else nn.Identity()
        _init_alexnet(self)

    def init_classifier(self, linear: nn.Linear) -> None:
        nn.init.normal_(linear.weight, 0.0, 0.01)
        nn.init.zeros_(linear.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.hidden(torch.flatten(x, 1))

    def cam_target_layer(self) -> nn.Module:
        return self.features.get_submodule("relu5")


class _Tower(nn.Module):
    """One GPU's half of AlexNet: 48/128/192/192/128 kernels and 2048+2048 hidden units."""

    def __init__(self, dropout: float) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(3, 48, 11, stride=4)),
                    ("relu1", nn.ReLU(inplace=True)),
                    ("norm1", GroupedLocalResponseNorm()),
                    ("pool1", nn.MaxPool2d(3, 2)),
                    ("conv2", nn.Conv2d(48, 128, 5, padding=2)),
                    ("relu2", nn.ReLU(inplace=True)),
                    ("norm2", GroupedLocalResponseNorm()),
                    ("pool2", nn.MaxPool2d(3, 2)),
                ]
            )
        )
        self.conv3 = nn.Conv2d(256, 192, 3, padding=1)  # sees both towers' conv2 maps
        self.stage2 = nn.Sequential(
            OrderedDict(
                [
                    ("relu3", nn.ReLU(inplace=True)),
                    ("conv4", nn.Conv2d(192, 192, 3, padding=1)),
                    ("relu4", nn.ReLU(inplace=True)),
                    ("conv5", nn.Conv2d(192, 128, 3, padding=1)),
                    ("relu5", nn.ReLU(inplace=True)),
                ]
            )
        )
        self.fc6 = nn.Sequential(
            OrderedDict(
                [
                    ("fc6", nn.Linear(256 * 6 * 6, 2048)),
                    ("relu6", nn.ReLU(inplace=True)),
                    ("drop6", nn.Dropout(dropout)),
                ]
            )
        )
        self.fc7 = nn.Sequential(
            OrderedDict(
                [("fc7", nn.Linear(4096, 2048)), ("relu7", nn.ReLU(inplace=True)), ("drop7", nn.Dropout(dropout))]
            )
        )


class AlexNetTwoTower(ClassicModel):
    """The paper's literal layout: two towers on (up to) two devices, exchanging at conv3 and the dense layers.

    ``devices`` is a list of one or two devices; with one, both towers share it. The towers are
    placed on their devices at construction (calling ``.to(...)`` afterwards moves everything to
    one device, which still works). The merged conv5 maps, the output layer and the returned
    logits live on ``devices[0]``.
    """

    classifier_attr = "fc8"

    def __init__(
        self, num_classes: int = 1000, dropout: float = 0.5, devices: Sequence[str | torch.device] | None = None
    ) -> None:
        super().__init__()
        devices = list(devices) if devices else ["cpu"]
        if len(devices) not in (1, 2):
            raise ValueError(f"classic_alexnet_2tower runs on one or two devices, got {len(devices)}")
        self.devices = [torch.device(d) for d in (devices * 2)[:2]]
        self.num_classes = num_classes
        self.num_features = 4096
        self.towers = nn.ModuleList([_Tower(dropout), _Tower(dropout)])
        self.merged = nn.Identity()  # the full 256-map conv5 output: Grad-CAM's target
        self.pool5 = nn.MaxPool2d(3, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(6)
        self.fc8 = nn.Linear(4096, num_classes) if num_classes > 0 else nn.Identity()
        _init_alexnet(self)
        for tower, device in zip(self.towers, self.devices, strict=True):
            tower.to(device)
        self.fc8.to(self.devices[0])

    def init_classifier(self, linear: nn.Linear) -> None:
        nn.init.normal_(linear.weight, 0.0, 0.01)
        nn.init.zeros_(linear.bias)

    @staticmethod
    def _device_of(module: nn.Module) -> torch.device:
        return next(module.parameters()).device

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        towers = cast("list[_Tower]", list(self.towers))  # an nn.ModuleList yields plain Modules
        devs = [self._device_of(t) for t in towers]
        c2 = [tower.stage1(x.to(d)) for tower, d in zip(towers, devs, strict=True)]
        # exchange 1: conv3 reads both towers' conv2 maps
        c5 = [
            tower.stage2(tower.conv3(torch.cat([c.to(d) for c in c2], dim=1)))
            for tower, d in zip(towers, devs, strict=True)
        ]
        home = devs[0]
        merged = self.merged(torch.cat([c.to(home) for c in c5], dim=1))
        flat = torch.flatten(self.avgpool(self.pool5(merged)), 1)
        # exchange 2 and 3: each tower's fc6 / fc7 reads both towers' outputs
        h6 = [tower.fc6(flat.to(d)) for tower, d in zip(towers, devs, strict=True)]
        h6_all = [torch.cat([h.to(d) for h in h6], dim=1) for d in devs]
        h7 = [tower.fc7(h) for tower, h in zip(towers, h6_all, strict=True)]
        return torch.cat([h.to(home) for h in h7], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.forward_features(x)
        head = self.get_classifier()
        with contextlib.suppress(StopIteration):
            feats = feats.to(self._device_of(head))
        return head(feats)

    def cam_target_layer(self) -> nn.Module:
        return self.merged


_TOWER_SPLITS = {  # grouped key -> (two-tower key template, number of output rows per tower or None = whole)
    "features.conv1": ("towers.{t}.stage1.conv1", 48),
    "features.conv2": ("towers.{t}.stage1.conv2", 128),
    "features.conv3": ("towers.{t}.conv3", 192),
    "features.conv4": ("towers.{t}.stage2.conv4", 192),
    "features.conv5": ("towers.{t}.stage2.conv5", 128),
    "hidden.fc6": ("towers.{t}.fc6.fc6", 2048),
    "hidden.fc7": ("towers.{t}.fc7.fc7", 2048),
}


def two_tower_state_dict(grouped: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a grouped :class:`AlexNet` state dict onto :class:`AlexNetTwoTower` keys.

    Why this is a pure row split: with ``groups=2`` the first half of conv2/4/5's output channels
    read only the first half of their inputs, exactly tower 0; conv3 and the dense layers are
    full, and the two-tower form concatenates tower 0 before tower 1, the grouped channel order.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in grouped.items():
        prefix, _, param = key.rpartition(".")
        if prefix in _TOWER_SPLITS:
            template, rows = _TOWER_SPLITS[prefix]
            for t in range(2):
                out[f"{template.format(t=t)}.{param}"] = value[t * rows : (t + 1) * rows].clone()
        else:
            out[key] = value.clone()
    return out


def copy_grouped_to_two_tower(grouped: AlexNet, two_tower: AlexNetTwoTower) -> AlexNetTwoTower:
    """Give ``two_tower`` the weights of ``grouped`` (each tensor lands on its tower's device)."""
    mapped = two_tower_state_dict(grouped.state_dict())
    two_tower.load_state_dict(mapped, strict=True)
    return two_tower


def alexnet(num_classes: int = 1000, input_size: int | None = None, **kwargs: Any) -> AlexNet:
    check_input_size("classic_alexnet", input_size, ALEXNET_MIN_INPUT_SIZE)
    return AlexNet(num_classes=num_classes, **kwargs)


def alexnet_2tower(num_classes: int = 1000, input_size: int | None = None, **kwargs: Any) -> AlexNetTwoTower:
    check_input_size("classic_alexnet_2tower", input_size, ALEXNET_MIN_INPUT_SIZE)
    return AlexNetTwoTower(num_classes=num_classes, **kwargs)
