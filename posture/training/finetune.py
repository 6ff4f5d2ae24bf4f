"""``python -m posture.finetune``: transfer learning with a frozen backbone, fast.

The schedule, in the order it runs:

1. **Features, once.** The frozen backbone turns every image (and, with ``--aug-views K``, K
   seeded augmentations of each training image) into a vector, stored in the feature cache
   (:mod:`posture.models.features`). A rerun, another head or another seed reads them back.
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
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from posture.cli import UserError, add_logging_flags, add_options, config_from_args, option, run_main, setup_logging
from posture.data.datasets import VAL_GROUPS, ManifestDataset, open_dataset, read_class_names, regroup_validation
from posture.data.labels import CLASS_NAMES
from posture.data.transforms import CROP_MODES, build_eval_transform
from posture.evaluation.metrics import logit_metrics
from posture.evaluation.provenance import training_record
from posture.io.fileio import check_writable_output, remove_stale_staging, staged_folder
from posture.io.formats import BACKENDS, MANIFEST_NAME, SPLITS
from posture.models.features import ExtractOptions, FeatureCache, FeatureSpec, default_cache_dir, extract_run_features
from posture.pose.detector import DEFAULT_CROP_SCALE, INSTALL_HINT
from posture.pose.geometry import DEFAULT_FEATURES, FEATURES
from posture.runs import resume
from posture.runs.checkpoint import CONFIG_NAME, WEIGHTS_NAME, save_checkpoint
from posture.runtime import distributed
from posture.runtime.device import DEVICE_CHOICES, resolve_device
from posture.training.chosen_defaults import DEFAULTS_CHOSEN
from posture.training.loop import (
    EarlyStopping,
    EpochHook,
    HeadPhase,
    ImagePhase,
    OptimSpec,
    Phase,
    PhaseRun,
    PhaseSpec,
    copy_state,
    group_class_weights,
    predict_images,
    run_phase,
    torch_threads,
)
from posture.training.report import CURVE_NAME, history_frame, plot_training_curve

log = logging.getLogger(__name__)

#: The defaults (model, features, head, weighting, augmentation) are what the procedure of
#: :mod:`posture.training.selection` picks on the real photos, scored by nested leave-one-source-out
#: (:data:`posture.training.chosen_defaults.DEFAULTS_CHOSEN`, ``bench/results/real_photos.md``): posture geometry from
#: BlazePose (``head_2d``), a linear head, every person weighing the same.
DEFAULT_MODEL = "pose"
#: Without MediaPipe the default cannot run; this CNN-only model can (genuine weights offline).
CNN_ONLY_MODEL = "efficientnet_lite0"
#: Head defaults per kind of extractor (``--head-hidden`` / ``--head-dropout`` override them). CNN:
#: picked by validation balanced accuracy on the 500-image synthetic sample (EfficientNet-Lite0):
#: linear head / 2 views 0.92, MLP-256 + dropout 0.3 / 4 views 0.96, / 8 views 0.94. Pose and
#: fusions: by leave-one-source-out on the real photos (bench/real_photos.py).
HEAD_DEFAULTS = {"cnn": (0, 0.0), "pose": (0, 0.0), "fusion": (0, 0.0)}
#: What a CNN sees by default: the head-and-shoulders crop (``pose``); the CNN grid of
#: :mod:`posture.training.selection` picks the crop and a linear head on the real photos (the whole photo: 0.58
#: inner score against 0.71), and on the synthetic sample the whole photo teaches a CNN nothing (0.53).
#: A fusion's CNN always sees the crop; the geometry-only ``pose`` reads no pixels.
CROP_DEFAULTS = {"cnn": "pose", "pose": "none", "fusion": "none"}
#: Head learning rate per kind (AdamW): a CNN head on ~1000 raw features, or a linear head on a few
#: standardised geometry numbers, which needs far larger steps to converge in the same epochs
#: (LOSO on the real photos: 3e-3 0.78, 3e-2 0.84, 1e-1 0.89 mean-fold balanced accuracy).
DEFAULT_LRS = {"cnn": 3e-3, "pose": 0.1, "fusion": 3e-3}
DEFAULT_LR = DEFAULT_LRS["cnn"]
#: How the head's loss weighs photos: ``class`` (inverse class frequency), ``session`` (every class of
#: every capture session, ``--session-column``, counts the same) or ``person`` (every class of every
#: person, the manifest's ``subject``, counts the same: a burst of 110 frames of one person weighs what
#: one stock photo of another does).
BALANCES = ("class", "session", "person")
#: The manifest column naming each photo's person (``--balance person``).
PERSON_COLUMN = "subject"
#: The class whose photos give a session's upright reference (calibration).
UPRIGHT_CLASS = CLASS_NAMES[1]
#: Options that do not change the result; a resumed run may differ from the original in these.
RUNTIME_ONLY = (
    "resume",
    "overwrite",
    "workers",
    "device",
    "progress",
    "cache_dir",
    "no_cache",
    "extract_backend",
    "extract_batch_size",
)


def _head_default_text(index: int) -> str:
    return ", ".join(f"{kind} {values[index]}" for kind, values in HEAD_DEFAULTS.items())


@dataclass
class FinetuneConfig:
    """Every ``python -m posture.finetune`` option; the CLI is generated from these fields
    (:func:`posture.cli.add_options`) and a mistake is a :class:`UserError` when the config is made."""

    data: str = field(metadata=option("an ingested dataset folder (manifest.csv with train/val/test)"))
    out: str = field(metadata=option("run folder to write (models/NAME)"))
    model: str = field(
        default=DEFAULT_MODEL,
        metadata=option(
            "zoo feature extractor: 'pose' is posture geometry from BlazePose landmarks, the best on real photos of "
            "unseen people; a CNN such as efficientnet_lite0 (genuine ImageNet weights offline) or any torchvision "
            "classifier; or a fusion CNN+pose such as efficientnet_lite0+pose. See posture.models.list_models()"
        ),
    )
    pose_features: str | None = field(
        default=None,
        metadata=option(
            f"comma-separated posture-geometry features the head reads (pose models; all: {','.join(FEATURES)})",
            metavar="NAME,NAME,...",
            default_text=",".join(DEFAULT_FEATURES),
        ),
    )
    val_group: str = field(
        default="none",
        metadata=option(
            "re-draw the validation split from whole subjects or sources (capture sessions) absent from training, so "
            "early stopping measures a new person ('none': the dataset's own split)",
            choices=VAL_GROUPS,
        ),
    )
    session_column: str = field(
        default="source",
        metadata=option(
            "manifest column naming each photo's capture session: for --balance session and the upright reference "
            "of calibration"
        ),
    )
    balance: str = field(
        default="person",
        metadata=option(
            "how the head's loss weighs photos: 'class' (inverse class frequency), 'session' (every class of every "
            "capture session counts the same, so a long burst of one session does not dominate) or 'person' (every "
            "class of every person, the manifest's subject, counts the same); session and person fall back to class "
            "without their column",
            choices=BALANCES,
        ),
    )
    extra_data: str | None = field(
        default=None,
        metadata=option(
            "another ingested dataset whose photos (every split) join training, such as a posture.synth drop "
            "ingested with posture.ingest: its cameras and CVA sweep wider than a real set does. Validation and "
            "test stay --data's own",
            metavar="DIR",
        ),
    )
    extra_weight: float = field(
        default=0.5,
        metadata=option("total loss weight of --extra-data's photos, as a share of --data's training photos"),
    )
    weights: str | None = field(
        default=None,
        metadata=option(
            "backbone weights: default the model's genuine weights, 'none' for random init, or a .pth/.safetensors "
            "state dict",
            metavar="FILE|none",
        ),
    )
    epochs: int = field(
        default=60, metadata=option("head epochs on cached features (early stopping usually ends sooner)")
    )
    batch_size: int = field(default=32, metadata=option("training batch size"))
    lr: float | None = field(
        default=None,
        metadata=option(
            "head learning rate",
            default_text=", ".join(f"{k} {v:g}" for k, v in DEFAULT_LRS.items()) + "; or the recipe's",
        ),
    )
    weight_decay: float = field(default=1e-4, metadata=option("AdamW weight decay"))
    patience: int = field(
        default=15, metadata=option("stop after this many epochs without a better val balanced accuracy; 0 never")
    )
    seed: int = field(default=0, metadata=option("seed for head init, shuffling and augmentation"))
    device: str = field(default="auto", metadata=option("compute device", choices=DEVICE_CHOICES))
    workers: int = field(default=2, metadata=option("image decoding processes"))
    unfreeze: str = field(
        default="0",
        metadata=option(
            "after the head, also train the last N backbone stages (or all) on images (CNNs only; 0: no)",
            metavar="N|all",
        ),
    )
    unfreeze_epochs: int = field(default=5, metadata=option("epochs of the unfreeze phase"))
    unfreeze_lr: float = field(
        default=1e-4, metadata=option("head LR in the unfreeze phase; the stage k from the top gets lr*decay**k")
    )
    lr_decay: float = field(default=0.3, metadata=option("per-stage LR factor of the unfreeze phase"))
    aug_views: int = field(
        default=4,
        metadata=option(
            "augmented views per training image stored in the feature cache; each epoch draws one of the K+1 views"
        ),
    )
    aug_strength: float = field(default=1.0, metadata=option("augmentation strength"))
    aug_view3d: float = field(
        default=0.0,
        metadata=option(
            "pose models: each augmented view also sees the person from a camera turned in 3-D (BlazePose's world "
            "landmarks rotated and projected again) by up to this many degrees of yaw, half of it in pitch (a camera "
            "higher or lower) and a quarter in roll; 0: views in the image plane only",
            metavar="DEG",
        ),
    )
    head_hidden: int | None = field(
        default=None,
        metadata=option(
            "hidden units of a two-layer head; 0 = a single linear layer", default_text=_head_default_text(0)
        ),
    )
    head_dropout: float | None = field(
        default=None, metadata=option("head dropout", default_text=_head_default_text(1))
    )
    recipe: str | None = field(
        default=None,
        metadata=option(
            "a paper's SGD preset for the optimiser and step decay (alexnet_paper, resnet_paper, ...; see "
            "posture.models.classic.recipes)"
        ),
    )
    cache_dir: str | None = field(
        default=None,
        metadata=option(
            "feature cache folder (safe to delete)", default_text="$POSTURE_CACHE or ~/.cache/posture/features"
        ),
    )
    no_cache: bool = field(default=False, metadata=option("compute features without reading or writing the cache"))
    extract_backend: str = field(
        default="auto",
        metadata=option("run the frozen backbone with ONNX Runtime (auto on CPU: faster) or torch", choices=BACKENDS),
    )
    extract_batch_size: int = field(default=32, metadata=option("images per extraction batch"))
    image_size: int | None = field(
        default=None, metadata=option("override the model's input size in pixels (small tests, classic nets)")
    )
    crop: str | None = field(
        default=None,
        metadata=option(
            "'pose': crop each photo to head and shoulders found by MediaPipe BlazePose before the backbone (helps on "
            f"real photos framed differently from the training ones; needs `{INSTALL_HINT}`); 'none': the whole "
            "photo. Stored in the run, so evaluation and the app crop alike",
            choices=CROP_MODES,
            default_text="pose for a CNN (a fusion's CNN always sees the crop)",
        ),
    )
    crop_scale: float = field(
        default=DEFAULT_CROP_SCALE,
        metadata=option(
            "with --crop pose: the crop square's side as a multiple of the head-and-shoulders landmarks' extent "
            "(larger keeps more neck and chest)"
        ),
    )
    resume: bool = field(default=False, metadata=option("continue an interrupted run in --out"))
    overwrite: bool = field(default=False, metadata=option("replace the run already in --out"))
    progress: bool = field(default=True, metadata=option("no progress bars"))

    def __post_init__(self) -> None:
        from posture.models import extractor_parts

        # A notebook's pathlib.Path works too; config.json stores the text either way.
        self.data, self.out = os.fspath(self.data), os.fspath(self.out)
        kind = extractor_parts(self.model).kind
        hidden, dropout = HEAD_DEFAULTS[kind]
        self.crop = CROP_DEFAULTS[kind] if self.crop is None else self.crop
        self.head_hidden = hidden if self.head_hidden is None else self.head_hidden
        self.head_dropout = dropout if self.head_dropout is None else self.head_dropout
        self.validate()

    def validate(self) -> None:
        """Refuse values no run can use, in one line naming the option (environment checks, such as
        MediaPipe being installed, wait for :func:`check_runnable`)."""
        for name in ("epochs", "batch_size", "extract_batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.aug_views < 0 or self.unfreeze_epochs < 0 or self.patience < 0 or self.workers < 0:
            raise UserError("--aug-views, --unfreeze-epochs, --patience and --workers must be >= 0")
        if not 0 <= self.aug_view3d <= 90:
            raise UserError(f"--aug-view3d {self.aug_view3d}: give a turn between 0 and 90 degrees")
        if not self.extra_weight > 0:
            raise UserError(f"--extra-weight {self.extra_weight}: must be above 0")
        for name, value, allowed in (
            ("extract-backend", self.extract_backend, BACKENDS),
            ("crop", self.crop, CROP_MODES),
            ("balance", self.balance, BALANCES),
            ("val-group", self.val_group, VAL_GROUPS),
        ):
            if value not in allowed:
                raise UserError(f"--{name} {value}: choose one of {', '.join(allowed)}")
        if not 1.0 <= self.crop_scale <= 6.0:
            raise UserError(f"--crop-scale {self.crop_scale}: give a multiple between 1 and 6")
        if self.image_size is not None and self.image_size < 16:
            raise UserError(f"--image-size {self.image_size}: too small (at least 16)")
        if (
            self.head_hidden is None
            or self.head_dropout is None
            or self.head_hidden < 0
            or not 0 <= self.head_dropout < 1
        ):
            raise UserError("--head-hidden must be >= 0 and --head-dropout in [0, 1)")
        self.unfreeze_stages  # noqa: B018 - raises on a value that is neither a count nor "all"
        self._check_extractor()
        _recipe(self.recipe)

    def _check_extractor(self) -> None:
        """A pose-based model cannot be unfrozen (its geometry is no network); a CNN-only option on the
        geometry alone is a mistake."""
        from posture.models import extractor_parts

        parts = extractor_parts(self.model)
        if parts.pose and self.unfreeze_stages != 0:
            raise UserError(
                f"--unfreeze trains a network on images; {self.model} reads posture geometry, whose "
                "extractor (BlazePose) stays frozen. Use it with a CNN model, or leave --unfreeze at 0"
            )
        pixel_options = (self.crop != "none", self.crop_scale != DEFAULT_CROP_SCALE, self.image_size, self.weights)
        if parts.cnn is None and any(o not in (False, None) for o in pixel_options):
            raise UserError(
                "--crop, --crop-scale, --image-size and --weights are for models that read pixels; 'pose' reads body "
                "landmarks only"
            )
        if self.pose_features and not parts.pose:
            raise UserError("--pose-features is for the 'pose' model and '<cnn>+pose' fusions")
        if self.extra_data and self.unfreeze_stages != 0:
            raise UserError("--extra-data joins the cached-feature training only; it cannot be used with --unfreeze")

    @property
    def unfreeze_stages(self) -> int | str:
        """``--unfreeze`` as a number of stages or ``"all"``."""
        value = str(self.unfreeze).strip().lower()
        if value == "all":
            return "all"
        try:
            n = int(value)
        except ValueError:
            raise UserError(f"--unfreeze {self.unfreeze}: give a number of stages or 'all'") from None
        if n < 0:
            raise UserError(f"--unfreeze {self.unfreeze}: must be >= 0")
        return n

    def training_dict(self) -> dict[str, Any]:
        """The options that decide the result (stored in config.json, compared on --resume)."""
        return {k: v for k, v in asdict(self).items() if k not in RUNTIME_ONLY}


# --------------------------------------------------------------------------- checks


def check_runnable(cfg: FinetuneConfig) -> None:
    """What this machine must have for ``cfg``: a pose-based model or ``--crop pose`` needs MediaPipe
    BlazePose (said in one line, with the CNN-only way out)."""
    from posture.models import extractor_parts

    parts = extractor_parts(cfg.model)
    if parts.pose or cfg.crop == "pose":
        from posture.pose.detector import pose_available

        if not pose_available():
            what = f"the default model '{cfg.model}'" if cfg.model == DEFAULT_MODEL else f"--model {cfg.model}"
            if not parts.pose:
                what = "--crop pose (a CNN's default: the head-and-shoulders crop)"
            way_out = f"--model {cfg.model if not parts.pose else CNN_ONLY_MODEL} --crop none"
            raise UserError(
                f"{what} needs MediaPipe BlazePose (body landmarks), which is not installed: "
                f"`{INSTALL_HINT}`; meanwhile a CNN works on the whole photo: {way_out}"
            )


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
    check_writable_output(out, f"--out {cfg.out}")  # before training, not at its end
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
        raise UserError(
            f"{out} already holds {what}; pass --overwrite to replace it"
            + (" or --resume to continue it" if interrupted else "")
        )
    return False


def _load_splits(cfg: FinetuneConfig) -> tuple[Path, list[str], dict[str, pd.DataFrame]]:
    root = Path(cfg.data)
    full = open_dataset(root)
    frame = full.frame
    classes = full.class_names if (root / MANIFEST_NAME).is_file() else read_class_names(root, frame)
    if cfg.val_group != "none":
        frame = regroup_validation(frame, cfg.val_group, seed=cfg.seed)
    splits = {s: frame[frame["split"] == s].reset_index(drop=True) for s in SPLITS}
    for s in ("train", "val"):
        if splits[s].empty:
            raise UserError(
                f"{root}: the {s} split is empty; training needs train and val images "
                "(re-run `python -m posture.ingest` with a split, or check the manifest's split column)"
            )
    _check_classes(root, splits["train"], classes)
    if splits["test"].empty:
        log.warning("%s: the test split is empty; metrics.json will have no test scores", root)
    return root, classes, splits


def _check_classes(root: Path, train: pd.DataFrame, classes: list[str]) -> None:
    present = sorted(set(train["label"]))
    if len(classes) < 2 or len(present) < 2:
        raise UserError(
            f"{root}: the training split has only one class ({', '.join(present) or 'none'}); "
            "a classifier needs examples of at least two"
        )


def _build(cfg: FinetuneConfig, classes: list[str]) -> tuple[Any, str]:
    """The zoo model with a fresh head and its preprocessing as configured; (model, weights fingerprint)."""
    from posture import models as zoo

    pretrained: bool | str = True if cfg.weights is None else cfg.weights
    torch.manual_seed(cfg.seed)
    assert cfg.head_hidden is not None and cfg.head_dropout is not None  # filled in by __post_init__
    head_spec = zoo.HeadSpec(hidden=cfg.head_hidden, dropout=cfg.head_dropout)
    features = [f.strip() for f in cfg.pose_features.split(",") if f.strip()] if cfg.pose_features else None
    model = zoo.build_model(cfg.model, len(classes), pretrained=pretrained, head=head_spec, pose_features=features)
    pre = model.preprocessing
    if cfg.image_size is not None:
        pre = replace(pre, input_size=int(cfg.image_size))
    if cfg.crop is not None and cfg.crop != "none":
        pre = replace(pre, crop=cfg.crop, crop_scale=float(cfg.crop_scale))
    model.preprocessing = pre
    model.freeze_backbone()
    return model, zoo.weights_fingerprint(cfg.model, pretrained)


@dataclass
class Prepared:
    """Step 1's result: the head's (standardised) inputs per split and what extraction left out.

    ``splits["train"]`` holds ``--extra-data``'s photos after the dataset's own (column ``extra`` True)."""

    splits: dict[str, pd.DataFrame]
    targets: dict[str, torch.Tensor]
    train_x: torch.Tensor  # [N, V+1, F]
    val_x: torch.Tensor  # [N, F]
    test_x: torch.Tensor  # [N, F]
    skipped: list[dict[str, str]]
    not_assessed: list[dict[str, str]]
    extraction: dict[str, Any]
    seconds: float
    #: The view of each kept training photo (pose-based runs): which views the model has seen.
    train_views: list[str | None] | None = None


def _feature_extractor(
    cfg: FinetuneConfig, model: Any, fingerprint: str, dist_info: distributed.DistInfo, device: torch.device
) -> tuple[FeatureSpec, Callable[..., Any]]:
    """The run's feature spec (cache key) and :func:`extract_run_features` bound to its options."""
    spec = FeatureSpec(
        arch=cfg.model,
        weights_fingerprint=fingerprint,
        preprocessing=model.preprocessing,
        aug_views=cfg.aug_views,
        aug_seed=cfg.seed,
        aug_strength=cfg.aug_strength,
        aug_view3d=cfg.aug_view3d,
    )
    cache = None if cfg.no_cache else FeatureCache(cfg.cache_dir or default_cache_dir())
    options = ExtractOptions(
        cache=cache,
        backend=cfg.extract_backend,
        batch_size=cfg.extract_batch_size,
        workers=cfg.workers,
        device=device,
        rank=dist_info.rank,
        world_size=dist_info.world_size,
        progress=cfg.progress,
    )
    return spec, partial(extract_run_features, options=options)


def _not_assessed(
    feats: dict[str, Any], train: pd.DataFrame, eval_frame: pd.DataFrame, n_val: int
) -> list[dict[str, str]]:
    """The photos a pose-based run left out, with their split and reason (for metrics.json)."""
    rows = [
        {"path": str(train["path"].iloc[i]), "split": "train", "reason": r}
        for i, r in sorted(feats["train"].not_assessed.items())
    ] + [
        {"path": str(eval_frame["path"].iloc[i]), "split": "val" if i < n_val else "test", "reason": r}
        for i, r in sorted(feats["eval"].not_assessed.items())
    ]
    if rows:
        log.warning(
            "%d photo(s) cannot be assessed (no person, or head and shoulders not visible) and are left "
            "out; see metrics.json 'not_assessed'",
            len(rows),
        )
    return rows


def _prepare_features(
    cfg: FinetuneConfig,
    model: Any,
    fingerprint: str,
    root: Path,
    classes: list[str],
    splits: dict[str, pd.DataFrame],
    dist_info: distributed.DistInfo,
    device: torch.device,
) -> Prepared:
    """Step 1: every photo's features (cached), unreadable and unassessable photos dropped, and, for
    pose-based runs, the input standardised with statistics of the training split (stored in the run)."""
    t0 = time.perf_counter()
    spec, extract = _feature_extractor(cfg, model, fingerprint, dist_info, device)
    eval_frame = pd.concat([splits["val"], splits["test"]], ignore_index=True)
    feats = {
        "train": extract(model, root, splits["train"], spec),
        "eval": extract(model, root, eval_frame, replace(spec, aug_views=0)),
    }
    if cfg.extra_data:
        extra_root, extra_frame = _extra_training(cfg, classes)
        feats["train"] = _joined(feats["train"], extract(model, extra_root, extra_frame, spec))
        splits = {**splits, "train": pd.concat([splits["train"].assign(extra=False), extra_frame], ignore_index=True)}
    n_val = len(splits["val"])
    ok = {"train": feats["train"].ok, "val": feats["eval"].ok[:n_val], "test": feats["eval"].ok[n_val:]}
    skipped = feats["train"].stats.failed + feats["eval"].stats.failed
    if skipped:
        log.warning("skipped %d unreadable image(s); see metrics.json 'skipped_images'", len(skipped))
    not_assessed = _not_assessed(feats, splits["train"], eval_frame, n_val)
    kept = {s: splits[s][ok[s].numpy()].reset_index(drop=True) for s in SPLITS}
    for s in ("train", "val"):
        if kept[s].empty:
            raise UserError(
                f"{root}: no readable{' and assessable' if model.uses_pose else ''} images left in the {s} split"
            )
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
    views = feats["train"].views
    train_views = [v for v, keep in zip(views, ok["train"].tolist(), strict=True) if keep] if views else None
    return Prepared(
        kept, targets, train_x, val_x, test_x, skipped, not_assessed, extraction, time.perf_counter() - t0, train_views
    )


def _extra_training(cfg: FinetuneConfig, classes: list[str]) -> tuple[Path, pd.DataFrame]:
    """``--extra-data``'s every photo, as training rows of their own (column ``extra`` True); its classes
    must be among the dataset's."""
    assert cfg.extra_data is not None
    root = Path(cfg.extra_data)
    if root.resolve() == Path(cfg.data).resolve():
        raise UserError(f"--extra-data {root}: is --data itself; give another dataset")
    frame = open_dataset(root).frame.reset_index(drop=True)
    unknown = sorted(set(frame["label"]) - set(classes))
    if unknown:
        raise UserError(
            f"--extra-data {root}: its class(es) {', '.join(unknown)} are not among the dataset's "
            f"({', '.join(classes)})"
        )
    return root, frame.assign(split="train", extra=True)


def _joined(first: Any, second: Any) -> Any:
    """Two :class:`~posture.models.features.FeatureSet` one after the other (row indices of the second shift)."""
    from posture.models.features import FeatureSet

    offset = len(first.ok)
    return FeatureSet(
        features=torch.cat([first.features, second.features]),
        ok=torch.cat([first.ok, second.ok]),
        stats=first.stats,
        not_assessed={**first.not_assessed, **{i + offset: r for i, r in second.not_assessed.items()}},
        landmarks=first.landmarks,
        views=(first.views + second.views) if first.views is not None and second.views is not None else None,
    )


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
    sessions = (
        frame[session_column].astype(str).to_numpy()
        if session_column in frame.columns
        else np.zeros(len(frame), dtype=str)
    )
    means = [geometry[upright & (sessions == s)].mean(axis=0) for s in np.unique(sessions[upright])]
    return [float(v) for v in np.mean(means, axis=0)]


#: A photo whose geometry lies further than this share of the training spread beyond the training
#: photos' range (their 0.5-99.5 % quantiles) is outside what the run knows: the Predictor says
#: "cannot assess" rather than extrapolate a head fitted elsewhere.
RANGE_MARGIN = 0.25
RANGE_QUANTILES = (0.005, 0.995)


def training_coverage(model: Any, data: Prepared) -> dict[str, Any] | None:
    """What the run has seen (``config.json`` ``pose.coverage``): each geometry feature's range over the
    training photos (clean views), widened by :data:`RANGE_MARGIN`, and how many photos of each view."""
    if not model.uses_pose or not len(data.train_x):
        return None
    n_pose = len(model.pose_features)
    with torch.no_grad():
        raw = (data.train_x[:, 0] * model.norm.std + model.norm.mean)[:, -n_pose:].double().numpy()
    low, high = np.quantile(raw, RANGE_QUANTILES, axis=0)
    pad = RANGE_MARGIN * (high - low)
    views = pd.Series([v for v in (data.train_views or []) if v is not None], dtype=str).value_counts()
    return {
        "range": {n: [float(a), float(b)] for n, a, b in zip(model.pose_features, low - pad, high + pad, strict=True)},
        "views": {str(k): int(v) for k, v in views.items()},
        "margin": RANGE_MARGIN,
        "quantiles": list(RANGE_QUANTILES),
    }


# --------------------------------------------------------------------------- the run


def run_finetune(cfg: FinetuneConfig, *, after_epoch: EpochHook | None = None) -> dict[str, Any]:
    """Train a run as described in the module docstring; returns the metrics (as in metrics.json).

    ``after_epoch`` is called with the global epoch number once that epoch's resume state is saved
    (the crash-and-resume tests raise there).
    """
    t_start = time.perf_counter()
    check_runnable(cfg)
    dist_info = distributed.detect()
    device = distributed.init(dist_info, resolve_device(cfg.device))
    if dist_info.enabled and device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // dist_info.world_size))
    try:
        if dist_info.is_main:  # before the checks: a half-swapped run is put back (posture.io.fileio)
            remove_stale_staging(cfg.out)
        distributed.barrier(dist_info)
        do_resume = _check_out(cfg)
        root, classes, splits = _load_splits(cfg)
        state = _resume_state(cfg) if do_resume else None
        model, fingerprint = _build(cfg, classes)
        data = _prepare_features(cfg, model, fingerprint, root, classes, splits, dist_info, device)
        t1 = time.perf_counter()
        session = _Session.start(cfg, model, classes, dist_info, device, state, after_epoch)
        _train_head(session, data)
        if cfg.unfreeze_stages != 0 and cfg.unfreeze_epochs > 0:
            _train_unfrozen(session, root, data)
        train_s = time.perf_counter() - t1
        metrics = _final_metrics(cfg, model, root, data, classes, session.stopper, session.history, device)
        upright = _upright_reference(model, data, classes, cfg.session_column)
        coverage = training_coverage(model, data)
        return _finish(
            cfg,
            model,
            classes,
            fingerprint,
            metrics,
            session.history,
            dist_info,
            upright,
            timing={"extract_s": data.seconds, "train_s": train_s, "total_s": time.perf_counter() - t_start},
            coverage=coverage,
        )
    finally:
        if dist_info.enabled:
            distributed.shutdown(dist_info)


def _resume_state(cfg: FinetuneConfig) -> dict[str, Any]:
    """The interrupted run's state; it must have been trained with the same result-deciding options."""
    state = resume.load_state(Path(cfg.out))
    if state["meta"].get("training") != _jsonify(cfg.training_dict()):
        raise UserError(
            f"{cfg.out}: the interrupted run used different options; resume with the same options "
            "or pass --overwrite to start again"
        )
    return state


@dataclass
class _Session:
    """What the phases of one run share: its options and model, where it runs, the resume state it
    continues (``None`` for a fresh run), the epoch history and the early-stopping bookkeeping."""

    cfg: FinetuneConfig
    model: Any
    classes: list[str]
    dist: distributed.DistInfo
    device: torch.device
    state: dict[str, Any] | None
    history: list[dict[str, Any]]
    stopper: EarlyStopping
    after_epoch: EpochHook | None = None

    @classmethod
    def start(
        cls,
        cfg: FinetuneConfig,
        model: Any,
        classes: list[str],
        dist: distributed.DistInfo,
        device: torch.device,
        state: dict[str, Any] | None,
        after_epoch: EpochHook | None,
    ) -> _Session:
        meta = state["meta"] if state else {}
        stopper = EarlyStopping.from_dict(meta["stopper"]) if state else EarlyStopping(patience=cfg.patience)
        return cls(cfg, model, classes, dist, device, state, list(meta.get("history", [])), stopper, after_epoch)

    @property
    def resumed_phase(self) -> str | None:
        """The phase the interrupted run was in (``None``: a fresh run)."""
        return self.state["meta"].get("phase", "head") if self.state is not None else None

    def spec(self, optim: OptimSpec, epochs: int) -> PhaseSpec:
        cfg = self.cfg
        return PhaseSpec(
            optim=optim,
            epochs=epochs,
            batch_size=cfg.batch_size,
            seed=cfg.seed,
            workers=cfg.workers,
            device=self.device,
            dist=self.dist,
        )

    def resume_into(self, phase: Phase) -> int:
        """Restore ``phase`` from the interrupted run; the number of its epochs already done."""
        assert self.state is not None
        phase.restore(self.state)
        start = int(self.state["meta"]["epoch"])
        log.info("resuming %s after %s epoch %d", self.cfg.out, phase.name, start)
        return start

    def train(
        self, phase: Phase, epochs: int, start: int, best: dict[str, torch.Tensor], offset: int = 0
    ) -> dict[str, torch.Tensor]:
        """Run ``phase`` from epoch ``start``, saving the resume state after every epoch."""
        run = PhaseRun(
            epochs=epochs, start_epoch=start, epoch_offset=offset, history=self.history, after_epoch=self.after_epoch
        )
        return run_phase(phase, run, self.stopper, best, self._saver(phase), progress=self.cfg.progress)

    def _saver(self, phase: Phase) -> Callable[[int, dict[str, torch.Tensor]], None]:
        def save(epoch: int, best: dict[str, torch.Tensor]) -> None:
            if self.dist.is_main:
                resume.save_state(
                    Path(self.cfg.out),
                    model=phase.state(),
                    best=best,
                    optimizer=phase.optimizer.state_dict(),
                    scheduler=phase.scheduler.state_dict(),
                    meta={
                        "phase": phase.name,
                        "epoch": epoch,
                        "stopper": self.stopper.to_dict(),
                        "history": self.history,
                        "training": _jsonify(self.cfg.training_dict()),
                    },
                )
            distributed.barrier(self.dist)

        return save


def _train_head(session: _Session, data: Prepared) -> None:
    """Step 2: the head on cached features (skipped when resuming into the unfreeze phase)."""
    if session.resumed_phase not in (None, "head"):
        return
    cfg, n_classes = session.cfg, len(session.classes)
    weights = training_weights(data.splits["train"], data.targets["train"], cfg, n_classes)
    phase = HeadPhase(
        session.model,
        session.spec(_optim_spec(cfg), cfg.epochs),
        train_x=data.train_x,
        train_y=data.targets["train"],
        val_x=data.val_x,
        val_y=data.targets["val"],
        num_classes=n_classes,
        sample_weight=weights,
    )
    best: dict[str, torch.Tensor] = phase.state()
    start = 0
    if session.state is not None:
        start = session.resume_into(phase)
        if session.state["rng"] is not None:
            torch.set_rng_state(session.state["rng"])
        best = session.state["best"] or best
    with torch_threads(1 if session.device.type == "cpu" else None):
        best = session.train(phase, cfg.epochs, start, best)
    phase.load(best)


def training_weights(
    train: pd.DataFrame, targets: torch.Tensor, cfg: FinetuneConfig, n_classes: int
) -> torch.Tensor | None:
    """Per-photo loss weights for ``--balance`` and ``--extra-data`` (None: the loss's class weights do).

    The dataset's own photos are weighed by ``--balance``; ``--extra-data``'s photos, balanced by class,
    together weigh ``--extra-weight`` times as much as the dataset's own."""
    column = {"session": cfg.session_column, "person": PERSON_COLUMN}.get(cfg.balance)
    extra = train["extra"].fillna(False).astype(bool).to_numpy() if "extra" in train.columns else None
    if column is None or column not in train.columns:
        if extra is None or not extra.any():
            return None
        groups = ["all"] * len(train)
    else:
        groups = train[column].astype(str).tolist()
    if extra is None or not extra.any():
        return group_class_weights(targets, groups, n_classes)
    own = torch.from_numpy(~extra)
    weights = torch.zeros(len(train))
    own_groups = [g for g, e in zip(groups, extra, strict=True) if not e]
    weights[own] = group_class_weights(targets[own], own_groups, n_classes)
    weights[~own] = group_class_weights(targets[~own], ["extra"] * int(extra.sum()), n_classes)
    weights[~own] *= float(cfg.extra_weight) * float(own.sum()) / float((~own).sum())
    return weights * len(weights) / weights.sum()


def _train_unfrozen(session: _Session, root: Path, data: Prepared) -> None:
    """Step 3 (optional): the last backbone stages and the head on images, discriminative LRs."""
    cfg, model, classes = session.cfg, session.model, session.classes
    train_ds = ManifestDataset(root, None, None, classes, frame=data.splits["train"])
    val_ds = ManifestDataset(root, None, build_eval_transform(model.preprocessing), classes, frame=data.splits["val"])
    phase = ImagePhase(
        model,
        session.spec(_optim_spec(cfg, cfg.unfreeze_lr), cfg.unfreeze_epochs),
        train_ds=train_ds,
        val_ds=val_ds,
        num_classes=len(classes),
        unfreeze=cfg.unfreeze_stages,
        lr_decay=cfg.lr_decay,
        aug_strength=cfg.aug_strength,
    )
    best = copy_state(model.state_dict())
    start = 0
    if session.resumed_phase == "unfreeze":
        assert session.state is not None
        start = session.resume_into(phase)
        best = session.state["best"]
    else:
        session.stopper.reset_patience()
    head_epochs = max((r["epoch"] for r in session.history if r["phase"] == "head"), default=0)
    model.load_state_dict(session.train(phase, cfg.unfreeze_epochs, start, best, offset=head_epochs))


def _final_metrics(
    cfg: FinetuneConfig,
    model: Any,
    root: Path,
    data: Prepared,
    classes: list[str],
    stopper: EarlyStopping,
    history: list[dict[str, Any]],
    device: torch.device,
) -> dict[str, Any]:
    """Step 4: val and test scores of the kept state, and what extraction left out."""
    if stopper.best_phase == "unfreeze":
        model.eval()
        transform = build_eval_transform(model.preprocessing)
        logits = {
            s: predict_images(
                model,
                ManifestDataset(root, None, transform, classes, frame=data.splits[s]),
                cfg.batch_size,
                cfg.workers,
                device,
            )
            for s in ("val", "test")
        }
    else:
        model.head.eval()
        with torch.inference_mode():
            head = model.head.cpu()
            logits = {"val": head(data.val_x).float()}
            if len(data.test_x):
                logits["test"] = head(data.test_x).float()
    n_photos = sum(len(f) for f in data.splits.values()) + len(data.not_assessed)
    return {
        "classes": classes,
        "best_epoch": stopper.best_epoch,
        "best_phase": stopper.best_phase,
        "epochs_run": len(history),
        "stopped_early": stopper.should_stop,
        "val": logit_metrics(logits["val"], data.targets["val"], classes),
        "test": (
            logit_metrics(logits["test"], data.targets["test"], classes)
            if "test" in logits and len(data.targets["test"])
            else None
        ),
        "skipped_images": data.skipped,
        "not_assessed": data.not_assessed,
        "coverage": (n_photos - len(data.not_assessed)) / n_photos if n_photos else None,
        "extraction": data.extraction,
    }


def _extraction_summary(train: Any, evaluation: Any) -> dict[str, Any]:
    backends = sorted({st.backend for st in (train, evaluation) if st.backend != "none"})
    diffs = [st.parity_max_abs_diff for st in (train, evaluation) if st.parity_max_abs_diff is not None]
    return {
        "computed": train.computed + evaluation.computed,
        "from_cache": train.from_cache + evaluation.from_cache,
        "backend": "+".join(backends) or "cache",
        "parity_max_abs_diff": max(diffs) if diffs else None,
        "seconds": round(train.seconds + evaluation.seconds, 3),
    }


def _jsonify(d: dict[str, Any]) -> dict[str, Any]:
    """Round-trip through JSON so a fresh config compares equal to one read back from disk."""
    import json

    return json.loads(json.dumps(d))


def run_config(
    cfg: FinetuneConfig,
    model: Any,
    classes: list[str],
    fingerprint: str,
    upright: list[float] | None = None,
    world_size: int = 1,
    coverage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The run's ``config.json``: what it is, what it reads, how it was trained."""
    from posture.models import extractor_parts
    from posture.pose.geometry import GEOMETRY_VERSION, describe

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
        from posture.pose.detector import detector_version

        config["pose"] = {
            "features": describe(model.pose_features),
            "geometry_version": GEOMETRY_VERSION,
            "landmarks": detector_version(),
            "upright_reference": upright,
            "reference_class": UPRIGHT_CLASS,
            "coverage": coverage,
        }
    config["defaults"] = defaults_record(cfg)
    return config


def defaults_record(cfg: FinetuneConfig) -> dict[str, Any]:
    """How the defaults this run rests on were chosen (:data:`posture.training.chosen_defaults.DEFAULTS_CHOSEN`: the
    procedure, the data, the pick and its nested score) and which of them this run changed."""
    plain = FinetuneConfig(data=cfg.data, out=cfg.out).training_dict()
    same_model = FinetuneConfig(data=cfg.data, out=cfg.out, model=cfg.model).training_dict()  # its head defaults
    changed = sorted(
        k
        for k, v in cfg.training_dict().items()
        if k not in ("data", "out") and v != (plain if k == "model" else same_model).get(k)
    )
    return {**DEFAULTS_CHOSEN, "changed": changed}


def _finish(
    cfg: FinetuneConfig,
    model: torch.nn.Module,
    classes: list[str],
    fingerprint: str,
    metrics: dict[str, Any],
    history: list[dict[str, Any]],
    dist_info: distributed.DistInfo,
    upright: list[float] | None,
    timing: dict[str, float],
    coverage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Rank 0 writes the run into a staging folder and renames it over ``--out`` in one step."""
    metrics["timing"] = {k: round(v, 3) for k, v in timing.items()}
    if dist_info.is_main:
        config = run_config(cfg, model, classes, fingerprint, upright, dist_info.world_size, coverage)
        config["trained_on"] = training_record(
            cfg.data, cfg.val_group, cfg.seed, metrics
        )  # posture.evaluation.provenance
        frame = history_frame(history)
        with staged_folder(cfg.out) as staging:
            save_checkpoint(staging, model.state_dict(), config, metrics=metrics, history=frame)
            plot_training_curve(frame, staging / CURVE_NAME, metrics.get("best_epoch"))
        log.info("wrote %s", cfg.out)
    distributed.barrier(dist_info)
    return metrics


# --------------------------------------------------------------------------- CLI

EPILOG = f"""\
examples:
  python -m posture.finetune --data data/sample --out models/sample            # pose geometry
  python -m posture.finetune --data data/sample --model efficientnet_lite0+pose --out models/fused
  python -m posture.finetune --data data/sample --model efficientnet_lite0 --out models/cnn
  python -m posture.finetune --data data/sample --model resnet18 --weights none --out models/r18
distributed: torchrun --nproc_per_node=2 -m posture.finetune --data ... --out ...
The pose models need MediaPipe BlazePose: {INSTALL_HINT}
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m posture.finetune",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a posture classifier by transfer learning: a frozen feature extractor of the zoo "
        "(posture geometry from BlazePose body landmarks by default, or a CNN, or both fused) turns "
        "every photo into a vector once (cached), then a head trains on the vectors in seconds "
        "(optionally followed by unfreezing a CNN's last stages on images).",
    )
    add_options(parser, FinetuneConfig)
    add_logging_flags(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    metrics = run_finetune(config_from_args(FinetuneConfig, args))
    if distributed.detect().is_main:
        print(format_summary(args.out, metrics))
    return 0


def format_summary(out: str, metrics: dict[str, Any]) -> str:
    def row(name: str, m: dict[str, Any] | None) -> str:
        if not m:
            return f"  {name:<5} (no images)"
        return f"  {name:<5} n={m['n']:<5} accuracy {m['accuracy']:.3f}  balanced accuracy {m['balanced_accuracy']:.3f}"

    return "\n".join(
        [
            f"run: {out}  (best epoch {metrics['best_epoch']}, {metrics['best_phase']})",
            row("val", metrics["val"]),
            row("test", metrics["test"]),
        ]
    )


if __name__ == "__main__":
    raise SystemExit(run_main(main))
