"""VGG-16 — Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015 (configuration D), optionally with batch normalisation (Ioffe & Szegedy 2015).

Design choices that matter:
- Only 3x3 convolutions (stride 1, padding 1) in five stages of 2-2-3-3-3 layers, 2x2/2 max-pooling
  between stages, then 4096-4096-classes fully connected layers with dropout 0.5 on the two hidden
  ones: 138,357,544 parameters at 1000 classes.
- Module layout and names follow torchvision's ``vgg16`` / ``vgg16_bn`` (``features.N``,
  ``classifier.N``), so their ImageNet state dicts load strictly; the 7x7 adaptive pool before the
  classifier is the identity at 224 and lets smaller images (down to 32) through.
- Initialisation: Glorot-uniform weights and zero biases, the random initialisation the paper
  reports works without staged pre-training; BN layers start at 1/0.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from posture.models.classic.base import ClassicModel, check_input_size

VGG16_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
VGG_MIN_INPUT_SIZE = 32


def _make_features(cfg: list[int | str], batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_ch = 3
    last_conv = max(i for i, v in enumerate(cfg) if v != "M")
    for i, v in enumerate(cfg):
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        layers.append(nn.Conv2d(in_ch, int(v), 3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(int(v)))
        # the last ReLU is not in-place: Grad-CAM hooks its output
        layers.append(nn.ReLU(inplace=i != last_conv))
        in_ch = int(v)
    return nn.Sequential(*layers)


class VGG(ClassicModel):
    classifier_attr = "classifier.6"

    def __init__(
        self,
        num_classes: int = 1000,
        batch_norm: bool = False,
        dropout: float = 0.5,
        cfg: list[int | str] | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_features = 4096
        self.features = _make_features(cfg or VGG16_CFG, batch_norm)
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, num_classes) if num_classes > 0 else nn.Identity(),
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def init_classifier(self, linear: nn.Linear) -> None:
        nn.init.xavier_uniform_(linear.weight)
        nn.init.zeros_(linear.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier[:-1](x)

    def cam_target_layer(self) -> nn.Module:
        return self.features[-2]  # ReLU after the last 3x3 convolution (14x14 at 224)


def vgg16(num_classes: int = 1000, input_size: int | None = None, **kwargs: Any) -> VGG:
    check_input_size("classic_vgg16", input_size, VGG_MIN_INPUT_SIZE)
    return VGG(num_classes=num_classes, batch_norm=False, **kwargs)


def vgg16_bn(num_classes: int = 1000, input_size: int | None = None, **kwargs: Any) -> VGG:
    check_input_size("classic_vgg16_bn", input_size, VGG_MIN_INPUT_SIZE)
    return VGG(num_classes=num_classes, batch_norm=True, **kwargs)
