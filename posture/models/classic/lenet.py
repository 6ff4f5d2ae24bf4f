"""LeNet-5 — LeCun, Bottou, Bengio & Haffner, "Gradient-based learning applied to document
recognition", Proc. IEEE 1998.

Design choices that matter:
- 32x32 input, tanh activations, average-pooling subsampling (S2, S4), and C5 as a 5x5
  *convolution* (on a 32x32 input it yields 1x1x120, a fully connected layer in effect; on a
  larger input it would become a feature map, which is why the input size is fixed).
- Simplifications that give the usual 61,706 parameters at 10 classes: C3 is fully connected to
  S2 (the paper's sparse connection table gives 60,850), S2/S4 have no trainable coefficient/bias,
  plain ``tanh`` instead of ``1.7159 tanh(2a/3)``, and a Linear output layer instead of the RBF units.
- The paper's network sees one grey channel. An RGB batch is turned into luminance with fixed
  ITU-R 601 weights (a buffer, not a parameter), so the 3-channel pipeline works and the
  parameter count stays the paper's.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from posture.models.classic.base import ClassicModel, check_input_size

LENET_INPUT_SIZE = 32


class LeNet5(ClassicModel):
    classifier_attr = "output"
    luma: torch.Tensor  # a buffer (register_buffer)

    def __init__(self, num_classes: int = 1000, in_chans: int = 1) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.num_features = 84
        self.register_buffer("luma", torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1), persistent=False)
        self.features = nn.Sequential(
            OrderedDict(
                [
                    ("c1", nn.Conv2d(in_chans, 6, kernel_size=5)),
                    ("act1", nn.Tanh()),
                    ("s2", nn.AvgPool2d(2, 2)),
                    ("c3", nn.Conv2d(6, 16, kernel_size=5)),
                    ("act3", nn.Tanh()),
                    ("s4", nn.AvgPool2d(2, 2)),
                    ("c5", nn.Conv2d(16, 120, kernel_size=5)),
                    ("act5", nn.Tanh()),
                ]
            )
        )
        self.f6 = nn.Sequential(OrderedDict([("fc", nn.Linear(120, 84)), ("act", nn.Tanh())]))
        self.output = nn.Linear(84, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_chans == 1 and x.shape[1] == 3:
            x = (x * self.luma).sum(dim=1, keepdim=True)
        x = self.features(x)
        if x.shape[-2:] != (1, 1):
            raise ValueError(f"LeNet-5 takes 32x32 images; C5 produced a {tuple(x.shape[-2:])} map")
        return self.f6(torch.flatten(x, 1))

    def cam_target_layer(self) -> nn.Module:
        # C5's output is 1x1, useless for a heat map; C3 (10x10) is the last spatial map.
        return self.features.get_submodule("act3")


def lenet5(num_classes: int = 1000, input_size: int | None = None, **kwargs: Any) -> LeNet5:
    check_input_size("classic_lenet5", input_size, LENET_INPUT_SIZE, fixed=True)
    return LeNet5(num_classes=num_classes, **kwargs)
