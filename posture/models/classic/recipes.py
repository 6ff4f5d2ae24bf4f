"""The papers' training hyper-parameters as named presets (``--recipe NAME`` in fine-tuning).

Why schedules are stored as fractions of the run: the papers train for 74-164 epochs; a run here
is usually a handful. Keeping *where* the learning rate drops (after a third, two thirds ... of
training) rather than absolute epochs lets the same recipe shape a 5-epoch or a 90-epoch run.
``step_size`` (epochs between drops in the paper's own run) is kept for reference and converted
with ``paper_epochs``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Recipe:
    """One paper's optimiser and step-decay schedule."""

    optimizer: str = "sgd"  # "sgd", "adam" or "adamw"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    nesterov: bool = False
    step_size: int | None = None  # epochs between decays in the paper's run
    gamma: float = 0.1  # learning-rate factor at each decay
    paper_epochs: int = 90
    milestones: tuple[float, ...] = field(default=())  # decay points as fractions of the run (overrides step_size)
    batch_size: int = 128
    note: str = ""

    def decay_fractions(self) -> tuple[float, ...]:
        if self.milestones:
            return tuple(self.milestones)
        if not self.step_size:
            return ()
        return tuple(e / self.paper_epochs for e in range(self.step_size, self.paper_epochs, self.step_size))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d


RECIPES: dict[str, Recipe] = {
    "alexnet_paper": Recipe(
        optimizer="sgd",
        lr=0.01,
        momentum=0.9,
        weight_decay=5e-4,
        step_size=30,
        gamma=0.1,
        paper_epochs=90,
        batch_size=128,
        note="Krizhevsky 2012: lr /10 when validation error stalls, three times in ~90 epochs",
    ),
    "vgg_paper": Recipe(
        optimizer="sgd",
        lr=0.01,
        momentum=0.9,
        weight_decay=5e-4,
        gamma=0.1,
        paper_epochs=74,
        milestones=(0.25, 0.5, 0.75),
        batch_size=256,
        note="Simonyan 2015: lr /10 three times in 74 epochs",
    ),
    "googlenet_paper": Recipe(
        optimizer="sgd",
        lr=0.01,
        momentum=0.9,
        weight_decay=2e-4,
        step_size=8,
        gamma=0.96,
        paper_epochs=250,
        batch_size=32,
        note="Szegedy 2015: lr x0.96 every 8 epochs (lr/weight decay from the reference Caffe model)",
    ),
    "resnet_paper": Recipe(
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        step_size=30,
        gamma=0.1,
        paper_epochs=90,
        batch_size=256,
        note="He 2016 (ImageNet): lr /10 when error plateaus (every ~30 epochs)",
    ),
    "resnet_cifar_paper": Recipe(
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        gamma=0.1,
        paper_epochs=164,
        milestones=(0.5, 0.75),
        batch_size=128,
        note="He 2016 sec. 4.2: lr /10 at 32k and 48k of 64k iterations",
    ),
    "densenet_paper": Recipe(
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        nesterov=True,
        step_size=30,
        gamma=0.1,
        paper_epochs=90,
        batch_size=256,
        note="Huang 2017 (ImageNet): Nesterov, lr /10 at epochs 30 and 60",
    ),
}


def make_optimizer(
    recipe: Recipe, params: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]]
) -> torch.optim.Optimizer:
    """The recipe's optimiser over ``params`` (tensors, or param groups with their own ``lr``)."""
    kind = recipe.optimizer.lower()
    if kind == "sgd":
        return torch.optim.SGD(
            params,
            lr=recipe.lr,
            momentum=recipe.momentum,
            weight_decay=recipe.weight_decay,
            nesterov=recipe.nesterov and recipe.momentum > 0,
        )
    if kind == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r} (sgd, adam, adamw)")


def make_scheduler(
    recipe: Recipe, optimizer: torch.optim.Optimizer, epochs: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch step decay placed at the recipe's fractions of an ``epochs``-long run.

    Call ``scheduler.step()`` once per epoch. Milestones that round to the same epoch compound.
    """
    epochs = max(1, int(epochs))
    milestones = sorted(max(1, round(f * epochs)) for f in recipe.decay_fractions())
    milestones = [m for m in milestones if m < epochs] if epochs > 1 else []
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=recipe.gamma)
