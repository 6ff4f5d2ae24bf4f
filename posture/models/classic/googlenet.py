"""GoogLeNet (Inception v1) — Szegedy et al., "Going Deeper with Convolutions", CVPR 2015.

Design choices that matter:
- Inception modules with four parallel branches: 1x1; 1x1 reduction then 3x3; 1x1 reduction then
  **5x5** (torchvision's googlenet uses 3x3 here, a known deviation; this one follows Table 1);
  3x3/1 max-pool then a 1x1 pool projection. Every convolution, reductions included, has a ReLU.
  No batch normalisation (it came later).
- Stem: 7x7/2 conv, 3x3/2 max-pool, LRN, 1x1 reduction + 3x3 conv, LRN, 3x3/2 max-pool; pools are
  ceil-mode as in the original Caffe model. Head: global average pool, dropout 0.4, Linear.
- Two auxiliary classifiers on 4a and 4d (5x5/3 average pool, 1x1 conv with 128 filters + ReLU,
  FC 1024 + ReLU, dropout 0.7, Linear). They exist only to help gradients during training: in
  ``train()`` mode ``forward`` returns ``GoogLeNetOutputs(logits, aux1, aux2)`` and
  :func:`googlenet_loss` adds them with weight 0.3; in ``eval()`` mode it returns plain logits.
- ``reset_classifier`` also resets the auxiliary classifiers' final Linears (they must predict the
  same classes). Main-path parameters: see the test (the paper's Table 1 totals about 6.8 M).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from posture.models.classic.base import ClassicModel, check_input_size

GOOGLENET_MIN_INPUT_SIZE = 32
AUX_LOSS_WEIGHT = 0.3

# name: (in, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj) — Table 1 of the paper
INCEPTION_TABLE: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32),
    "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64),
    "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64),
    "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128),
    "inception5a": (832, 256, 160, 320, 32, 128, 128),
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}


class GoogLeNetOutputs(NamedTuple):
    logits: torch.Tensor
    aux1: torch.Tensor  # from inception 4a
    aux2: torch.Tensor  # from inception 4d


def _conv_relu(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            [
                ("conv", nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2)),
                ("relu", nn.ReLU(inplace=True)),
            ]
        )
    )


class Inception(nn.Module):
    def __init__(self, in_ch: int, ch1: int, ch3red: int, ch3: int, ch5red: int, ch5: int, pool_proj: int) -> None:
        super().__init__()
        self.branch1 = _conv_relu(in_ch, ch1, 1)
        self.branch2 = nn.Sequential(_conv_relu(in_ch, ch3red, 1), _conv_relu(ch3red, ch3, 3))
        self.branch3 = nn.Sequential(_conv_relu(in_ch, ch5red, 1), _conv_relu(ch5red, ch5, 5))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, padding=1, ceil_mode=True), _conv_relu(in_ch, pool_proj, 1))
        self.out_channels = ch1 + ch3 + ch5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], dim=1)


class AuxClassifier(nn.Module):
    def __init__(self, in_ch: int, num_classes: int) -> None:
        super().__init__()
        self.conv = _conv_relu(in_ch, 128, 1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.dropout = nn.Dropout(0.7)
        self.fc2 = nn.Linear(1024, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) >= 5:
            x = F.avg_pool2d(x, 5, 3)  # the paper's 5x5/3 pool: 14x14 -> 4x4
        x = F.adaptive_avg_pool2d(x, 4)  # identity at 224; keeps smaller inputs working
        x = torch.flatten(self.conv(x), 1)
        return self.fc2(self.dropout(F.relu(self.fc1(x), inplace=True)))


class GoogLeNet(ClassicModel):
    classifier_attr = "fc"

    # Built from INCEPTION_TABLE by name (setattr), so declared here for the type checker.
    inception3a: Inception
    inception3b: Inception
    inception4a: Inception
    inception4b: Inception
    inception4c: Inception
    inception4d: Inception
    inception4e: Inception
    inception5a: Inception
    inception5b: Inception

    def __init__(self, num_classes: int = 1000, aux_logits: bool = True, dropout: float = 0.4) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_features = 1024
        self.aux_logits = aux_logits
        # The paper gives no LRN constants; these are the reference Caffe model's (size 5, alpha 1e-4,
        # beta 0.75, k 1). Caffe, like torch, divides alpha by size, so they pass through unchanged.
        lrn = partial(nn.LocalResponseNorm, 5, alpha=1e-4, beta=0.75, k=1.0)
        self.stem = nn.Sequential(
            OrderedDict(
                [
                    ("conv1", _conv_relu(3, 64, 7, stride=2)),
                    ("pool1", nn.MaxPool2d(3, 2, ceil_mode=True)),
                    ("norm1", lrn()),
                    ("conv2_reduce", _conv_relu(64, 64, 1)),
                    ("conv2", _conv_relu(64, 192, 3)),
                    ("norm2", lrn()),
                    ("pool2", nn.MaxPool2d(3, 2, ceil_mode=True)),
                ]
            )
        )
        for name, spec in INCEPTION_TABLE.items():
            setattr(self, name, Inception(*spec))
        self.pool3 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.pool4 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.aux1 = AuxClassifier(512, num_classes) if aux_logits else None
        self.aux2 = AuxClassifier(528, num_classes) if aux_logits else None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1024, num_classes) if num_classes > 0 else nn.Identity()
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)  # Caffe's "xavier" filler of the original model
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0.2 if isinstance(m, nn.Conv2d) else 0.0)

    def init_classifier(self, linear: nn.Linear) -> None:
        nn.init.xavier_uniform_(linear.weight)
        nn.init.zeros_(linear.bias)

    def reset_classifier(self, num_classes: int) -> None:
        super().reset_classifier(num_classes)
        for aux in (self.aux1, self.aux2):
            if aux is not None:
                new = nn.Linear(1024, num_classes) if num_classes > 0 else nn.Identity()
                if isinstance(new, nn.Linear):
                    self.init_classifier(new)
                aux.fc2 = new.to(aux.fc1.weight.device)

    def _trunk(self, x: torch.Tensor, with_aux: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        x = self.stem(x)
        x = self.inception3b(self.inception3a(x))
        x = self.inception4a(self.pool3(x))
        aux1 = self.aux1(x) if with_aux and self.aux1 is not None else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if with_aux and self.aux2 is not None else None
        x = self.inception5b(self.inception5a(self.pool4(self.inception4e(x))))
        return self.dropout(torch.flatten(self.avgpool(x), 1)), aux1, aux2

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._trunk(x, with_aux=False)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor | GoogLeNetOutputs:  # type: ignore[override]
        with_aux = self.training and self.aux_logits
        feats, aux1, aux2 = self._trunk(x, with_aux)
        logits = self.fc(feats)
        if with_aux and aux1 is not None and aux2 is not None:
            return GoogLeNetOutputs(logits, aux1, aux2)
        return logits

    def cam_target_layer(self) -> nn.Module:
        return self.inception5b


def googlenet_loss(
    outputs: torch.Tensor | GoogLeNetOutputs | tuple[torch.Tensor, ...],
    target: torch.Tensor,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    aux_weight: float = AUX_LOSS_WEIGHT,
) -> torch.Tensor:
    """main + 0.3 * (aux1 + aux2) for training outputs; plain ``criterion`` for eval logits.

    Works for any model's output, so a training loop can call it unconditionally.
    """
    if isinstance(outputs, torch.Tensor):
        return criterion(outputs, target)
    main, *aux = outputs
    return criterion(main, target) + aux_weight * sum(criterion(a, target) for a in aux)


def googlenet(num_classes: int = 1000, input_size: int | None = None, **kwargs: Any) -> GoogLeNet:
    check_input_size("classic_googlenet", input_size, GOOGLENET_MIN_INPUT_SIZE)
    return GoogLeNet(num_classes=num_classes, **kwargs)
