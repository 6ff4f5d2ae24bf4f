"""ResNet — He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.

Design choices that matter:
- ImageNet ResNets (18: BasicBlock 2-2-2-2; 50: Bottleneck 3-4-6-3, expansion 4): 7x7/2 stem,
  3x3/2 max-pool, BN after every convolution, projection shortcuts (1x1 conv + BN, the paper's
  option B) only where the shape changes, global average pool, one Linear.
  ResNet-50 has 25,557,032 parameters at 1000 classes.
- Module and parameter names are torchvision's (``conv1``, ``bn1``, ``layer1.0.downsample.0`` ...),
  so torchvision's ResNet state dicts load with ``strict=True`` and give the same outputs.
- Bottleneck stride: the paper strides the first 1x1 convolution; torchvision (and the ImageNet
  weights it ships, "ResNet v1.5") strides the 3x3. The default is the 3x3 so that torchvision's
  weights mean what they were trained to mean; ``stride_in_1x1=True`` gives the paper's placement
  (identical parameter shapes and count).
- Initialisation: He-normal (fan-out) convolutions, BN weight 1 / bias 0, as in the paper.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from posture.models.classic.base import ClassicModel, check_input_size, init_resnet_weights

RESNET_MIN_INPUT_SIZE = 32


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, stride_in_1x1: bool = False
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_ch, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(
        self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, stride_in_1x1: bool = False
    ) -> None:
        super().__init__()
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(in_ch, planes, s1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, s3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(ClassicModel):
    classifier_attr = "fc"

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: list[int],
        num_classes: int = 1000,
        zero_init_residual: bool = False,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stride_in_1x1 = stride_in_1x1
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_features = 512 * block.expansion
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        init_resnet_weights(self)
        if zero_init_residual:  # Goyal et al. 2017: each residual branch starts as the identity
            for m in self.modules():
                last_bn = m.bn3 if isinstance(m, Bottleneck) else m.bn2 if isinstance(m, BasicBlock) else None
                if last_bn is not None:
                    nn.init.zeros_(last_bn.weight)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride), nn.BatchNorm2d(planes * block.expansion)
            )
        layers = [block(self.inplanes, planes, stride, downsample, stride_in_1x1=self.stride_in_1x1)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, stride_in_1x1=self.stride_in_1x1) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def cam_target_layer(self) -> nn.Module:
        return self.layer4


def resnet18(num_classes: int = 1000, input_size: int | None = None, **kwargs: Any) -> ResNet:
    check_input_size("classic_resnet18", input_size, RESNET_MIN_INPUT_SIZE)
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes, **kwargs)


def resnet50(num_classes: int = 1000, input_size: int | None = None, **kwargs: Any) -> ResNet:
    check_input_size("classic_resnet50", input_size, RESNET_MIN_INPUT_SIZE)
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes=num_classes, **kwargs)
