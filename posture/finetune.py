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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from posture.checkpoint import CONFIG_NAME, WEIGHTS_NAME, save_checkpoint
from posture.cli import UserError, add_logging_flags, run_main, setup_logging
from posture.data import VAL_GROUPS, ManifestDataset, open_dataset, read_class_names, regroup_validation
from posture.device import DEVICE_CHOICES, resolve_device
from posture.fileio import swap_into_place
from posture.geometry import DEFAULT_FEATURES, FEATURES
from posture.features import BACKENDS, FeatureCache, FeatureSpec, default_cache_dir, extract_run_features
from posture.training import distributed, resume
from posture.labels import CLASS_NAMES
from posture.pose import INSTALL_HINT
from posture.metrics import logit_metrics
from posture.provenance import training_record
from posture.training.loop import (EarlyStopping, HeadPhase, ImagePhase, OptimSpec, PhaseRun, copy_state,
                                   group_class_weights, predict_images, run_phase, torch_threads)
from posture.training.report import CURVE_NAME, history_frame, plot_training_curve
from posture.transforms import CROP_MODES, build_eval_transform

log = logging.getLogger(__name__)

#: The configuration with the best leave-one-source-out score on the real photos
#: (``bench/results/real_photos.md``): posture geometry from BlazePose, a linear head.
DEFAULT_MODEL = "pose"
#: Without MediaPipe the default cannot run; this CNN-only model can (genuine weights offline).
CNN_ONLY_MODEL = "efficientnet_lite0"
#: Head defaults per kind of extractor (``--head-hidden`` / ``--head-dropout`` override them). CNN:
#: picked by validation balanced accuracy on the 500-image synthetic sample (EfficientNet-Lite0):
#: linear head / 2 views 0.92, MLP-256 + dropout 0.3 / 4 views 0.96, / 8 views 0.94. Pose and
#: fusions: by leave-one-source-out on the real photos (bench/real_photos.py).
HEAD_DEFAULTS = {"cnn": (256, 0.3), "pose": (0, 0.0), "fusion": (0, 0.0)}
#: Head learning rate per kind (AdamW): a CNN head on ~1000 raw features, or a linear head on a few
#: standardised geometry numbers, which needs far larger steps to converge in the same epochs
#: (LOSO on the real photos: 3e-3 0.78, 3e-2 0.84, 1e-1 0.89 mean-fold balanced accuracy).
DEFAULT_LRS = {"cnn": 3e-3, "pose": 0.1, "fusion": 3e-3}
DEFAULT_LR = DEFAULT_LRS["cnn"]
#: How the head's loss weighs photos: ``class`` (inverse class frequency) or ``session`` (every
#: class of every capture session, ``--session-column``, counts the same).
BALANCES = ("class", "session")
#: The class whose photos give a session's upright reference (calibration).
UPRIGHT_CLASS = CLASS_NAMES[1]
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
    head_hidden: int | None = None       # None: the extractor kind's default (HEAD_DEFAULTS)
    head_dropout: float | None = None
    pose_features: str | None = None     # comma-separated geometry names; None: posture.geometry.DEFAULT_FEATURES
    val_group: str = "none"              # re-draw val from whole groups of this column: none | subject | source
    session_column: str = "source"       # which manifest column tells capture sessions apart
    balance: str = "class"               # class | session: how the head's loss weighs photos (BALANCES)
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

    def __post_init__(self) -> None:
        from posture.models import extractor_parts

        hidden, dropout = HEAD_DEFAULTS[extractor_parts(self.model).kind]
        self.head_hidden = hidden if self.head_hidden is None else self.head_hidden
        self.head_dropout = dropout if self.head_dropout is None else self.head_dropout

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
    if cfg.head_hidden is None or cfg.head_dropout is None or cfg.head_hidden < 0 or not 0 <= cfg.head_dropout < 1:
        raise UserError("--head-hidden must be >= 0 and --head-dropout in [0, 1)")
    if cfg.balance not in BALANCES:
        raise UserError(f"--balance {cfg.balance}: choose one of {', '.join(BALANCES)}")
    if cfg.val_group not in VAL_GROUPS:
        raise UserError(f"--val-group {cfg.val_group}: choose one of {', '.join(VAL_GROUPS)}")
    _check_extractor(cfg)
    _parse_unfreeze(cfg.unfreeze)
    _recipe(cfg.recipe)


def _check_extractor(cfg: FinetuneConfig) -> None:
    """A pose-based model needs MediaPipe (say so in one line, with the CNN-only way out) and cannot
    be unfrozen (its geometry is no network); a CNN-only option on the geometry alone is a mistake."""
    from posture.models import extractor_parts

    parts = extractor_parts(cfg.model)
    if parts.pose or cfg.crop == "pose":
        from posture.pose import pose_available

        if not pose_available():
            what = f"the default model '{cfg.model}'" if cfg.model == DEFAULT_MODEL else f"--model {cfg.model}"
            if not parts.pose:
                what = "--crop pose"
            raise UserError(f"{what} needs MediaPipe BlazePose (body landmarks), which is not installed: "
                            f"`{INSTALL_HINT}`; meanwhile a CNN-only model works: --model {CNN_ONLY_MODEL}")
    if parts.pose and _parse_unfreeze(cfg.unfreeze) != 0:
        raise UserError(f"--unfreeze trains a network on images; {cfg.model} reads posture geometry, whose "
                        "extractor (BlazePose) stays frozen. Use it with a CNN model, or leave --unfreeze at 0")
    if parts.cnn is None and (cfg.crop != "none" or cfg.image_size is not None or cfg.weights is not None):
        raise UserError("--crop, --image-size and --weights are for models that read pixels; 'pose' reads "
                        "body landmarks only")
    if cfg.pose_features and not parts.pose:
        raise UserError("--pose-features is for the 'pose' model and '<cnn>+pose' fusions")


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
    from posture.models import extractor_parts

    recipe = _recipe(cfg.recipe)
    if recipe is not None:
        return OptimSpec(name=recipe.optimizer, lr=lr if lr is not None else (cfg.lr or recipe.lr), recipe=recipe)
    default = DEFAULT_LRS[extractor_parts(cfg.model).kind]
    return OptimSpec(lr=lr if lr is not None else (cfg.lr or default), weight_decay=cfg.weight_decay)


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
    if cfg.val_group != "none":
        frame = regroup_validation(frame, cfg.val_group, seed=cfg.seed)
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


def _build(cfg: FinetuneConfig, classes: list[str]) -> tuple[Any, str]:
    """The zoo model with a fresh head and its preprocessing as configured; (model, weights fingerprint)."""
    from posture import models as zoo

    pretrained: bool | str = True if cfg.weights is None else cfg.weights
    torch.manual_seed(cfg.seed)
    head_spec = zoo.HeadSpec(hidden=cfg.head_hidden, dropout=cfg.head_dropout)
    features = [f.strip() for f in cfg.pose_features.split(",") if f.strip()] if cfg.pose_features else None
    model = zoo.build_model(cfg.model, len(classes), pretrained=pretrained, head=head_spec, pose_features=features)
    pre = model.preprocessing
    if cfg.image_size is not None:
        pre = replace(pre, input_size=int(cfg.image_size))
    if cfg.crop != "none":
        pre = replace(pre, crop=cfg.crop)
    model.preprocessing = pre
    model.freeze_backbone()
    return model, zoo.weights_fingerprint(cfg.model, pretrained)


@dataclass
class Prepared:
    """Step 1's result: the head's (standardised) inputs per split and what extraction left out."""

    splits: dict[str, pd.DataFrame]
    targets: dict[str, torch.Tensor]
    train_x: torch.Tensor  # [N, V+1, F]
    val_x: torch.Tensor    # [N, F]
    test_x: torch.Tensor   # [N, F]
    skipped: list[dict[str, str]]
    not_assessed: list[dict[str, str]]
    extraction: dict[str, Any]
    seconds: float


def _prepare_features(cfg: FinetuneConfig, model: Any, fingerprint: str, root: Path, classes: list[str],
                      splits: dict[str, pd.DataFrame], dist_info: distributed.DistInfo,
                      device: torch.device) -> Prepared:
    """Step 1: every photo's features (cached), unreadable and unassessable photos dropped, and, for
    pose-based runs, the input standardised with statistics of the training split (stored in the run)."""
    t0 = time.perf_counter()
    spec = FeatureSpec(arch=cfg.model, weights_fingerprint=fingerprint, preprocessing=model.preprocessing,
                       aug_views=cfg.aug_views, aug_seed=cfg.seed, aug_strength=cfg.aug_strength)
    cache = None if cfg.no_cache else FeatureCache(cfg.cache_dir or default_cache_dir())
    common = dict(cache=cache, backend=cfg.extract_backend, batch_size=cfg.extract_batch_size, workers=cfg.workers,
                  device=device, rank=dist_info.rank, world_size=dist_info.world_size, progress=cfg.progress)
    eval_frame = pd.concat([splits["val"], splits["test"]], ignore_index=True)
    feats = {"train": extract_run_features(model, root, splits["train"], spec, **common),
             "eval": extract_run_features(model, root, eval_frame, replace(spec, aug_views=0), **common)}
    n_val = len(splits["val"])
    ok = {"train": feats["train"].ok, "val": feats["eval"].ok[:n_val], "test": feats["eval"].ok[n_val:]}
    skipped = feats["train"].stats.failed + feats["eval"].stats.failed
    if skipped:
        log.warning("skipped %d unreadable image(s); see metrics.json 'skipped_images'", len(skipped))
    not_assessed = ([{"path": str(splits["train"]["path"].iloc[i]), "split": "train", "reason": r}
                     for i, r in sorted(feats["train"].not_assessed.items())]
                    + [{"path": str(eval_frame["path"].iloc[i]), "split": "val" if i < n_val else "test", "reason": r}
                       for i, r in sorted(feats["eval"].not_assessed.items())])
    if not_assessed:
        log.warning("%d photo(s) cannot be assessed (no person, or head and shoulders not visible) and are left "
                    "out; see metrics.json 'not_assessed'", len(not_assessed))
    kept = {s: splits[s][ok[s].numpy()].reset_index(drop=True) for s in ("train", "val", "test")}
    for s in ("train", "val"):
        if kept[s].empty:
            raise UserError(f"{root}: no readable{' and assessable' if model.uses_pose else ''} images left in the "
                            f"{s} split")
    _check_classes(root, kept["train"], classes)
    targets = {s: torch.tensor([classes.index(lbl) for lbl in kept[s]["label"]], dtype=torch.long) for s in kept}
    train_x = feats["train"].features[ok["train"]]
    eval_x = feats["eval"].features[:, 0]
    val_x, test_x = eval_x[:n_val][ok["val"]], eval_x[n_val:][ok["test"]]
    if model.uses_pose:  # standardise [CNN ‖ geometry]; the statistics travel in the run's norm.* tensors
        model.norm.fit(train_x[:, 0])
        with torch.no_grad():
            train_x, val_x, test_x = model.norm(train_x), model.norm(val_x), model.norm(test_x)
    extraction = _extraction_summary(feats["train"].stats, feats["eval"].stats)
    if feats["train"].landmarks is not None:
        extraction["landmarks"] = {"train": feats["train"].landmarks, "eval": feats["eval"].landmarks}
    return Prepared(kept, targets, train_x, val_x, test_x, skipped, not_assessed, extraction,
                    time.perf_counter() - t0)


def _upright_reference(model: Any, data: Prepared, classes: list[str], session_column: str) -> list[float] | None:
    """Mean raw geometry of the training split's upright photos, averaged over sessions: what a
    calibrated Predictor maps a new session's own upright photos onto (``config.json`` ``pose``)."""
    if not model.uses_pose or UPRIGHT_CLASS not in classes:
        return None
    n_pose = len(model.pose_features)
    with torch.no_grad():
        raw = data.train_x[:, 0] * model.norm.std + model.norm.mean
    geometry = raw[:, -n_pose:].double().numpy()
    frame = data.splits["train"]
    upright = (frame["label"] == UPRIGHT_CLASS).to_numpy()
    if not upright.any():
        return None
    sessions = frame[session_column].astype(str).to_numpy() if session_column in frame.columns else \
        np.zeros(len(frame), dtype=str)
    means = [geometry[upright & (sessions == s)].mean(axis=0) for s in np.unique(sessions[upright])]
    return [float(v) for v in np.mean(means, axis=0)]


# --------------------------------------------------------------------------- the run


def run_finetune(cfg: FinetuneConfig) -> dict[str, Any]:
    """Train a run as described in the module docstring; returns the metrics (as in metrics.json)."""
    t_start = time.perf_counter()
    _check_config(cfg)
    unfreeze = _parse_unfreeze(cfg.unfreeze)
    dist_info = distributed.detect()
    device = distributed.init(dist_info, resolve_device(cfg.device))
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
        model, fingerprint = _build(cfg, classes)
        data = _prepare_features(cfg, model, fingerprint, root, classes, splits, dist_info, device)
        t1 = time.perf_counter()
        meta = state["meta"] if state else {}
        history: list[dict[str, Any]] = list(meta.get("history", []))
        stopper = EarlyStopping.from_dict(meta["stopper"]) if state else EarlyStopping(patience=cfg.patience)

        def saver(phase: HeadPhase | ImagePhase, phase_name: str) -> Callable[[int, dict[str, torch.Tensor]], None]:
            def save(epoch: int, best: dict[str, torch.Tensor]) -> None:
                if dist_info.is_main:
                    resume.save_state(out, model=phase.state(), best=best, optimizer=phase.optimizer.state_dict(),
                                      scheduler=phase.scheduler.state_dict(),
                                      meta={"phase": phase_name, "epoch": epoch, "stopper": stopper.to_dict(),
                                            "history": history, "training": _jsonify(cfg.training_dict())})
                distributed.barrier(dist_info)
            return save

        _train_head(cfg, model, data, classes, state, history, stopper, saver, dist_info, device)
        head_epochs = max((r["epoch"] for r in history if r["phase"] == "head"), default=0)
        if unfreeze != 0 and cfg.unfreeze_epochs > 0:
            _train_unfrozen(cfg, model, root, data, classes, unfreeze, state, history, stopper, saver, head_epochs,
                            dist_info, device)
        train_s = time.perf_counter() - t1
        metrics = _final_metrics(cfg, model, root, data, classes, stopper, history, device)
        upright = _upright_reference(model, data, classes, cfg.session_column)
        return _finish(cfg, model, classes, fingerprint, metrics, history, dist_info, out, upright,
                       timing={"extract_s": data.seconds, "train_s": train_s,
                               "total_s": time.perf_counter() - t_start})
    finally:
        if dist_info.enabled:
            distributed.shutdown(dist_info)


def _restore(phase: HeadPhase | ImagePhase, state: dict[str, Any]) -> None:
    """Put a phase back where an interrupted run's resume state left it."""
    phase.load(state["model"])
    phase.optimizer.load_state_dict(state["optimizer"])
    phase.scheduler.load_state_dict(state["scheduler"])


def _train_head(cfg: FinetuneConfig, model: Any, data: Prepared, classes: list[str], state: dict[str, Any] | None,
                history: list[dict[str, Any]], stopper: EarlyStopping, saver: Any, dist_info: distributed.DistInfo,
                device: torch.device) -> None:
    """Step 2: the head on cached features (skipped when resuming into the unfreeze phase)."""
    if state is not None and state["meta"].get("phase", "head") != "head":
        return
    weights = None
    if cfg.balance == "session" and cfg.session_column in data.splits["train"].columns:
        weights = group_class_weights(data.targets["train"], data.splits["train"][cfg.session_column].astype(str)
                                      .tolist(), len(classes))
    phase = HeadPhase(model, data.train_x, data.targets["train"], data.val_x, data.targets["val"], len(classes),
                      _optim_spec(cfg), cfg.epochs, cfg.batch_size, cfg.seed, dist_info, device, sample_weight=weights)
    best: dict[str, torch.Tensor] = phase.state()
    start = 0
    if state is not None:
        _restore(phase, state)
        if state["rng"] is not None:
            torch.set_rng_state(state["rng"])
        best = state["best"] or best
        start = int(state["meta"]["epoch"])
        log.info("resuming %s after epoch %d", cfg.out, start)
    with torch_threads(1 if device.type == "cpu" else None):
        best = run_phase(phase, PhaseRun(epochs=cfg.epochs, start_epoch=start, history=history,
                                         fail_after_epoch=cfg.fail_after_epoch),
                         stopper, best, saver(phase, "head"), progress=cfg.progress)
    phase.load(best)


def _train_unfrozen(cfg: FinetuneConfig, model: Any, root: Path, data: Prepared, classes: list[str],
                    unfreeze: int | str, state: dict[str, Any] | None, history: list[dict[str, Any]],
                    stopper: EarlyStopping, saver: Any, head_epochs: int, dist_info: distributed.DistInfo,
                    device: torch.device) -> None:
    """Step 3 (optional): the last backbone stages and the head on images, discriminative LRs."""
    pre = model.preprocessing
    train_ds = ManifestDataset(root, None, None, classes, frame=data.splits["train"])
    val_ds = ManifestDataset(root, None, build_eval_transform(pre), classes, frame=data.splits["val"])
    phase = ImagePhase(model, train_ds, val_ds, len(classes), _optim_spec(cfg, cfg.unfreeze_lr), unfreeze,
                       cfg.lr_decay, cfg.unfreeze_epochs, cfg.batch_size, cfg.workers, cfg.seed, cfg.aug_strength,
                       dist_info, device)
    best = copy_state(model.state_dict())
    start = 0
    if state is not None and state["meta"].get("phase") == "unfreeze":
        _restore(phase, state)
        best = state["best"]
        start = int(state["meta"]["epoch"])
        log.info("resuming %s after unfreeze epoch %d", cfg.out, start)
    else:
        stopper.reset_patience()
    best = run_phase(phase, PhaseRun(epochs=cfg.unfreeze_epochs, start_epoch=start, epoch_offset=head_epochs,
                                     history=history, fail_after_epoch=cfg.fail_after_epoch),
                     stopper, best, saver(phase, "unfreeze"), progress=cfg.progress)
    model.load_state_dict(best)


def _final_metrics(cfg: FinetuneConfig, model: Any, root: Path, data: Prepared, classes: list[str],
                   stopper: EarlyStopping, history: list[dict[str, Any]], device: torch.device) -> dict[str, Any]:
    """Step 4: val and test scores of the kept state, and what extraction left out."""
    if stopper.best_phase == "unfreeze":
        model.eval()
        transform = build_eval_transform(model.preprocessing)
        logits = {s: predict_images(model, ManifestDataset(root, None, transform, classes, frame=data.splits[s]),
                                    cfg.batch_size, cfg.workers, device) for s in ("val", "test")}
    else:
        model.head.eval()
        with torch.inference_mode():
            head = model.head.cpu()
            logits = {"val": head(data.val_x).float(),
                      "test": head(data.test_x).float() if len(data.test_x) else None}
    n_photos = sum(len(f) for f in data.splits.values()) + len(data.not_assessed)
    return {
        "classes": classes,
        "best_epoch": stopper.best_epoch, "best_phase": stopper.best_phase,
        "epochs_run": len(history), "stopped_early": stopper.should_stop,
        "val": logit_metrics(logits["val"], data.targets["val"], classes),
        "test": (logit_metrics(logits["test"], data.targets["test"], classes)
                 if logits["test"] is not None and len(data.targets["test"]) else None),
        "skipped_images": data.skipped,
        "not_assessed": data.not_assessed,
        "coverage": (n_photos - len(data.not_assessed)) / n_photos if n_photos else None,
        "extraction": data.extraction,
    }


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


def run_config(cfg: FinetuneConfig, model: Any, classes: list[str], fingerprint: str,
               upright: list[float] | None = None, world_size: int = 1) -> dict[str, Any]:
    """The run's ``config.json``: what it is, what it reads, how it was trained."""
    from posture.geometry import GEOMETRY_VERSION, describe
    from posture.models import extractor_parts

    config: dict[str, Any] = {
        "architecture": cfg.model,
        "extractor": extractor_parts(cfg.model).kind,
        "classes": classes,
        "preprocessing": model.preprocessing.to_dict(),
        "input_size": model.preprocessing.input_size,
        "head": model.head_spec.to_dict(),
        "weights": {"source": "pretrained" if cfg.weights is None else cfg.weights, "fingerprint": fingerprint},
        "training": {**cfg.training_dict(), "world_size": world_size},
    }
    if model.uses_pose:
        from posture.pose import detector_version

        config["pose"] = {"features": describe(model.pose_features), "geometry_version": GEOMETRY_VERSION,
                          "landmarks": detector_version(), "upright_reference": upright,
                          "reference_class": UPRIGHT_CLASS}
    return config


def _finish(cfg: FinetuneConfig, model: torch.nn.Module, classes: list[str], fingerprint: str,
            metrics: dict[str, Any], history: list[dict[str, Any]], dist_info: distributed.DistInfo, out: Path,
            upright: list[float] | None, timing: dict[str, float]) -> dict[str, Any]:
    """Rank 0 writes the run into a staging folder and renames it over ``out`` in one step."""
    metrics["timing"] = {k: round(v, 3) for k, v in timing.items()}
    if dist_info.is_main:
        config = run_config(cfg, model, classes, fingerprint, upright, dist_info.world_size)
        config["trained_on"] = training_record(cfg.data, cfg.val_group, cfg.seed, metrics)  # posture.provenance
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
        description="Train a posture classifier by transfer learning: a frozen feature extractor of the zoo "
                    "(posture geometry from BlazePose body landmarks by default, or a CNN, or both fused) turns "
                    "every photo into a vector once (cached), then a head trains on the vectors in seconds "
                    "(optionally followed by unfreezing a CNN's last stages on images).",
        epilog="examples:\n"
               "  python -m posture.finetune --data data/sample --out models/sample            # pose geometry\n"
               "  python -m posture.finetune --data data/sample --model efficientnet_lite0+pose --out models/fused\n"
               "  python -m posture.finetune --data data/sample --model efficientnet_lite0 --out models/cnn\n"
               "  python -m posture.finetune --data data/sample --model resnet18 --weights none --out models/r18\n"
               "distributed: torchrun --nproc_per_node=2 -m posture.finetune --data ... --out ...\n"
               f"The pose models need MediaPipe BlazePose: {INSTALL_HINT}",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    d = FinetuneConfig(data="", out="")
    p.add_argument("--data", required=True, help="an ingested dataset folder (manifest.csv with train/val/test)")
    p.add_argument("--out", required=True, help="run folder to write (models/NAME)")
    p.add_argument("--model", default=d.model,
                   help=f"zoo feature extractor (default {d.model}: posture geometry from BlazePose landmarks, the "
                        "best on real photos of unseen people); a CNN such as efficientnet_lite0 (genuine ImageNet "
                        "weights offline) or any torchvision classifier; or a fusion CNN+pose such as "
                        "efficientnet_lite0+pose. See posture.models.list_models()")
    p.add_argument("--pose-features", default=None, metavar="NAME,NAME,...",
                   help="posture-geometry features the head reads (pose models; default "
                        f"{','.join(DEFAULT_FEATURES)}; all: {','.join(FEATURES)})")
    p.add_argument("--val-group", default=d.val_group, choices=VAL_GROUPS,
                   help="re-draw the validation split from whole subjects or sources (capture sessions) absent "
                        "from training, so early stopping measures a new person (default %(default)s: the "
                        "dataset's own split)")
    p.add_argument("--session-column", default=d.session_column,
                   help="manifest column naming each photo's capture session: for --balance session and the "
                        "upright reference of calibration (default %(default)s)")
    p.add_argument("--balance", default=d.balance, choices=BALANCES,
                   help="how the head's loss weighs photos: 'class' (inverse class frequency) or 'session' (every "
                        "class of every capture session counts the same, so a long burst of one session does not "
                        "dominate; falls back to class without the session column) (default %(default)s)")
    p.add_argument("--weights", default=None, metavar="FILE|none",
                   help="backbone weights: default the model's genuine weights, 'none' for random init, or a "
                        ".pth/.safetensors state dict")
    p.add_argument("--epochs", type=int, default=d.epochs, help="head epochs on cached features (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="training batch size (default %(default)s)")
    p.add_argument("--lr", type=float, default=None,
                   help="head learning rate (default: " + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LRS.items())
                        + "; or the recipe's)")
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
    p.add_argument("--head-hidden", type=int, default=None,
                   help="hidden units of a two-layer head; 0 = a single linear layer (default: "
                        + ", ".join(f"{k} {v[0]}" for k, v in HEAD_DEFAULTS.items()) + ")")
    p.add_argument("--head-dropout", type=float, default=None,
                   help="head dropout (default: " + ", ".join(f"{k} {v[1]}" for k, v in HEAD_DEFAULTS.items()) + ")")
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
