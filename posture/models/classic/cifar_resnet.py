"""CIFAR ResNets (20/32/56) — He et al., "Deep Residual Learning for Image Recognition", CVPR 2016,
section 4.2.

Design choices that matter:
- 32x32 input, a 3x3 convolution with 16 filters, then three stages of ``n`` BasicBlocks with
  16, 32 and 64 filters (feature maps 32, 16, 8), global average pool, one Linear: depth 6n+2.
- Shortcuts are parameter-free by default (the paper's option A, used for all its CIFAR runs):
  when a stage halves the map and doubles the width, the identity is subsampled with stride 2
  and zero-padded with extra channels. ResNet-20 then has 269,722 parameters at 10 classes
  (0.27 M in the paper's Table 6). ``shortcut="B"`` uses 1x1 conv + BN projections at the two
  transitions instead (+2,752: 272,474 parameters, the figure some re-implementations quote).
- He-normal initialisation, BN after every convolution, no dropout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from posture.models.classic.base import ClassicModel, check_input_size, init_resnet_weights
from posture.models.classic.resnet import conv1x1, conv3x3

CIFAR_INPUT_SIZE = 32
CIFAR_MIN_INPUT_SIZE = 8


class ZeroPadShortcut(nn.Module):
    """Option A: subsample by ``stride`` and pad the new channels with zeros; no parameters."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra = out_ch - in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        before = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, before, self.extra - before))


def _projection(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    return nn.Sequential(conv1x1(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))


class CifarBasicBlock(nn.Module):
    def __init__(self, in_ch: int, planes: int, stride: int = 1, shortcut: str = "A") -> None:
        super().__init__()
        self.conv1 = conv3x3(in_ch, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != planes:
            self.shortcut = (
                ZeroPadShortcut(in_ch, planes, stride) if shortcut == "A" else _projection(in_ch, planes, stride)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(ClassicModel):
    classifier_attr = "fc"

    def __init__(self, depth: int = 20, num_classes: int = 1000, shortcut: str = "A") -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' (zero-padding) or 'B' (projection), got {shortcut!r}")
        n = (depth - 2) // 6
        self.depth = depth
        self.num_classes = num_classes
        self.conv1 = conv3x3(3, 16)
        self.bn1 = nn.BatchNorm2d(16)
        stages, in_ch = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = [CifarBasicBlock(in_ch, planes, stride, shortcut)]
            blocks += [CifarBasicBlock(planes, planes) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            in_ch = planes
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_features = 64
        self.fc = nn.Linear(64, num_classes) if num_classes > 0 else nn.Identity()
        init_resnet_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return torch.flatten(self.avgpool(x), 1)

    def cam_target_layer(self) -> nn.Module:
        return self.layer3


def _builder(depth: int) -> Callable[..., CifarResNet]:
    def build(num_classes: int = 1000, input_size: int | None = None, **kwargs: Any) -> CifarResNet:
        check_input_size(f"classic_cifar_resnet{depth}", input_size, CIFAR_MIN_INPUT_SIZE)
        return CifarResNet(depth=depth, num_classes=num_classes, **kwargs)

    build.__name__ = f"cifar_resnet{depth}"
    build.__doc__ = f"CIFAR-style ResNet-{depth} (option-A shortcuts)."
    return build


cifar_resnet20 = _builder(20)
cifar_resnet32 = _builder(32)
cifar_resnet56 = _builder(56)
