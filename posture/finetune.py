"""``python -m posture.finetune``: transfer learning with a frozen backbone, fast.

The schedule, in the order it runs:

1. **Features, once.** The frozen backbone turns every image (and, with ``--aug-views K``, K
   seeded augmentations of each training image) into a vector, stored in the feature cache
   (:mod:`posture.features`). A rerun, another head or another seed reads them back.
2. **Head on features.** The head trains for up to ``--epochs`` epochs (AdamW + cosine, or a
   paper's SGD ``--recipe``) with a class-weighted loss, drawing one of the K+1 views per image
   per epoch; the epoch with the best validation balanced accuracy is kept (``--patience``).
3. **Optional unfreezing.** ``--unfreeze N|all --unfreeze-epochs E`` then trains the last N
   stages with the head on images, deeper stages at smaller learning rates, BatchNorm frozen.
4. **The run folder** (``--out``): ``model.safetensors``, ``config.json``, ``metrics.json`` (val and
   test accuracy, balanced accuracy, confusion matrices), ``history.csv``, ``training_curve.png``,
   written into a staging folder and renamed into place at the end. ``.resume/`` inside the
   run folder holds per-epoch state while training, so ``--resume`` continues a killed run to
   the same result.

Under ``torchrun --nproc_per_node=N`` the same command runs data-parallel (gloo on CPU, NCCL on
CUDA): ranks share the extraction and rank 0 writes the files.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from posture.checkpoint import CONFIG_NAME, WEIGHTS_NAME, save_checkpoint
from posture.cli import UserError, add_logging_flags, run_main, setup_logging
from posture.data import ManifestDataset, open_dataset, read_class_names
from posture.device import DEVICE_CHOICES, resolve_device
from posture.fileio import swap_into_place
from posture.features import BACKENDS, FeatureCache, FeatureSpec, default_cache_dir, extract_features
from posture.training import distributed, resume
from posture.training.loop import (EarlyStopping, HeadPhase, ImagePhase, OptimSpec, PhaseRun,
                                   classification_metrics, copy_state, predict_images, run_phase, torch_threads)
from posture.pose import INSTALL_HINT
from posture.training.report import CURVE_NAME, history_frame, plot_training_curve
from posture.transforms import CROP_MODES, build_eval_transform

log = logging.getLogger(__name__)

DEFAULT_MODEL = "efficientnet_lite0"
#: Head defaults picked by validation balanced accuracy on the 500-image synthetic sample
#: (EfficientNet-Lite0): linear head / 2 views 0.92, MLP-256 + dropout 0.3 / 4 views 0.96, / 8 views 0.94.
DEFAULT_LR = 3e-3
#: Options that do not change the result; a resumed run may differ from the original in these.
RUNTIME_ONLY = ("resume", "overwrite", "workers", "device", "progress", "fail_after_epoch", "cache_dir",
                "no_cache", "extract_backend", "extract_batch_size")


@dataclass
class FinetuneConfig:
    """Every ``python -m posture.finetune`` option; the CLI only fills this in."""

    data: str
    out: str
    model: str = DEFAULT_MODEL
    weights: str | None = None           # None: the model's genuine weights; "none": random; else a file
    epochs: int = 60                     # head epochs (on cached features; early stopping usually ends sooner)
    batch_size: int = 32
    lr: float | None = None              # None: 3e-3 (AdamW) or the recipe's learning rate
    weight_decay: float = 1e-4
    patience: int = 15                   # epochs without a better val balanced accuracy before stopping; 0 = never
    seed: int = 0
    device: str = "auto"
    workers: int = 2
    unfreeze: str = "0"                  # "0" (head only), N stages, or "all"
    unfreeze_epochs: int = 5
    unfreeze_lr: float = 1e-4            # the head's LR in the unfreeze phase; stage i from the top gets lr*decay**i
    lr_decay: float = 0.3
    aug_views: int = 4                   # augmented views per training image in the feature cache
    aug_strength: float = 1.0
    head_hidden: int = 256               # defaults chosen on data/sample's val split (see below)
    head_dropout: float = 0.3
    recipe: str | None = None            # posture.models.classic.recipes.RECIPES name
    cache_dir: str | None = None         # None: $POSTURE_CACHE or ~/.cache/posture/features
    no_cache: bool = False
    extract_backend: str = "auto"        # auto | torch | onnx
    extract_batch_size: int = 32
    image_size: int | None = None        # override the model's input size (small tests, classic nets)
    crop: str = "none"                   # "pose": crop every photo to head and shoulders (posture.pose)
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    fail_after_epoch: int | None = None  # test hook: raise after this (global) epoch's resume state is saved

    def training_dict(self) -> dict[str, Any]:
        """The options that decide the result (stored in config.json, compared on --resume)."""
        return {k: v for k, v in asdict(self).items() if k not in RUNTIME_ONLY}


# --------------------------------------------------------------------------- checks


def _parse_unfreeze(text: str) -> int | str:
    value = str(text).strip().lower()
    if value == "all":
        return "all"
    try:
        n = int(value)
    except ValueError:
        raise UserError(f"--unfreeze {text}: give a number of stages or 'all'") from None
    if n < 0:
        raise UserError(f"--unfreeze {text}: must be >= 0")
    return n


def _check_config(cfg: FinetuneConfig) -> None:
    for name in ("epochs", "batch_size", "extract_batch_size"):
        if getattr(cfg, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")
    if cfg.aug_views < 0 or cfg.unfreeze_epochs < 0 or cfg.patience < 0 or cfg.workers < 0:
        raise UserError("--aug-views, --unfreeze-epochs, --patience and --workers must be >= 0")
    if cfg.extract_backend not in BACKENDS:
        raise UserError(f"--extract-backend {cfg.extract_backend}: choose one of {', '.join(BACKENDS)}")
    if cfg.image_size is not None and cfg.image_size < 16:
        raise UserError(f"--image-size {cfg.image_size}: too small (at least 16)")
    if cfg.crop not in CROP_MODES:
        raise UserError(f"--crop {cfg.crop}: choose one of {', '.join(CROP_MODES)}")
    if cfg.crop == "pose":
        from posture.pose import load_blazepose

        load_blazepose()  # the install hint now, not a traceback after the model is built
    if cfg.head_hidden < 0 or not 0 <= cfg.head_dropout < 1:
        raise UserError("--head-hidden must be >= 0 and --head-dropout in [0, 1)")
    _parse_unfreeze(cfg.unfreeze)
    _recipe(cfg.recipe)


def _recipe(name: str | None) -> Any:
    if not name:
        return None
    try:
        from posture.models.classic.recipes import RECIPES
    except ImportError:
        raise UserError("--recipe needs posture.models.classic.recipes, which is not available") from None
    if name not in RECIPES:
        raise UserError(f"unknown recipe {name!r}; choose one of {', '.join(sorted(RECIPES))}")
    return RECIPES[name]


def _optim_spec(cfg: FinetuneConfig, lr: float | None = None) -> OptimSpec:
    recipe = _recipe(cfg.recipe)
    if recipe is not None:
        return OptimSpec(name=recipe.optimizer, lr=lr if lr is not None else (cfg.lr or recipe.lr), recipe=recipe)
    return OptimSpec(lr=lr if lr is not None else (cfg.lr or DEFAULT_LR), weight_decay=cfg.weight_decay)


def _check_out(cfg: FinetuneConfig) -> bool:
    """Refuse to clobber another run; returns True when resume state should be loaded."""
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    finished = (out / CONFIG_NAME).is_file() or (out / WEIGHTS_NAME).is_file()
    interrupted = resume.has_resume_state(out)
    if cfg.resume and cfg.overwrite:
        raise UserError("--resume and --overwrite contradict each other; pick one")
    if cfg.resume:
        if interrupted:
            return True
        if finished:
            raise UserError(f"{out}: the run already finished (nothing to resume); use --overwrite to retrain")
        log.info("%s: no interrupted run to resume; starting from scratch", out)
        return False
    if out.is_dir() and any(out.iterdir()) and not cfg.overwrite:
        what = "a finished run" if finished else ("an interrupted run" if interrupted else "other files")
        raise UserError(f"{out} already holds {what}; pass --overwrite to replace it"
                        + (" or --resume to continue it" if interrupted else ""))
    return False


def _load_splits(cfg: FinetuneConfig) -> tuple[Path, list[str], dict[str, pd.DataFrame]]:
    root = Path(cfg.data)
    full = open_dataset(root)
    frame = full.frame
    classes = full.class_names if (root / "manifest.csv").is_file() else read_class_names(root, frame)
    splits = {s: frame[frame["split"] == s].reset_index(drop=True) for s in ("train", "val", "test")}
    for s in ("train", "val"):
        if splits[s].empty:
            raise UserError(f"{root}: the {s} split is empty; training needs train and val images "
                            "(re-run `python -m posture.ingest` with a split, or check the manifest's split column)")
    _check_classes(root, splits["train"], classes)
    if splits["test"].empty:
        log.warning("%s: the test split is empty; metrics.json will have no test scores", root)
    return root, classes, splits


def _check_classes(root: Path, train: pd.DataFrame, classes: list[str]) -> None:
    present = sorted(set(train["label"]))
    if len(classes) < 2 or len(present) < 2:
        raise UserError(f"{root}: the training split has only one class ({', '.join(present) or 'none'}); "
                        "a classifier needs examples of at least two")


# --------------------------------------------------------------------------- the run


def run_finetune(cfg: FinetuneConfig) -> dict[str, Any]:
    """Train a run as described in the module docstring; returns the metrics (as in metrics.json)."""
    from posture import models as zoo

    t_start = time.perf_counter()
    _check_config(cfg)
    unfreeze = _parse_unfreeze(cfg.unfreeze)
    dist_info = distributed.detect()
    device = distributed.init(dist_info, resolve_device(cfg.device))
    owns_group = dist_info.enabled
    if dist_info.enabled and device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // dist_info.world_size))
    try:
        do_resume = _check_out(cfg)
        root, classes, splits = _load_splits(cfg)
        out = Path(cfg.out)
        state = resume.load_state(out) if do_resume else None
        if state is not None and state["meta"].get("training") != _jsonify(cfg.training_dict()):
            raise UserError(f"{out}: the interrupted run used different options; resume with the same options "
                            "or pass --overwrite to start again")

        pretrained: bool | str = True if cfg.weights is None else cfg.weights
        torch.manual_seed(cfg.seed)
        head_spec = zoo.HeadSpec(hidden=cfg.head_hidden, dropout=cfg.head_dropout)
        model = zoo.build_model(cfg.model, len(classes), pretrained=pretrained, head=head_spec)
        pre = model.preprocessing
        if cfg.image_size is not None:
            pre = replace(pre, input_size=int(cfg.image_size))
        if cfg.crop != "none":
            pre = replace(pre, crop=cfg.crop)
        model.preprocessing = pre
        fingerprint = zoo.weights_fingerprint(cfg.model, pretrained)
        model.freeze_backbone()

        # 1. features ------------------------------------------------------------------
        spec = FeatureSpec(arch=cfg.model, weights_fingerprint=fingerprint, preprocessing=pre,
                           aug_views=cfg.aug_views, aug_seed=cfg.seed, aug_strength=cfg.aug_strength)
        cache = None if cfg.no_cache else FeatureCache(cfg.cache_dir or default_cache_dir())
        common = dict(cache=cache, backend=cfg.extract_backend, batch_size=cfg.extract_batch_size,
                      workers=cfg.workers, device=device, rank=dist_info.rank, world_size=dist_info.world_size,
                      num_features=model.num_features, progress=cfg.progress)
        t0 = time.perf_counter()
        feats = {"train": extract_features(model.backbone, root, splits["train"], spec, **common)}
        eval_frame = pd.concat([splits["val"], splits["test"]], ignore_index=True)
        feats["eval"] = extract_features(model.backbone, root, eval_frame, replace(spec, aug_views=0), **common)
        extract_s = time.perf_counter() - t0
        n_val = len(splits["val"])
        ok = {"train": feats["train"].ok, "val": feats["eval"].ok[:n_val], "test": feats["eval"].ok[n_val:]}
        skipped = feats["train"].stats.failed + feats["eval"].stats.failed
        if skipped:
            log.warning("skipped %d unreadable image(s); see metrics.json 'skipped_images'", len(skipped))
        for s in ("train", "val", "test"):
            splits[s] = splits[s][ok[s].numpy()].reset_index(drop=True)
        for s in ("train", "val"):
            if splits[s].empty:
                raise UserError(f"{root}: no readable images left in the {s} split")
        _check_classes(root, splits["train"], classes)
        targets = {s: torch.tensor([classes.index(lbl) for lbl in splits[s]["label"]], dtype=torch.long)
                   for s in splits}
        train_x = feats["train"].features[ok["train"]]
        eval_x = feats["eval"].features[:, 0]
        val_x, test_x = eval_x[:n_val][ok["val"]], eval_x[n_val:][ok["test"]]
        extraction = _extraction_summary(feats["train"].stats, feats["eval"].stats)
        del feats

        # 2. head on features ------------------------------------------------------------
        t1 = time.perf_counter()
        meta = state["meta"] if state else {}
        history: list[dict[str, Any]] = list(meta.get("history", []))
        stopper = EarlyStopping.from_dict(meta["stopper"]) if state else EarlyStopping(patience=cfg.patience)
        resumed_phase = meta.get("phase", "head")

        def saver(phase: HeadPhase | ImagePhase, phase_name: str) -> Any:
            def save(epoch: int, best: dict[str, torch.Tensor]) -> None:
                if dist_info.is_main:
                    resume.save_state(out, model=phase.state(), best=best, optimizer=phase.optimizer.state_dict(),
                                      scheduler=phase.scheduler.state_dict(),
                                      meta={"phase": phase_name, "epoch": epoch, "stopper": stopper.to_dict(),
                                            "history": history, "training": _jsonify(cfg.training_dict())})
                distributed.barrier(dist_info)
            return save

        head_phase = HeadPhase(model, train_x, targets["train"], val_x, targets["val"], len(classes),
                               _optim_spec(cfg), cfg.epochs, cfg.batch_size, cfg.seed, dist_info, device)
        best: dict[str, torch.Tensor] = head_phase.state()
        if resumed_phase == "head":
            start = 0
            if state is not None:
                head_phase.load(state["model"])
                head_phase.optimizer.load_state_dict(state["optimizer"])
                head_phase.scheduler.load_state_dict(state["scheduler"])
                if state["rng"] is not None:
                    torch.set_rng_state(state["rng"])
                best = state["best"] or best
                start = int(meta["epoch"])
                log.info("resuming %s after epoch %d", out, start)
            with torch_threads(1 if device.type == "cpu" else None):
                best = run_phase(head_phase, PhaseRun(epochs=cfg.epochs, start_epoch=start, history=history,
                                                      fail_after_epoch=cfg.fail_after_epoch),
                                 stopper, best, saver(head_phase, "head"), progress=cfg.progress)
            head_phase.load(best)
        head_epochs = max((r["epoch"] for r in history if r["phase"] == "head"), default=0)

        # 3. optional unfreezing on images -------------------------------------------------
        best_full = copy_state(model.state_dict())
        if unfreeze != 0 and cfg.unfreeze_epochs > 0:
            transform = build_eval_transform(pre)
            train_ds = ManifestDataset(root, None, None, classes, frame=splits["train"])
            val_ds = ManifestDataset(root, None, transform, classes, frame=splits["val"])
            image_phase = ImagePhase(model, train_ds, val_ds, len(classes), _optim_spec(cfg, cfg.unfreeze_lr),
                                     unfreeze, cfg.lr_decay, cfg.unfreeze_epochs, cfg.batch_size, cfg.workers,
                                     cfg.seed, cfg.aug_strength, dist_info, device)
            start = 0
            if resumed_phase == "unfreeze" and state is not None:
                image_phase.load(state["model"])
                image_phase.optimizer.load_state_dict(state["optimizer"])
                image_phase.scheduler.load_state_dict(state["scheduler"])
                best_full = state["best"]
                start = int(meta["epoch"])
                log.info("resuming %s after unfreeze epoch %d", out, start)
            else:
                stopper.bad_epochs = 0
            best_full = run_phase(image_phase, PhaseRun(epochs=cfg.unfreeze_epochs, start_epoch=start,
                                                        epoch_offset=head_epochs, history=history,
                                                        fail_after_epoch=cfg.fail_after_epoch),
                                  stopper, best_full, saver(image_phase, "unfreeze"), progress=cfg.progress)
            model.load_state_dict(best_full)
        train_s = time.perf_counter() - t1

        # 4. final metrics and files ---------------------------------------------------------
        if stopper.best_phase == "unfreeze":
            model.eval()
            transform = build_eval_transform(pre)
            logits = {s: predict_images(model, ManifestDataset(root, None, transform, classes, frame=splits[s]),
                                        cfg.batch_size, cfg.workers, device) for s in ("val", "test")}
        else:
            model.head.eval()
            with torch.inference_mode():
                head = model.head.cpu()
                logits = {"val": head(val_x).float(), "test": head(test_x).float() if len(test_x) else None}
        metrics: dict[str, Any] = {
            "classes": classes,
            "best_epoch": stopper.best_epoch, "best_phase": stopper.best_phase,
            "epochs_run": len(history), "stopped_early": stopper.should_stop,
            "val": classification_metrics(logits["val"], targets["val"], len(classes)),
            "test": (classification_metrics(logits["test"], targets["test"], len(classes))
                     if logits["test"] is not None and len(targets["test"]) else None),
            "skipped_images": skipped,
            "extraction": extraction,
        }
        return _finish(cfg, model, classes, pre, fingerprint, head_spec, metrics, history, dist_info, out,
                       timing={"extract_s": extract_s, "train_s": train_s, "total_s": time.perf_counter() - t_start})
    finally:
        if owns_group:
            distributed.shutdown(dist_info)


def _extraction_summary(train: Any, evaluation: Any) -> dict[str, Any]:
    backends = sorted({st.backend for st in (train, evaluation) if st.backend != "none"})
    diffs = [st.parity_max_abs_diff for st in (train, evaluation) if st.parity_max_abs_diff is not None]
    return {"computed": train.computed + evaluation.computed, "from_cache": train.from_cache + evaluation.from_cache,
            "backend": "+".join(backends) or "cache", "parity_max_abs_diff": max(diffs) if diffs else None,
            "seconds": round(train.seconds + evaluation.seconds, 3)}


def _jsonify(d: dict[str, Any]) -> dict[str, Any]:
    """Round-trip through JSON so a fresh config compares equal to one read back from disk."""
    import json

    return json.loads(json.dumps(d))


def _finish(cfg: FinetuneConfig, model: torch.nn.Module, classes: list[str], pre: Any, fingerprint: str,
            head_spec: Any, metrics: dict[str, Any], history: list[dict[str, Any]],
            dist_info: distributed.DistInfo, out: Path, timing: dict[str, float]) -> dict[str, Any]:
    """Rank 0 writes the run into a staging folder and renames it over ``out`` in one step."""
    metrics["timing"] = {k: round(v, 3) for k, v in timing.items()}
    if dist_info.is_main:
        config = {
            "architecture": cfg.model,
            "classes": classes,
            "preprocessing": pre.to_dict(),
            "input_size": pre.input_size,
            "head": head_spec.to_dict(),
            "weights": {"source": "pretrained" if cfg.weights is None else cfg.weights, "fingerprint": fingerprint},
            "training": {**cfg.training_dict(), "world_size": dist_info.world_size},
        }
        frame = history_frame(history)
        staging = out.parent / f".{out.name}.staging-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            save_checkpoint(staging, model.state_dict(), config, metrics=metrics, history=frame)
            plot_training_curve(frame, staging / CURVE_NAME, metrics.get("best_epoch"))
            swap_into_place(staging, out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("wrote %s", out)
    distributed.barrier(dist_info)
    return metrics


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m posture.finetune",
        description="Train a posture classifier by transfer learning: backbone features are computed once and "
                    "cached, then the head trains on them in seconds (optionally followed by unfreezing the last "
                    "stages on images).",
        epilog="example: python -m posture.finetune --data data/sample --out models/sample\n"
               "         python -m posture.finetune --data data/sample --model resnet18 --weights none \\\n"
               "             --out models/r18\n"
               "distributed: torchrun --nproc_per_node=2 -m posture.finetune --data ... --out ...",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    d = FinetuneConfig(data="", out="")
    p.add_argument("--data", required=True, help="an ingested dataset folder (manifest.csv with train/val/test)")
    p.add_argument("--out", required=True, help="run folder to write (models/NAME)")
    p.add_argument("--model", default=d.model, help=f"zoo architecture (default {d.model}: genuine ImageNet weights "
                   "offline); see posture.models.list_models()")
    p.add_argument("--weights", default=None, metavar="FILE|none",
                   help="backbone weights: default the model's genuine weights, 'none' for random init, or a "
                        ".pth/.safetensors state dict")
    p.add_argument("--epochs", type=int, default=d.epochs, help="head epochs on cached features (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="training batch size (default %(default)s)")
    p.add_argument("--lr", type=float, default=None, help="head learning rate (default 3e-3, or the recipe's)")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay,
                   help="AdamW weight decay (default %(default)s)")
    p.add_argument("--patience", type=int, default=d.patience,
                   help="stop after this many epochs without a better val balanced accuracy; 0 never "
                        "(default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed for head init, shuffling and augmentation")
    p.add_argument("--device", default=d.device, choices=DEVICE_CHOICES, help="compute device (default auto)")
    p.add_argument("--workers", type=int, default=d.workers, help="image decoding processes (default %(default)s)")
    p.add_argument("--unfreeze", default=d.unfreeze, metavar="N|all",
                   help="after the head, also train the last N backbone stages (or all) on images (default 0: no)")
    p.add_argument("--unfreeze-epochs", type=int, default=d.unfreeze_epochs,
                   help="epochs of the unfreeze phase (default %(default)s)")
    p.add_argument("--unfreeze-lr", type=float, default=d.unfreeze_lr,
                   help="head LR in the unfreeze phase; the stage k from the top gets lr*decay**k "
                        "(default %(default)s)")
    p.add_argument("--lr-decay", type=float, default=d.lr_decay, help="per-stage LR factor (default %(default)s)")
    p.add_argument("--aug-views", type=int, default=d.aug_views,
                   help="augmented views per training image stored in the feature cache; each epoch draws one of "
                        "the K+1 views (default %(default)s)")
    p.add_argument("--aug-strength", type=float, default=d.aug_strength, help="augmentation strength (default 1)")
    p.add_argument("--head-hidden", type=int, default=d.head_hidden,
                   help="hidden units of a two-layer head; 0 = a single linear layer (default %(default)s)")
    p.add_argument("--head-dropout", type=float, default=d.head_dropout, help="head dropout (default %(default)s)")
    p.add_argument("--recipe", default=None, help="a paper's SGD preset for the optimiser and step decay "
                   "(alexnet_paper, resnet_paper, ...; see posture.models.classic.recipes)")
    p.add_argument("--cache-dir", default=None,
                   help="feature cache folder (default $POSTURE_CACHE or ~/.cache/posture/features; deletable)")
    p.add_argument("--no-cache", action="store_true", help="compute features without reading or writing the cache")
    p.add_argument("--extract-backend", default=d.extract_backend, choices=BACKENDS,
                   help="run the frozen backbone with ONNX Runtime (auto on CPU: faster) or torch")
    p.add_argument("--extract-batch-size", type=int, default=d.extract_batch_size, help="images per extraction batch")
    p.add_argument("--image-size", type=int, default=None, help="override the model's input size (pixels)")
    p.add_argument("--crop", choices=CROP_MODES, default="none",
                   help="'pose': crop each photo to head and shoulders found by MediaPipe BlazePose before "
                        "the backbone (helps on real photos framed differently from the training ones; needs "
                        f"`{INSTALL_HINT}`). Stored in the run, so evaluation and the app crop alike "
                        "(default none)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_logging_flags(p)
    return p


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    names = {f.name for f in fields(FinetuneConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    values["progress"] = not args.no_progress
    return FinetuneConfig(**values)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    metrics = run_finetune(config_from_args(args))
    if distributed.detect().is_main:
        print(format_summary(args.out, metrics))
    return 0


def format_summary(out: str, metrics: dict[str, Any]) -> str:
    def row(name: str, m: dict[str, Any] | None) -> str:
        if not m:
            return f"  {name:<5} (no images)"
        return f"  {name:<5} n={m['n']:<5} accuracy {m['accuracy']:.3f}  balanced accuracy {m['balanced_accuracy']:.3f}"

    return "\n".join([f"run: {out}  (best epoch {metrics['best_epoch']}, {metrics['best_phase']})",
                      row("val", metrics["val"]), row("test", metrics["test"])])


if __name__ == "__main__":
    raise SystemExit(run_main(main))
