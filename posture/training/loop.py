"""The two training phases and the epoch loop they share.

* :class:`HeadPhase` trains only the head, on cached backbone features: each epoch draws one of
  the K+1 stored views (clean + K augmentations) per image, so augmentation still helps while an
  epoch costs milliseconds.
* :class:`ImagePhase` (optional, ``--unfreeze``) trains the last backbone stages and the head on
  images, with discriminative learning rates (deeper stages learn more slowly) and every
  BatchNorm kept in eval mode: a few hundred posture photos are too few to re-estimate ImageNet
  statistics, and batches of 32 would make them noisy.

Both are driven by :func:`run_phase`, which evaluates on the validation split after every epoch,
keeps the best state by balanced accuracy (ties: lower validation loss), stops after
``patience`` epochs without improvement, and calls hooks after each epoch (the resume state, then
any :data:`EpochHook` the caller passed).
Every epoch reseeds from ``(seed, phase, epoch)``, so a resumed run replays exactly.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

import torch
import torch.nn.functional as F
from sklearn.metrics import balanced_accuracy_score
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from posture.data.datasets import ManifestDataset
from posture.data.transforms import Preprocessing, apply, build_train_transform
from posture.runtime.distributed import DistInfo

if TYPE_CHECKING:
    from posture.models.classifier import PostureClassifier

log = logging.getLogger(__name__)


def derive_seed(*parts: Any) -> int:
    """A 31-bit seed from any parts, stable across processes (unlike ``hash``)."""
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:4], "little") & 0x7FFFFFFF


def class_weights(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights (mean 1 over classes), so a 9:1 split does not teach "always 9"."""
    counts = torch.bincount(targets, minlength=num_classes).float().clamp(min=1)
    return counts.sum() / (num_classes * counts)


def group_class_weights(targets: torch.Tensor, groups: list[str], num_classes: int) -> torch.Tensor:
    """Per-photo weights (mean 1) giving every (group, class) cell the same total weight.

    Why: real photos arrive in bursts. One capture session of 110 frames would otherwise outweigh a
    session of 16 photos of nine different people, and the head would learn that session's camera;
    weighting each session's classes equally asks it to fit every session (as the classes already are).
    """
    cells = [f"{g}\x00{int(t)}" for g, t in zip(groups, targets.tolist(), strict=True)]
    counts: dict[str, int] = {}
    for c in cells:
        counts[c] = counts.get(c, 0) + 1
    w = torch.tensor([1.0 / counts[c] for c in cells], dtype=torch.float32)
    return w * len(w) / w.sum()


class EpochScores(TypedDict):
    """What early stopping and ``history.csv`` need after each epoch (the split's full scores, in
    :class:`posture.evaluation.metrics.SplitMetrics`, are computed once, for the kept state)."""

    loss: float
    accuracy: float
    balanced_accuracy: float


def epoch_scores(logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None = None) -> EpochScores:
    """Mean (class-weighted) loss, accuracy and balanced accuracy of one epoch's validation logits."""
    preds = logits.argmax(1).numpy()
    y = targets.numpy()
    loss = float(F.cross_entropy(logits, targets, weight=weight)) if len(y) else float("nan")
    return {
        "loss": loss,
        "accuracy": float((preds == y).mean()) if len(y) else float("nan"),
        "balanced_accuracy": float(balanced_accuracy_score(y, preds)) if len(y) else float("nan"),
    }


@dataclass
class EarlyStopping:
    """Best-so-far bookkeeping; plain data so it round-trips through the resume JSON."""

    patience: int
    best_score: float = -math.inf
    best_loss: float = math.inf
    best_epoch: int = 0  # global epoch number (1-based); 0 = none yet
    best_phase: str = ""
    bad_epochs: int = 0

    def update(self, score: float, loss: float, epoch: int, phase: str) -> bool:
        better = score > self.best_score + 1e-12 or (abs(score - self.best_score) <= 1e-12 and loss < self.best_loss)
        if better:
            self.best_score, self.best_loss, self.best_epoch, self.best_phase = score, loss, epoch, phase
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        return better

    def reset_patience(self) -> None:
        """A new phase starts with a fresh patience budget (the best so far stays the bar to beat)."""
        self.bad_epochs = 0

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_epochs >= self.patience

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["best_score"] = None if math.isinf(self.best_score) else self.best_score
        d["best_loss"] = None if math.isinf(self.best_loss) else self.best_loss
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EarlyStopping:
        d = dict(d)
        d["best_score"] = -math.inf if d.get("best_score") is None else d["best_score"]
        d["best_loss"] = math.inf if d.get("best_loss") is None else d["best_loss"]
        return cls(**d)


@dataclass
class OptimSpec:
    """The optimiser and schedule: AdamW + cosine by default, or a paper's SGD recipe."""

    name: str = "adamw"  # "adamw" | "sgd"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    nesterov: bool = False
    schedule: str = "cosine"  # "cosine" | "step" | "constant"
    step_size: int = 30
    gamma: float = 0.1
    recipe: Any = None  # a posture.models.classic.recipes.Recipe: its optimiser and step decay

    def build(self, groups: list[dict[str, Any]], epochs: int) -> tuple[torch.optim.Optimizer, Any]:
        if self.recipe is not None:
            from dataclasses import replace

            from posture.models.classic.recipes import make_optimizer, make_scheduler

            recipe = replace(self.recipe, lr=self.lr)
            optimizer = make_optimizer(recipe, groups)
            return optimizer, make_scheduler(recipe, optimizer, epochs)
        if self.name == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(
                groups, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay, nesterov=self.nesterov
            )
        else:
            opt = torch.optim.AdamW(groups, lr=self.lr, weight_decay=self.weight_decay)
        if self.schedule == "step":
            sched: Any = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, self.step_size), gamma=self.gamma)
        elif self.schedule == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs), eta_min=self.lr * 0.01)
        else:
            sched = torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)
        return opt, sched


def optimise_batch(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    weight: torch.Tensor | None,
    sample_weight: torch.Tensor | None = None,
) -> tuple[float, int]:
    """One class-weighted (or per-photo weighted) optimiser step, shared by the head and unfreeze
    phases so they cannot drift.

    Returns the batch's summed loss and number correct, for the epoch means.
    """
    logits = net(x)
    if sample_weight is not None:
        loss = (F.cross_entropy(logits, y, reduction="none") * sample_weight).sum() / sample_weight.sum()
    else:
        loss = F.cross_entropy(logits, y, weight=weight)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach()) * len(y), int((logits.argmax(1) == y).sum())


def _batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _shard(order: torch.Tensor, dist_info: DistInfo) -> torch.Tensor:
    """This rank's equal-length share of an epoch's order (padded by wrapping, like DistributedSampler)."""
    if not dist_info.enabled:
        return order
    w = dist_info.world_size
    total = math.ceil(len(order) / w) * w
    padded = torch.cat([order, order[: total - len(order)]]) if total > len(order) else order
    return padded[dist_info.rank :: w]


@dataclass(frozen=True)
class PhaseSpec:
    """How a phase trains and where: the optimiser (and the epochs its schedule spans), batch size,
    seed, decoding workers, device and process group. Both phases take one, so their many settings
    are named once instead of travelling as a dozen positional arguments."""

    optim: OptimSpec
    epochs: int
    batch_size: int
    seed: int = 0
    workers: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dist: DistInfo = field(default_factory=DistInfo)


class Phase(ABC):
    """What :func:`run_phase` drives: one epoch of training, validation logits, and its state.

    Subclasses set ``net`` (the module the optimiser steps, DDP-wrapped when distributed),
    ``optimizer``, ``scheduler``, ``weight`` (class weights of the loss) and ``val_y``.
    """

    name = "phase"
    optimizer: torch.optim.Optimizer
    scheduler: Any
    weight: torch.Tensor
    val_y: torch.Tensor

    def __init__(self, model: PostureClassifier, spec: PhaseSpec, num_classes: int) -> None:
        self.model, self.spec, self.num_classes = model, spec, num_classes
        self.device, self.seed, self.dist, self.batch_size = spec.device, spec.seed, spec.dist, spec.batch_size

    def _wrap(self, module: nn.Module) -> nn.Module:
        """``module`` itself, or DDP around it when the run is distributed."""
        if not self.dist.enabled:
            return module
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(module, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    @abstractmethod
    def state(self) -> dict[str, torch.Tensor]:
        """A copy of what this phase trains, keyed as in the model's state dict (the best-so-far state)."""

    @abstractmethod
    def load(self, state: dict[str, torch.Tensor]) -> None:
        """Load what :meth:`state` returned."""

    def restore(self, saved: dict[str, Any]) -> None:
        """Put the phase back where an interrupted run's resume state (:mod:`.resume`) left it."""
        self.load(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])

    @abstractmethod
    def train_epoch(self, epoch: int) -> tuple[float, float]:
        """One epoch, reseeded from ``(seed, phase, epoch)`` so a resumed run replays it; (loss, accuracy)."""

    @abstractmethod
    def predict_val(self) -> torch.Tensor:
        """Logits of the validation split, on the CPU."""


class HeadPhase(Phase):
    """Head-only training on cached features ``[N, V, F]``."""

    name = "head"

    def __init__(
        self,
        model: PostureClassifier,
        spec: PhaseSpec,
        *,
        train_x: torch.Tensor,
        train_y: torch.Tensor,
        val_x: torch.Tensor,
        val_y: torch.Tensor,
        num_classes: int,
        sample_weight: torch.Tensor | None = None,
    ) -> None:
        super().__init__(model, spec, num_classes)
        device = spec.device
        self.head = model.head.to(device)
        self.train_x, self.train_y = train_x.to(device), train_y.to(device)
        self.val_x, self.val_y = val_x.to(device), val_y
        self.weight = class_weights(train_y, num_classes).to(device)
        self.sample_weight = sample_weight.to(device) if sample_weight is not None else None
        self.optimizer, self.scheduler = spec.optim.build([{"params": list(self.head.parameters())}], spec.epochs)
        self.net = self._wrap(self.head)

    def state(self) -> dict[str, torch.Tensor]:
        return {f"head.{k}": v.detach().clone() for k, v in self.head.state_dict().items()}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        self.head.load_state_dict({k[len("head.") :]: v for k, v in state.items() if k.startswith("head.")})

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        g = torch.Generator().manual_seed(derive_seed(self.seed, self.name, epoch))
        torch.manual_seed(derive_seed(self.seed, self.name, epoch, "dropout"))
        n, n_views = self.train_x.shape[0], self.train_x.shape[1]
        views = torch.randint(0, n_views, (n,), generator=g).to(self.device)
        order = _shard(torch.randperm(n, generator=g), self.dist).to(self.device)
        per_rank = math.ceil(self.batch_size / self.dist.world_size)
        self.head.train()
        total_loss, correct, seen = 0.0, 0, 0
        for idx in _batches(order, per_rank):
            y = self.train_y[idx]
            batch_loss, batch_correct = optimise_batch(
                self.net,
                self.optimizer,
                self.train_x[idx, views[idx]],
                y,
                self.weight,
                self.sample_weight[idx] if self.sample_weight is not None else None,
            )
            total_loss += batch_loss
            correct += batch_correct
            seen += len(idx)
        self.scheduler.step()
        return total_loss / max(1, seen), correct / max(1, seen)

    def predict_val(self) -> torch.Tensor:
        self.head.eval()
        with torch.inference_mode():
            return self.head(self.val_x).float().cpu()


class _AugmentedImages(Dataset):
    """Training images with augmentation seeded by (seed, epoch, index): identical in any worker."""

    def __init__(self, base: ManifestDataset, pre: Preprocessing, strength: float, seed: int) -> None:
        self.base, self.seed, self.epoch = base, seed, 0
        self.transform = build_train_transform(pre, strength)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        self.transform.set_random_seed(derive_seed(self.seed, "aug", self.epoch, i))
        return apply(self.transform, self.base.load_image(i)), self.base.targets[i]


def freeze_batchnorm(model: nn.Module) -> None:
    """Every BatchNorm in eval mode: running statistics stay the pretrained ones."""
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.eval()


def predict_images(
    model: nn.Module, dataset: ManifestDataset, batch_size: int, workers: int, device: torch.device
) -> torch.Tensor:
    """Logits for every image of ``dataset`` (whose transform must be the eval pipeline)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    model.eval()
    out = []
    with torch.inference_mode():
        for x, _ in loader:
            out.append(model(x.to(device)).float().cpu())
    return torch.cat(out) if out else torch.empty(0, 0)


class ImagePhase(Phase):
    """Partial or full unfreezing on images, discriminative LRs, BatchNorm frozen."""

    name = "unfreeze"

    def __init__(
        self,
        model: PostureClassifier,
        spec: PhaseSpec,
        *,
        train_ds: ManifestDataset,
        val_ds: ManifestDataset,
        num_classes: int,
        unfreeze: int | str,
        lr_decay: float,
        aug_strength: float = 1.0,
    ) -> None:
        # Contiguous layout whatever extraction left behind: the conv kernels (and so the last bits of
        # every result) depend on it, and a resumed run that read features from the cache must match.
        # Module.to takes memory_format at run time; torch's overloads leave it out.
        model.to(device=spec.device, memory_format=torch.contiguous_format)  # type: ignore[call-overload]
        super().__init__(model, spec, num_classes)
        self.workers = spec.workers
        self.val_ds = val_ds
        self.val_y = torch.tensor(val_ds.targets)
        self.train_data = _AugmentedImages(train_ds, model.preprocessing, aug_strength, spec.seed)
        self.weight = class_weights(torch.tensor(train_ds.targets), num_classes).to(spec.device)
        model.freeze_backbone()
        model.unfreeze(unfreeze)
        groups = self._param_groups(spec.optim.lr, lr_decay)
        self.optimizer, self.scheduler = spec.optim.build(groups, spec.epochs)
        self.net = self._wrap(model)

    def _param_groups(self, lr: float, decay: float) -> list[dict[str, Any]]:
        """Head at ``lr``; the last stage at ``lr*decay``, the one before at ``lr*decay**2``, ..."""
        if hasattr(self.model, "block_parameters"):
            stages = self.model.block_parameters()
        else:
            stages = [list(b.parameters()) for b in self.model.backbone_blocks()]
        groups = [{"params": [p for p in self.model.head.parameters() if p.requires_grad], "lr": lr}]
        for depth, stage in enumerate(reversed(stages), start=1):
            params = [p for p in stage if p.requires_grad]
            if params:
                groups.append({"params": params, "lr": lr * decay**depth})
        return groups

    def state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        torch.manual_seed(derive_seed(self.seed, self.name, epoch, "dropout"))
        self.train_data.epoch = epoch
        per_rank = math.ceil(self.batch_size / self.dist.world_size)
        g = torch.Generator().manual_seed(derive_seed(self.seed, self.name, epoch))
        order = _shard(torch.randperm(len(self.train_data), generator=g), self.dist).tolist()
        loader = DataLoader(
            torch.utils.data.Subset(self.train_data, order),
            batch_size=per_rank,
            shuffle=False,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
        )
        self.model.train()
        freeze_batchnorm(self.model)
        total_loss, correct, seen = 0.0, 0, 0
        for x, y in tqdm(loader, desc=f"unfreeze epoch {epoch}", leave=False, disable=not self.dist.is_main):
            x, y = x.to(self.device), y.to(self.device)
            batch_loss, batch_correct = optimise_batch(self.net, self.optimizer, x, y, self.weight)
            total_loss += batch_loss
            correct += batch_correct
            seen += len(y)
        self.scheduler.step()
        return total_loss / max(1, seen), correct / max(1, seen)

    def predict_val(self) -> torch.Tensor:
        return predict_images(self.model, self.val_ds, self.batch_size, self.workers, self.device)


#: Called with the global epoch number once that epoch's resume state is saved.
EpochHook = Callable[[int], None]


@dataclass
class PhaseRun:
    """What :func:`run_phase` needs besides the phase: where it starts and how to report."""

    epochs: int
    start_epoch: int = 0  # epochs of this phase already done (resume)
    epoch_offset: int = 0  # global epoch number of this phase's epoch 0
    history: list[dict[str, Any]] = field(default_factory=list)
    after_epoch: EpochHook | None = None  # e.g. a test that simulates a crash once a state is saved


def run_phase(
    phase: Phase,
    run: PhaseRun,
    stopper: EarlyStopping,
    best: dict[str, torch.Tensor],
    on_epoch_end: Callable[[int, dict[str, torch.Tensor]], None],
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """Train ``phase`` epoch by epoch; returns the best state seen (``best`` if nothing beat it)."""
    bar = tqdm(
        range(run.start_epoch + 1, run.epochs + 1),
        desc=f"training {phase.name}",
        unit="epoch",
        leave=False,
        disable=not progress or not phase.dist.is_main,
    )
    for epoch in bar:
        if stopper.should_stop:
            break
        t0 = time.perf_counter()
        train_loss, train_acc = phase.train_epoch(epoch)
        val = epoch_scores(phase.predict_val(), phase.val_y, phase.weight.cpu())
        global_epoch = run.epoch_offset + epoch
        if stopper.update(val["balanced_accuracy"], val["loss"], global_epoch, phase.name):
            best = phase.state()
        lr = phase.optimizer.param_groups[0]["lr"]
        row = {
            "epoch": global_epoch,
            "phase": phase.name,
            "phase_epoch": epoch,
            "train_loss": train_loss,
            "train_accuracy": train_acc,
            "val_loss": val["loss"],
            "val_accuracy": val["accuracy"],
            "val_balanced_accuracy": val["balanced_accuracy"],
            "lr": lr,
            "seconds": round(time.perf_counter() - t0, 4),
        }
        run.history.append(row)
        if phase.dist.is_main:
            log.info(
                "epoch %3d [%s] train loss %.4f acc %.3f | val loss %.4f acc %.3f bal %.3f%s",
                global_epoch,
                phase.name,
                train_loss,
                train_acc,
                val["loss"],
                val["accuracy"],
                val["balanced_accuracy"],
                " *" if stopper.best_epoch == global_epoch else "",
            )
        on_epoch_end(epoch, best)
        if run.after_epoch is not None:
            run.after_epoch(global_epoch)
    bar.close()
    return best


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily run torch ops on ``n`` threads (None: leave as is).

    Why: head training is thousands of tiny ops; on a busy 2-core machine every op's thread
    hand-off costs more than the op (measured 50-170 ms vs 3-5 ms per step for 2 vs 1 thread).
    """
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def copy_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


__all__ = [
    "Phase",
    "HeadPhase",
    "ImagePhase",
    "PhaseSpec",
    "EarlyStopping",
    "OptimSpec",
    "PhaseRun",
    "EpochHook",
    "run_phase",
    "EpochScores",
    "epoch_scores",
    "class_weights",
    "group_class_weights",
    "derive_seed",
    "predict_images",
    "copy_state",
    "torch_threads",
]
