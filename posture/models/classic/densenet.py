"""DenseNet-121 (DenseNet-BC) — Huang, Liu, van der Maaten & Weinberger, "Densely Connected
Convolutional Networks", CVPR 2017.

Design choices that matter:
- Each layer of a dense block receives the concatenation of all earlier feature maps in the block
  and adds ``growth_rate`` (32) maps, through a bottleneck: BN-ReLU-1x1 conv (4*growth maps)
  -BN-ReLU-3x3 conv ("B"). Blocks of 6-12-24-16 layers after a 7x7/2 conv + 3x3/2 max-pool stem.
- Transitions between blocks: BN-ReLU-1x1 conv that halves the channels (compression 0.5, "C"),
  then 2x2 average pooling. A final BN, ReLU, global average pool and one Linear:
  7,978,856 parameters at 1000 classes.
- Module names are torchvision's (``features.denseblock1.denselayer1.norm1`` ...), so its
  densenet121 state dict loads strictly. Old checkpoints (including torchvision's published
  file) spell some keys ``norm.1`` instead of ``norm1``; :func:`remap_densenet_keys` fixes that
  for raw state dicts (torchvision does the same inside its own loader).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from posture.models.classic.base import ClassicModel, check_input_size

DENSENET_MIN_INPUT_SIZE = 32
_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def remap_densenet_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename old-style ``...denselayerN.norm.1.weight`` keys to ``...denselayerN.norm1.weight``."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        match = _OLD_KEY.match(key)
        out[match.group(1) + match.group(2) if match else key] = value
    return out


class DenseLayer(nn.Module):
    def __init__(self, in_ch: int, growth_rate: int, bn_size: int, drop_rate: float) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_ch)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_ch, bn_size * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)
        self.drop_rate = drop_rate

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(inputs, dim=1)
        x = self.conv1(self.relu1(self.norm1(x)))
        x = self.conv2(self.relu2(self.norm2(x)))
        return F.dropout(x, p=self.drop_rate, training=self.training) if self.drop_rate > 0 else x


class DenseBlock(nn.ModuleDict):
    def __init__(self, num_layers: int, in_ch: int, growth_rate: int, bn_size: int, drop_rate: float) -> None:
        super().__init__()
        for i in range(num_layers):
            self[f"denselayer{i + 1}"] = DenseLayer(in_ch + i * growth_rate, growth_rate, bn_size, drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, dim=1)


class Transition(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(
            OrderedDict(
                [
                    ("norm", nn.BatchNorm2d(in_ch)),
                    ("relu", nn.ReLU(inplace=True)),
                    ("conv", nn.Conv2d(in_ch, out_ch, 1, bias=False)),
                    ("pool", nn.AvgPool2d(2, 2)),
                ]
            )
        )


class DenseNet(ClassicModel):
    classifier_attr = "classifier"

    def __init__(
        self,
        growth_rate: int = 32,
        block_config: tuple[int, ...] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        compression: float = 0.5,
        drop_rate: float = 0.0,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Sequential(
            OrderedDict(
                [
                    ("conv0", nn.Conv2d(3, num_init_features, 7, stride=2, padding=3, bias=False)),
                    ("norm0", nn.BatchNorm2d(num_init_features)),
                    ("relu0", nn.ReLU(inplace=True)),
                    ("pool0", nn.MaxPool2d(3, stride=2, padding=1)),
                ]
            )
        )
        ch = num_init_features
        for i, num_layers in enumerate(block_config):
            self.features.add_module(f"denseblock{i + 1}", DenseBlock(num_layers, ch, growth_rate, bn_size, drop_rate))
            ch += num_layers * growth_rate
            if i != len(block_config) - 1:
                out_ch = int(ch * compression)
                self.features.add_module(f"transition{i + 1}", Transition(ch, out_ch))
                ch = out_ch
        self.features.add_module("norm5", nn.BatchNorm2d(ch))
        self.num_features = ch
        self.classifier = nn.Linear(ch, num_classes) if num_classes > 0 else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def init_classifier(self, linear: nn.Linear) -> None:
        nn.init.zeros_(linear.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # not in-place: norm5's output is the Grad-CAM target and must survive the ReLU
        x = F.relu(self.features(x))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def cam_target_layer(self) -> nn.Module:
        return self.features.get_submodule("norm5")


def densenet121(num_classes: int = 1000, input_size: int | None = None, **kwargs: Any) -> DenseNet:
    check_input_size("classic_densenet121", input_size, DENSENET_MIN_INPUT_SIZE)
    return DenseNet(32, (6, 12, 24, 16), 64, num_classes=num_classes, **kwargs)
