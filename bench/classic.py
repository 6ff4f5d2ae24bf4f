"""The classic networks trained FROM SCRATCH vs frozen ImageNet features: what transfer learning buys.

Every classic model gets the same budget: the same training images, the same number of epochs,
the same optimiser (AdamW, cosine decay; or each paper's own recipe with ``--optimizer paper``),
the same light augmentation (horizontal flip + a small shift), and the same reduced resolution
(``--size``, default 64) wherever the architecture allows it: LeNet-5 is fixed at 32x32, the
CIFAR ResNets are run at their native 32x32, AlexNet cannot go below 67x67 (its strides leave
nothing after pool5). Beside them, the baseline: EfficientNet-Lite0's genuine ImageNet features,
frozen, with a linear head (``posture.models.build_model("efficientnet_lite0", 2)``), plus a
frozen torchvision ResNet-18 when its weights file is in the torch hub cache (offline it is not).

Images are decoded once and kept as tensors per resolution, so the timings are the networks'.
Seconds per epoch are wall-clock on a shared machine: compare the ratio column (to ResNet-18,
measured in the same run), not the absolute numbers.

    python -m bench.classic --data data/sample                   # everything (~15 min on 2 cores)
    python -m bench.classic --models classic_lenet5 classic_cifar_resnet20 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from bench.common import RESULTS, machine, peak_rss_mb
from posture.cli import UserError, add_logging_flags, run_main, setup_logging
from posture.data.datasets import ManifestDataset
from posture.data.transforms import Preprocessing, apply, build_eval_transform
from posture.io.fileio import atomic_write_text
from posture.io.formats import SPLITS
from posture.models.classic import CLASSIC_MODELS, RECIPES, googlenet_loss, make_optimizer, make_scheduler

log = logging.getLogger("bench.classic")

# Cheapest first, so an interrupted run has measured the most models. The two-tower AlexNet is
# left out by default: the same network and weights as the grouped form.
DEFAULT_MODELS = [
    "classic_lenet5",
    "classic_cifar_resnet20",
    "classic_cifar_resnet32",
    "classic_cifar_resnet56",
    "classic_alexnet",
    "classic_resnet18",
    "classic_googlenet",
    "classic_densenet121",
    "classic_resnet50",
    "classic_vgg16_bn",
    "classic_vgg16",
]
PAPER_RECIPE = {
    "alexnet": "alexnet_paper",
    "vgg": "vgg_paper",
    "googlenet": "googlenet_paper",
    "cifar": "resnet_cifar_paper",
    "resnet": "resnet_paper",
    "densenet": "densenet_paper",
}
BASELINES = ("efficientnet_lite0", "resnet18")
RATIO_TO = "classic_resnet18"


@dataclass
class BenchConfig:
    """One run's budget, identical for every from-scratch model."""

    data: Path = Path("data/sample")
    models: list[str] = field(default_factory=lambda: list(DEFAULT_MODELS))
    epochs: int = 3
    size: int = 64
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"  # or "paper": each architecture's paper recipe (posture.models.classic.RECIPES)
    head_epochs: int = 100
    baselines: bool = True
    seed: int = 0
    out: Path = RESULTS


class TensorCache:
    """Decode each split's images once; keep them as normalised tensors per (size, mean, std)."""

    def __init__(self, root: Path) -> None:
        self.splits: dict[str, ManifestDataset] = {}
        self.arrays: dict[str, list[np.ndarray]] = {}
        for split in SPLITS:
            ds = ManifestDataset(root, split)
            if len(ds) == 0:
                raise UserError(f"{root}: the '{split}' split is empty; the bench needs train, val and test images")
            self.splits[split] = ds
            self.arrays[split] = [ds.load_image(i) for i in tqdm(range(len(ds)), desc=f"decode {split}", leave=False)]
        self._tensors: dict[tuple[Any, ...], torch.Tensor] = {}

    def labels(self, split: str) -> torch.Tensor:
        return torch.tensor(self.splits[split].targets)

    def images(self, split: str, pre: Preprocessing) -> torch.Tensor:
        key = (split, pre.input_size, pre.mean, pre.std, pre.interpolation)
        if key not in self._tensors:
            tf = build_eval_transform(pre)
            self._tensors[key] = torch.stack([apply(tf, a) for a in self.arrays[split]])
        return self._tensors[key]


def train_size(name: str, size: int) -> int:
    """The bench resolution, clamped to what the architecture can take (and to its native size)."""
    spec = CLASSIC_MODELS[name]
    if spec.min_input_size is None:
        return spec.input_size
    return max(spec.min_input_size, min(size, spec.input_size))


def augment(batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Posture-preserving: mirror and shift by up to 1/16 of the side (no rotation: it changes the angle)."""
    n, _, h, w = batch.shape
    flip = torch.rand(n, generator=gen) < 0.5
    batch = torch.where(flip.view(n, 1, 1, 1), batch.flip(-1), batch)
    pad = max(1, h // 16)
    padded = F.pad(batch, (pad, pad, pad, pad), mode="reflect")
    dx, dy = torch.randint(0, 2 * pad + 1, (2, n), generator=gen)
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def _optimiser(
    name: str, model: torch.nn.Module, cfg: BenchConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, str]:
    if cfg.optimizer == "paper":
        key = next((v for k, v in PAPER_RECIPE.items() if k in name), None)
        if key is not None:
            recipe = RECIPES[key]
            opt = make_optimizer(recipe, model.parameters())
            return opt, make_scheduler(recipe, opt, cfg.epochs), key
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs)), "adamw+cosine"


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    model.eval()
    return torch.cat([model(images[i : i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])


def scores(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> dict[str, float]:
    """Accuracy and balanced accuracy (the mean of per-class recalls: robust to class imbalance)."""
    acc = float((pred == target).float().mean())
    recalls = [float((pred[target == c] == c).float().mean()) for c in range(num_classes) if (target == c).any()]
    return {"accuracy": acc, "balanced_accuracy": float(np.mean(recalls)) if recalls else math.nan}


def train_from_scratch(name: str, data: TensorCache, cfg: BenchConfig) -> dict[str, Any]:
    """Random init, ``cfg.epochs`` epochs on the train split; accuracy on val and test at the end."""
    spec = CLASSIC_MODELS[name]
    size = train_size(name, cfg.size)
    pre = Preprocessing(input_size=size, mean=spec.mean, std=spec.std)
    x_train, y_train = data.images("train", pre), data.labels("train")
    num_classes = len(data.splits["train"].class_names)
    torch.manual_seed(cfg.seed)
    model = spec.builder(num_classes=num_classes)
    opt, sched, recipe = _optimiser(name, model, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    epoch_seconds, losses = [], []
    for _ in tqdm(range(cfg.epochs), desc=name, leave=False):
        model.train()
        start, total = time.perf_counter(), 0.0
        order = torch.randperm(len(x_train), generator=gen)
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            if len(idx) < 2:  # BatchNorm cannot train on a single image
                continue
            loss = googlenet_loss(model(augment(x_train[idx], gen)), y_train[idx])  # plain CE except GoogLeNet
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        epoch_seconds.append(time.perf_counter() - start)
        losses.append(total / len(x_train))
    result = {
        "model": name,
        "kind": "from scratch",
        "input_size": size,
        "optimizer": recipe,
        "params": sum(p.numel() for p in model.parameters()),
        "epochs": cfg.epochs,
        "seconds_per_epoch": float(np.mean(epoch_seconds)),
        "train_loss": losses,
        "loss_is_finite": all(math.isfinite(v) for v in losses),
    }
    for split in SPLITS[1:]:
        pred = predict(model, data.images(split, pre))
        result[split] = scores(pred, data.labels(split), num_classes)
    return result


def frozen_baseline(name: str, data: TensorCache, cfg: BenchConfig) -> dict[str, Any]:
    """Genuine ImageNet features, frozen, extracted once; a linear head trained on them (full batch)."""
    from posture.models import build_model, get_preprocessing

    num_classes = len(data.splits["train"].class_names)
    torch.manual_seed(cfg.seed)
    model = build_model(name, num_classes, pretrained=True)  # raises WeightsUnavailableError offline
    model.freeze_backbone()
    model.eval()
    pre = get_preprocessing(name)
    start = time.perf_counter()
    with torch.no_grad():
        feats = {s: torch.cat([model.backbone(x) for x in data.images(s, pre).split(64)]) for s in SPLITS}
    extract_seconds = time.perf_counter() - start
    y = data.labels("train")
    opt = torch.optim.AdamW(model.head.parameters(), lr=1e-2, weight_decay=cfg.weight_decay)
    start = time.perf_counter()
    model.head.train()
    for _ in range(cfg.head_epochs):
        loss = F.cross_entropy(model.head(feats["train"]), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    head_seconds = time.perf_counter() - start
    result = {
        "model": name,
        "kind": "frozen ImageNet features + linear head",
        "input_size": pre.input_size,
        "optimizer": f"adamw lr 1e-2, {cfg.head_epochs} full-batch steps",
        "params": sum(p.numel() for p in model.head.parameters()),
        "epochs": cfg.head_epochs,
        "feature_extraction_seconds": extract_seconds,
        "head_training_seconds": head_seconds,
        "seconds_per_epoch": None,
    }
    model.head.eval()
    with torch.no_grad():
        for split in SPLITS[1:]:
            result[split] = scores(model.head(feats[split]).argmax(1), data.labels(split), num_classes)
    return result


def render_markdown(payload: dict[str, Any]) -> str:
    cfg, rows = payload["config"], payload["results"]
    base = next((r["seconds_per_epoch"] for r in rows if r["model"] == RATIO_TO), None)
    lines = [
        "# Classic networks from scratch vs frozen ImageNet features",
        "",
        f"Data: `{cfg['data']}` ({payload['counts']['train']} train / {payload['counts']['val']} val / "
        f"{payload['counts']['test']} test images). From-scratch budget, the same for every model: "
        f"{cfg['epochs']} epochs, batch {cfg['batch_size']}, {cfg['optimizer']} optimiser, flip+shift augmentation, "
        f"{cfg['size']}x{cfg['size']} images where the architecture allows (LeNet-5 and CIFAR ResNets 32, "
        "AlexNet at least 67). `python -m bench.classic` regenerates this page.",
        "",
        "| model | kind | input | params | optimiser | s/epoch | ratio to ResNet-18 | val acc | test acc | "
        "test bal. acc |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        spe = r.get("seconds_per_epoch")
        ratio = f"{spe / base:.2f}" if spe and base else "-"
        spe_txt = (
            f"{spe:.1f}"
            if spe
            else (
                f"{r['feature_extraction_seconds']:.1f} (features, once)" if "feature_extraction_seconds" in r else "-"
            )
        )
        lines.append(
            f"| {r['model']} | {r['kind']} | {r['input_size']} | {r['params']:,} | {r['optimizer']} | "
            f"{spe_txt} | {ratio} | {r['val']['accuracy']:.3f} | {r['test']['accuracy']:.3f} | "
            f"{r['test']['balanced_accuracy']:.3f} |"
        )
    lines += ["", "Notes:"]
    lines += [f"- {note}" for note in payload["notes"]]
    lines += [
        "- Seconds are wall-clock on a shared machine (load average at start: "
        f"{payload['machine']['load_average_at_start'][0]:.1f}); compare ratios, not absolute times.",
        "- Baseline params count only the trained head; its backbone is frozen ImageNet weights.",
    ]
    return "\n".join(lines)


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Train/evaluate every requested model and write ``classic.json`` / ``classic.md`` under ``cfg.out``."""
    unknown = [m for m in cfg.models if m not in CLASSIC_MODELS]
    if unknown:
        raise UserError(f"unknown classic model(s) {', '.join(unknown)}; known: {', '.join(CLASSIC_MODELS)}")
    if not Path(cfg.data).is_dir():
        raise UserError(
            f"{cfg.data}: no such dataset folder; make one with `python -m posture.synth data/raw-sample "
            "--n 500 --seed 0 && python -m posture.ingest data/raw-sample --out data/sample`"
        )
    started = time.perf_counter()
    info = machine()
    data = TensorCache(Path(cfg.data))
    results: list[dict[str, Any]] = []
    notes: list[str] = []
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)

    def save(complete: bool) -> dict[str, Any]:
        # written after every model, so an interrupted run still leaves what it measured
        payload = {
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
            "counts": {s: len(data.splits[s]) for s in SPLITS},
            "results": results,
            "notes": notes + ([] if complete else ["(run incomplete)"]),
            "machine": info,
            "complete": complete,
            "total_seconds": time.perf_counter() - started,
            "peak_rss_mb": peak_rss_mb(),
        }
        atomic_write_text(out / "classic.json", json.dumps(payload, indent=2, default=str) + "\n")
        atomic_write_text(out / "classic.md", render_markdown(payload) + "\n")
        return payload

    if cfg.baselines:  # first: the comparison every from-scratch row is read against
        for name in BASELINES:
            try:
                results.append(frozen_baseline(name, data, cfg))
            except (UserError, ImportError) as exc:  # WeightsUnavailableError is a UserError
                log.warning("%s baseline skipped: %s", name, exc)
                if name == "resnet18":
                    notes.append(
                        "No frozen ResNet-18 baseline: torchvision's ImageNet file is not in the torch hub "
                        "cache (no download host is reachable here); EfficientNet-Lite0, whose weights "
                        "ship in a pip package, is the pretrained baseline."
                    )
                else:
                    notes.append(f"{name} frozen baseline not run: {str(exc).splitlines()[0]}")
            save(complete=False)
    for name in cfg.models:
        log.info("training %s from scratch", name)
        results.append(train_from_scratch(name, data, cfg))
        log.info(
            "%s: test accuracy %.3f, %.1f s/epoch",
            name,
            results[-1]["test"]["accuracy"],
            results[-1]["seconds_per_epoch"],
        )
        save(complete=False)
    payload = save(complete=True)
    return payload


def build_parser() -> argparse.ArgumentParser:
    d = BenchConfig()
    p = argparse.ArgumentParser(
        prog="python -m bench.classic",
        description=__doc__.split("\n\n")[0],
        epilog="Writes OUT/classic.json and OUT/classic.md (default OUT: bench/results).",
    )
    p.add_argument("--data", type=Path, default=d.data, help="an ingested dataset folder (default: %(default)s)")
    p.add_argument(
        "--models",
        nargs="+",
        default=d.models,
        metavar="NAME",
        help=f"classic models to train (default: all but the two-tower AlexNet): {', '.join(CLASSIC_MODELS)}",
    )
    p.add_argument("--epochs", type=int, default=d.epochs, help="epochs per model (default: %(default)s)")
    p.add_argument(
        "--size", type=int, default=d.size, help="training resolution where the model allows (default: %(default)s)"
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="(default: %(default)s)")
    p.add_argument("--lr", type=float, default=d.lr, help="AdamW learning rate (default: %(default)s)")
    p.add_argument(
        "--optimizer",
        choices=("adamw", "paper"),
        default=d.optimizer,
        help="adamw for all (default), or each paper's SGD recipe",
    )
    p.add_argument("--no-baselines", action="store_true", help="skip the frozen pretrained baselines")
    p.add_argument("--seed", type=int, default=d.seed, help="(default: %(default)s)")
    p.add_argument("--out", type=Path, default=d.out, help="results folder (default: bench/results)")
    add_logging_flags(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    if args.epochs < 1 or args.size < 8 or args.batch_size < 2:
        raise UserError("--epochs must be >= 1, --size >= 8 and --batch-size >= 2")
    cfg = BenchConfig(
        data=args.data,
        models=list(args.models),
        epochs=args.epochs,
        size=args.size,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        baselines=not args.no_baselines,
        seed=args.seed,
        out=args.out,
    )
    payload = run_bench(cfg)
    print(render_markdown(payload))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
