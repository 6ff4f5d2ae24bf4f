"""Accuracy on the real photos, with splits that never put one person (or one capture session) on both sides.

Why this benchmark exists: the 93 real photos in ``../shared/data/real`` come from 3 sources (capture
sessions) and 11 people, 2 of whom account for 77 near-identical video frames. A random split of
files would score the identity, not the posture. So two protocols, both grouped:

* **leave-one-source-out** (LOSO, 3 folds): train on two sources, test on the third, i.e. on "a capture
  session it never saw" (different room, camera, viewpoint, labeller);
* **subject-grouped CV**: ``StratifiedGroupKFold`` by ``subject`` (5 folds over 11 people).

Each fold is written as a dataset folder (``manifest.csv`` with a ``split`` column; ``images/`` is a
symlink to the ingested copy). The validation split, needed by ``posture.finetune`` for early
stopping, comes from the training sources only: whole people where a source has many, and blocks of
consecutive frames of each clip where a source is one person (those frames stay correlated with
training, so val scores are optimistic; the test split never shares a person or session with training).

Compared on the same folds:

* **baseline**: a plain ``sklearn`` ``LogisticRegression`` on frozen genuine EfficientNet-Lite0 features
  (eval transform), trained on the fold's train+val images;
* **product**: ``posture.finetune.run_finetune`` with one lever changed at a time (augmentation views,
  MLP head, unfreezing, image size, a head pre-trained on ``posture.synth`` front views, the
  head-and-shoulders crop ``--crop pose``). The calibrated pose model has its own bench on the same
  folds, ``bench/pose_calibration.py``.

Reported per fold and pooled (every image is tested exactly once per protocol): balanced accuracy,
accuracy, confusion-matrix counts (sklearn, rows = truth, class order as in ``classes``) and per
source. Writes ``bench/results/real_photos.json|md``; fold folders, runs and the feature cache stay
under ``--work``.

    python bench/real_photos.py                     # default grid (~13 min on 2 busy cores)
    python bench/real_photos.py --configs default,unfreeze1,unfreeze2 --protocols loso   # opt-in unfreezing
    python bench/real_photos.py --configs default,aug0 --protocols loso
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, repo_root_on_path, write_results

repo_root_on_path()
from posture.cli import UserError

log = logging.getLogger("bench.real_photos")
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REAL = Path("..") / "shared" / "data" / "real"
MODEL = "efficientnet_lite0"
POSITIVE = "forward_head"


# --------------------------------------------------------------------------- configurations


@dataclass(frozen=True)
class Variant:
    """One product configuration: FinetuneConfig overrides relative to the product defaults."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    synth_init: bool = False   # start the head from a run trained on posture.synth front views
    protocols: tuple[str, ...] = ("loso", "cv")  # unfreezing trains on images: too slow for every CV fold
    standardize: bool = False  # bench-only emulation of a proposed product change (see standardized_head)

    @property
    def crop(self) -> str:
        return str(self.overrides.get("crop", "none"))


#: The fixed reference every lever is changed from, one at a time. Pinned (rather than "whatever
#: FinetuneConfig defaults to today") because the product's defaults move; `default` tracks them.
BASE: dict[str, Any] = {"aug_views": 2, "head_hidden": 0, "head_dropout": 0.0, "patience": 10, "epochs": 60}

VARIANTS: dict[str, Variant] = {v.name: v for v in [
    Variant("default", {}, "the product's current FinetuneConfig defaults (see product_defaults in the JSON)"),
    Variant("base", dict(BASE), "reference: 2 aug views, linear head, 224 px, head only, patience 10"),
    Variant("aug0", {**BASE, "aug_views": 0}, "base with no augmented views"),
    Variant("aug4", {**BASE, "aug_views": 4}, "base with 4 augmented views"),
    Variant("mlp", {**BASE, "head_hidden": 256, "head_dropout": 0.3}, "base with an MLP head 256, dropout 0.3"),
    Variant("unfreeze1", {**BASE, "unfreeze": "1", "unfreeze_epochs": 3},
            "base, then last stage unfrozen, 3 epochs (LOSO only)", protocols=("loso",)),
    Variant("unfreeze2", {**BASE, "unfreeze": "2", "unfreeze_epochs": 3},
            "base, then last 2 stages unfrozen, 3 epochs (LOSO only)", protocols=("loso",)),
    Variant("size288", {**BASE, "image_size": 288}, "base at input 288 px instead of 224"),
    Variant("synth_head", dict(BASE), "base with the head initialised from a synth front-view run", synth_init=True),
    Variant("lr_long", {**BASE, "lr": 1e-2, "epochs": 200, "patience": 40}, "base with head LR 1e-2, up to 200 epochs"),
    Variant("std_head", dict(BASE), "NOT a product option: the product's head training (HeadPhase, base options) on "
            "features standardised with the training split's mean/std, emulated in this bench", standardize=True),
    Variant("crop", {**BASE, "crop": "pose"}, "base with --crop pose (head and shoulders found by BlazePose)"),
    Variant("crop_aug0", {**BASE, "crop": "pose", "aug_views": 0}, "crop with no augmented views"),
    Variant("crop_mlp", {**BASE, "crop": "pose", "head_hidden": 256, "head_dropout": 0.3},
            "crop with an MLP head 256, dropout 0.3"),
    Variant("crop_default", {"crop": "pose"}, "the product's defaults with --crop pose"),
    Variant("crop_std", {**BASE, "crop": "pose"}, "std_head on cropped photos (bench emulation, see std_head)",
            standardize=True),
]}
#: Variants that need MediaPipe (``--crop pose``); left out of the default grid when it is missing.
CROP_VARIANTS = [name for name, v in VARIANTS.items() if v.crop != "none"]
#: Unfreezing is opt-in (--configs ...,unfreeze1,unfreeze2): it trains on images, ~2.5 min per fold on 2 busy
#: cores (13 of the 26 min the full grid took); on these folds unfreeze1 changed no test prediction and
#: unfreeze2 only made the postural fold worse.
DEFAULT_VARIANTS = [name for name in VARIANTS if not name.startswith("unfreeze")]


@dataclass
class BenchConfig:
    real: Path
    work: Path
    variants: list[str]
    protocols: list[str]
    cv_folds: int = 5
    seed: int = 0
    near_dup_threshold: int = -1
    synth_n: int = 240
    threads: int = 2


# --------------------------------------------------------------------------- data


def ingest(real: Path, out: Path, near_dup_threshold: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The product's ingest, with subject and source taken from the folder's own manifest."""
    cmd = [sys.executable, "-m", "posture.ingest", str(real), "--out", str(out), "--labels",
           str(real / "manifest.csv"), "--near-dup-threshold", str(near_dup_threshold),
           "--no-progress", "-q", "--overwrite"]
    proc = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"ingest failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    frame = pd.read_csv(out / "manifest.csv")
    summary = pd.read_json(out / "summary.json", typ="series")
    counts = dict(summary["counts"])
    info = {"command": " ".join(cmd[1:]).replace(str(real), "REAL").replace(str(out), "TMP"),
            "near_dup_threshold": near_dup_threshold, "kept": len(frame), "counts": counts,
            "kept_by_source_label": {f"{s}/{lbl}": int(n) for (s, lbl), n in
                                     frame.groupby(["source", "label"]).size().items()}}
    return frame, info


def inner_groups(frame: pd.DataFrame, blocks: int = 5) -> pd.Series:
    """Groups for carving val out of a training pool.

    A person with few photos is one group. A person with many (a video of one person) is split
    into ``blocks`` runs of consecutive frames per clip, so val holds frames from other moments
    of the same clip rather than the neighbours of training frames.
    """
    stems = frame["source_path"].astype(str).map(lambda p: Path(p).stem)
    clip = frame["subject"].astype(str) + "|" + stems.map(lambda s: re.sub(r"\d+$", "", s))
    sizes = frame.groupby("subject")["path"].transform("size")
    order = stems.groupby(clip).rank(method="first") - 1
    clip_len = clip.map(clip.value_counts())
    block = (order * blocks // clip_len).astype(int).astype(str)
    return pd.Series(np.where(sizes >= 10, clip + "|" + block, frame["subject"].astype(str)), index=frame.index)


def pick_val(pool: pd.DataFrame, seed: int, share: int = 5) -> np.ndarray:
    """Boolean mask over ``pool``: about 1/share of it, grouped and stratified by label."""
    from sklearn.model_selection import StratifiedGroupKFold

    groups = inner_groups(pool)
    n_splits = max(2, min(share, groups.nunique()))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    _, val_idx = next(splitter.split(pool, pool["label"], groups))
    mask = np.zeros(len(pool), bool)
    mask[val_idx] = True
    return mask


def make_folds(frame: pd.DataFrame, protocol: str, cv_folds: int, seed: int) -> list[dict[str, Any]]:
    """``[{name, test_mask}]``; every row is in exactly one fold's test set."""
    if protocol == "loso":
        return [{"name": f"test={s}", "test": (frame["source"] == s).to_numpy()}
                for s in sorted(frame["source"].unique())]
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=cv_folds, shuffle=True, random_state=seed)
    folds = []
    for k, (_, test_idx) in enumerate(splitter.split(frame, frame["label"], frame["subject"])):
        mask = np.zeros(len(frame), bool)
        mask[test_idx] = True
        folds.append({"name": f"cv{k}", "test": mask})
    return folds


def write_fold(frame: pd.DataFrame, ingested: Path, fold_dir: Path, test: np.ndarray, seed: int) -> pd.DataFrame:
    """A dataset folder for one fold: manifest with train/val/test, images linked to the ingested copy."""
    fold = frame.copy()
    pool = fold[~test]
    val = pick_val(pool, seed)
    fold["split"] = "test"
    fold.loc[pool.index[val], "split"] = "val"
    fold.loc[pool.index[~val], "split"] = "train"
    if fold_dir.exists():
        shutil.rmtree(fold_dir)
    fold_dir.mkdir(parents=True)
    (fold_dir / "images").symlink_to((ingested / "images").resolve(), target_is_directory=True)
    shutil.copy(ingested / "classes.json", fold_dir / "classes.json")
    fold.to_csv(fold_dir / "manifest.csv", index=False)
    return fold


# --------------------------------------------------------------------------- features and baseline


def eval_features(root: Path, frame: pd.DataFrame, classes: list[str], image_size: int | None = None,
                  weights: bool | str = True, crop: str = "none") -> torch.Tensor:
    """Frozen-backbone features of every row through the product's eval transform."""
    from dataclasses import replace

    from posture import models as zoo
    from posture.data import ManifestDataset
    from posture.transforms import build_eval_transform

    model = zoo.build_model(MODEL, len(classes), pretrained=weights)
    pre = model.preprocessing if image_size is None else replace(model.preprocessing, input_size=image_size)
    pre = replace(pre, crop=crop)
    data = ManifestDataset(root, None, build_eval_transform(pre), classes, frame=frame)
    loader = torch.utils.data.DataLoader(data, batch_size=32, shuffle=False, num_workers=0)
    model.backbone.eval()
    with torch.inference_mode():
        return torch.cat([model.backbone(x) for x, _ in loader]).float()


def baseline_predict(feats: np.ndarray, y: np.ndarray, train: np.ndarray, seed: int,
                     scaled: bool = False) -> np.ndarray:
    """The issue's plain baseline: sklearn defaults, no class weights (``scaled``: StandardScaler first)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = LogisticRegression(max_iter=5000, random_state=seed)
    if scaled:
        clf = make_pipeline(StandardScaler(), clf)
    clf.fit(feats[train], y[train])
    return clf.predict(feats)


# --------------------------------------------------------------------------- product


def train_synth_run(cfg: BenchConfig, cache: Path) -> Path:
    """A head trained on posture.synth front views (frozen backbone), to initialise real-photo heads."""
    from posture.finetune import FinetuneConfig, run_finetune

    run = cfg.work / "synth_run_base"
    if (run / "model.safetensors").is_file():
        return run
    drop, data = cfg.work / "synth_drop", cfg.work / "synth_data"
    for cmd in ([sys.executable, "-m", "posture.synth", str(drop), "--view", "front", "--n", str(cfg.synth_n),
                 "--seed", str(cfg.seed), "--overwrite", "-q"],
                [sys.executable, "-m", "posture.ingest", str(drop), "--out", str(data), "--no-progress", "-q",
                 "--overwrite"]):
        proc = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            raise UserError(f"{' '.join(cmd[1:3])} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    run_finetune(FinetuneConfig(data=str(data), out=str(run), model=MODEL, seed=cfg.seed, **{**BASE, "aug_views": 0},
                                cache_dir=str(cache), workers=0, progress=False, overwrite=True))
    return run


def product_predict(run_dir: Path, fold: pd.DataFrame, fold_dir: Path, classes: list[str],
                    feats_by_size: dict[tuple[int, str], torch.Tensor], metrics: dict[str, Any]) -> np.ndarray:
    """Per-image test predictions of a finished run.

    Head-only runs: the run's head on the eval features (cheap; same frozen backbone). Unfrozen
    runs: the whole model through the Predictor. Either way the counts are checked against the
    confusion matrix ``run_finetune`` itself reported.
    """
    from posture.checkpoint import load_checkpoint
    from posture.models import model_from_config

    ckpt = load_checkpoint(run_dir)
    test = (fold["split"] == "test").to_numpy()
    size = (int(ckpt.config["input_size"]), str(ckpt.config["preprocessing"].get("crop", "none")))
    if metrics.get("best_phase") == "unfreeze" or size not in feats_by_size:
        from posture.predict import Predictor

        predictor = Predictor.from_run(run_dir, backend="torch")
        paths = [str(fold_dir / p) for p in fold.loc[test, "path"]]
        pred = predictor.logits(paths).argmax(1)
    else:
        model = model_from_config(ckpt.config)
        model.load_state_dict(ckpt.state_dict)
        model.eval()
        with torch.inference_mode():
            pred = model.head(feats_by_size[size][torch.from_numpy(test.copy())]).argmax(1).numpy()
    y = np.array([classes.index(lbl) for lbl in fold.loc[test, "label"]])
    from sklearn.metrics import confusion_matrix

    ours = confusion_matrix(y, pred, labels=list(range(len(classes)))).tolist()
    if metrics.get("test") and ours != metrics["test"]["confusion_matrix"]:
        log.warning("%s: recomputed test confusion %s differs from run_finetune's %s", run_dir, ours,
                    metrics["test"]["confusion_matrix"])
    return pred


def standardized_head(fold_dir: Path, fold: pd.DataFrame, classes: list[str], cache: Path,
                      seed: int, crop: str = "none") -> np.ndarray:
    """Test predictions of the product's own head phase on standardised features.

    Why: a plain logistic regression moves off chance on unseen sessions only once its inputs are
    standardised, and ``run_finetune`` has no such option. This reuses the product's pieces
    (feature cache, ``HeadPhase``, ``run_phase``, early stopping, default options) and only adds
    ``(x - mean) / std`` with statistics of the training split, to size that proposed change.
    """
    from posture import models as zoo
    from posture.features import FeatureCache, FeatureSpec, extract_features
    from posture.finetune import FinetuneConfig, _optim_spec
    from posture.training import distributed
    from posture.training.loop import EarlyStopping, HeadPhase, PhaseRun, run_phase

    d = FinetuneConfig(data=str(fold_dir), out="", seed=seed, **BASE)
    torch.manual_seed(seed)
    model = zoo.build_model(MODEL, len(classes), pretrained=True,
                            head=zoo.HeadSpec(hidden=d.head_hidden, dropout=d.head_dropout))
    model.freeze_backbone()
    spec = FeatureSpec(arch=MODEL, weights_fingerprint=zoo.weights_fingerprint(MODEL, True),
                       preprocessing=replace(model.preprocessing, crop=crop), aug_views=d.aug_views, aug_seed=seed,
                       aug_strength=d.aug_strength)
    parts = {s: fold[fold["split"] == s].reset_index(drop=True) for s in ("train", "val", "test")}
    common = {"cache": FeatureCache(cache), "workers": 0, "num_features": model.num_features, "progress": False}
    train_x = extract_features(model.backbone, fold_dir, parts["train"], spec, **common).features
    evalx = {s: extract_features(model.backbone, fold_dir, parts[s], replace_views(spec), **common).features[:, 0]
             for s in ("val", "test")}
    mean, std = train_x[:, 0].mean(0), train_x[:, 0].std(0) + 1e-6
    train_x = (train_x - mean) / std
    evalx = {s: (x - mean) / std for s, x in evalx.items()}
    y = {s: torch.tensor([classes.index(lbl) for lbl in parts[s]["label"]]) for s in parts}
    phase = HeadPhase(model, train_x, y["train"], evalx["val"], y["val"], len(classes), _optim_spec(d), d.epochs,
                      d.batch_size, seed, distributed.detect(), torch.device("cpu"))
    best = run_phase(phase, PhaseRun(epochs=d.epochs, history=[]), EarlyStopping(patience=d.patience),
                     phase.state(), lambda epoch, best: None, progress=False)
    phase.load(best)
    model.head.eval()
    with torch.inference_mode():
        return model.head(evalx["test"]).argmax(1).numpy()


def replace_views(spec: Any) -> Any:
    return replace(spec, aug_views=0)


# --------------------------------------------------------------------------- metrics


def scores(y: np.ndarray, pred: np.ndarray, n_classes: int) -> dict[str, Any]:
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix

    return {"n": len(y), "accuracy": round(float((y == pred).mean()), 4),
            "balanced_accuracy": round(float(balanced_accuracy_score(y, pred)), 4) if len(set(y)) > 1 else None,
            "confusion_matrix": confusion_matrix(y, pred, labels=list(range(n_classes))).tolist()}


def summarise(frame: pd.DataFrame, pred: np.ndarray, fold_of: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Pooled, per fold and per source, from one prediction per image."""
    y = np.array([classes.index(lbl) for lbl in frame["label"]])
    out = {"pooled": scores(y, pred, len(classes)), "folds": {}, "per_source": {}}
    for name in pd.unique(fold_of):
        m = fold_of == name
        out["folds"][str(name)] = scores(y[m], pred[m], len(classes))
    for src in sorted(frame["source"].unique()):
        m = (frame["source"] == src).to_numpy()
        out["per_source"][src] = scores(y[m], pred[m], len(classes))
    fold_bacc = [f["balanced_accuracy"] for f in out["folds"].values() if f["balanced_accuracy"] is not None]
    out["mean_fold_balanced_accuracy"] = round(float(np.mean(fold_bacc)), 4) if fold_bacc else None
    return out


# --------------------------------------------------------------------------- the bench


def run_protocol(cfg: BenchConfig, protocol: str, frame: pd.DataFrame, ingested: Path, classes: list[str],
                 feats: dict[tuple[int, str], torch.Tensor], cache: Path, synth_run: Path | None) -> dict[str, Any]:
    from posture.finetune import FinetuneConfig, run_finetune

    folds = make_folds(frame, protocol, cfg.cv_folds, cfg.seed)
    y = np.array([classes.index(lbl) for lbl in frame["label"]])
    fold_of = np.empty(len(frame), object)
    variants = [v for v in cfg.variants if protocol in VARIANTS[v].protocols]
    baselines = {"baseline_logreg": ((224, "none"), False), "baseline_logreg_scaled": ((224, "none"), True)}
    if (224, "pose") in feats:
        baselines.update({"baseline_logreg_crop": ((224, "pose"), False),
                          "baseline_logreg_crop_scaled": ((224, "pose"), True)})
    preds = {k: np.full(len(frame), -1) for k in baselines}
    preds.update({v: np.full(len(frame), -1) for v in variants})
    if synth_run is not None:
        preds["synth_only"] = np.full(len(frame), -1)
    fold_info, timings = [], {k: 0.0 for k in preds}
    for f in folds:
        test = f["test"]
        fold_of[test] = f["name"]
        fold_dir = cfg.work / "folds" / protocol / f["name"].replace("=", "_")
        fold = write_fold(frame, ingested, fold_dir, test, cfg.seed)
        split = fold["split"].to_numpy()
        fold_info.append({"fold": f["name"], **{s: int((split == s).sum()) for s in ("train", "val", "test")},
                          "test_subjects": int(fold.loc[test, "subject"].nunique()),
                          "train_sources": sorted(fold.loc[~test, "source"].unique())})
        for bname, (key, scaled) in baselines.items():
            t0 = time.perf_counter()
            preds[bname][test] = baseline_predict(feats[key].numpy(), y, ~test, cfg.seed, scaled)[test]
            timings[bname] += time.perf_counter() - t0
        if synth_run is not None:
            preds["synth_only"][test] = product_predict(synth_run, fold, fold_dir, classes, feats, {})
        for name in variants:
            v = VARIANTS[name]
            overrides = dict(v.overrides)
            if v.synth_init:
                if synth_run is None:
                    continue
                overrides["weights"] = str(synth_run / "model.safetensors")
            run_dir = cfg.work / "runs" / protocol / f["name"].replace("=", "_") / name
            t0 = time.perf_counter()
            if v.standardize:
                preds[name][test] = standardized_head(fold_dir, fold, classes, cache, cfg.seed, v.crop)
                timings[name] += time.perf_counter() - t0
                continue
            metrics = run_finetune(FinetuneConfig(data=str(fold_dir), out=str(run_dir), model=MODEL, seed=cfg.seed,
                                                  cache_dir=str(cache), workers=0, progress=False, overwrite=True,
                                                  **overrides))
            preds[name][test] = product_predict(run_dir, fold, fold_dir, classes, feats, metrics)
            timings[name] += time.perf_counter() - t0
            log.info("%s %s %s: test balanced accuracy %.3f (%.0f s)", protocol, f["name"], name,
                     metrics["test"]["balanced_accuracy"], time.perf_counter() - t0)
    results = {k: {**summarise(frame, p, fold_of, classes), "seconds": round(timings[k], 1)}
               for k, p in preds.items() if (p >= 0).all()}
    return {"folds": fold_info, "results": results}


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    cfg.work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    t_start = time.perf_counter()
    cache = cfg.work / "feature_cache"
    ingested = cfg.work / "ingested"
    frame, ingest_info = ingest(cfg.real, ingested, cfg.near_dup_threshold)
    classes = [c for c in pd.read_json(ingested / "classes.json", typ="series")] \
        if (ingested / "classes.json").is_file() else sorted(frame["label"].unique())
    classes = list(classes)
    log.info("ingested %d images (classes %s)", len(frame), classes)

    feats = {(224, "none"): eval_features(ingested, frame, classes)}
    if any(VARIANTS[v].overrides.get("image_size") == 288 for v in cfg.variants):
        feats[(288, "none")] = eval_features(ingested, frame, classes, image_size=288)
    if any(VARIANTS[v].crop == "pose" for v in cfg.variants):
        feats[(224, "pose")] = eval_features(ingested, frame, classes, crop="pose")
    synth_run = None
    if any(VARIANTS[v].synth_init for v in cfg.variants):
        t0 = time.perf_counter()
        synth_run = train_synth_run(cfg, cache)
        log.info("synth front-view run ready (%.0f s)", time.perf_counter() - t0)

    from posture.finetune import FinetuneConfig

    defaults = FinetuneConfig(data="", out="").training_dict()
    payload: dict[str, Any] = {"classes": classes, "model": MODEL, "ingest": ingest_info,
                               "product_defaults": {k: v for k, v in defaults.items() if k not in ("data", "out")},
                               "base": BASE,
                               "variants": {k: {"overrides": VARIANTS[k].overrides, "note": VARIANTS[k].note}
                                            for k in cfg.variants},
                               "protocols": {}}
    for protocol in cfg.protocols:
        payload["protocols"][protocol] = run_protocol(cfg, protocol, frame, ingested, classes, feats, cache,
                                                      synth_run)

    # The baseline on the default-deduplicated set too (near-duplicate frames removed).
    dedup_dir = cfg.work / "ingested_dedup"
    dframe, dinfo = ingest(cfg.real, dedup_dir, 5)
    dfeats = eval_features(dedup_dir, dframe, classes).numpy()
    dy = np.array([classes.index(lbl) for lbl in dframe["label"]])
    dfolds = make_folds(dframe, "loso", cfg.cv_folds, cfg.seed)
    dpred, dfold_of = np.full(len(dframe), -1), np.empty(len(dframe), object)
    for f in dfolds:
        dpred[f["test"]] = baseline_predict(dfeats, dy, ~f["test"], cfg.seed)[f["test"]]
        dfold_of[f["test"]] = f["name"]
    payload["dedup_baseline_loso"] = {"ingest": dinfo, **summarise(dframe, dpred, dfold_of, classes)}
    payload["seconds_total"] = round(time.perf_counter() - t_start, 1)
    payload["machine"] = machine()
    return payload


# --------------------------------------------------------------------------- report


def _cm(c: list[list[int]]) -> str:
    return f"[[{c[0][0]},{c[0][1]}],[{c[1][0]},{c[1][1]}]]" if len(c) == 2 else str(c)


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def to_markdown(p: dict[str, Any]) -> str:
    classes = p["classes"]
    ing = p["ingest"]
    lines = ["# Real photos: grouped accuracy (baseline vs product)", "",
             (f"Model `{p['model']}` (genuine ImageNet weights). Data: `../shared/data/real` ingested with "
             f"`{ing['command']}`: kept {ing['kept']} of {ing['counts'].get('files_found')} files "
             f"(the other 2 are manifest.csv and SOURCES.md; {ing['counts'].get('duplicates')} duplicates removed). The default near-duplicate threshold (5 bits) "
             f"keeps only {p['dedup_baseline_loso']['ingest']['kept']} (the video frames collapse to a few poses), "
             "too few for per-source folds with training, so the main tables use exact-duplicate removal only; "
             "the plain baseline on the deduplicated set is given at the end."), "",
             (f"Confusion matrices are `[[TP_fh, FN_fh], [FP, TN]]` with rows = truth in class order {classes}. "
             "Pooled = every image tested once, predictions concatenated over folds. "
             "Test images come from people (LOSO: sessions) never seen in training; the val split used for early "
             "stopping comes from the training sources only."), ""]
    for protocol, block in p["protocols"].items():
        title = ("Leave-one-source-out (unseen capture session)" if protocol == "loso"
                 else "Subject-grouped CV (StratifiedGroupKFold by subject)")
        lines += [f"## {title}", "", "| fold | train | val | test | test people | trained on |",
                  "|---|---:|---:|---:|---:|---|"]
        for f in block["folds"]:
            lines.append(f"| {f['fold']} | {f['train']} | {f['val']} | {f['test']} | {f['test_subjects']} | "
                         f"{', '.join(f['train_sources'])} |")
        fold_names = [f["fold"] for f in block["folds"]]
        sources = sorted(next(iter(block["results"].values()))["per_source"]) if block["results"] else []
        lines += ["", "| configuration | pooled bal. acc | pooled acc | mean fold bal. acc | "
                  + " | ".join(f"{n} bal. acc" for n in fold_names) + " | pooled confusion | "
                  + " | ".join(f"{s} acc (n)" for s in sources) + " | s |",
                  "|---|---:|---:|---:|" + "---:|" * len(fold_names) + "---|" + "---:|" * len(sources) + "---:|"]
        for name, r in block["results"].items():
            lines.append(
                f"| {name} | {_f(r['pooled']['balanced_accuracy'])} | {_f(r['pooled']['accuracy'])} | "
                f"{_f(r['mean_fold_balanced_accuracy'])} | "
                + " | ".join(_f(r["folds"][n]["balanced_accuracy"]) for n in fold_names)
                + f" | {_cm(r['pooled']['confusion_matrix'])} | "
                + " | ".join(f"{_f(r['per_source'][s]['accuracy'])} ({r['per_source'][s]['n']})" for s in sources)
                + f" | {r['seconds']} |")
        lines.append("")
        lines += ["Per-fold confusion matrices:", "", "| configuration | " + " | ".join(fold_names) + " |",
                  "|---|" + "---|" * len(fold_names)]
        for name, r in block["results"].items():
            lines.append(f"| {name} | " + " | ".join(_cm(r["folds"][n]["confusion_matrix"]) for n in fold_names) + " |")
        lines.append("")
    d = p["dedup_baseline_loso"]
    lines += ["## Plain baseline on the deduplicated set (near-dup threshold 5), leave-one-source-out", "",
              f"{d['ingest']['kept']} images kept ({d['ingest']['kept_by_source_label']}). Pooled balanced accuracy "
              f"{_f(d['pooled']['balanced_accuracy'])}, accuracy {_f(d['pooled']['accuracy'])}, confusion "
              f"{_cm(d['pooled']['confusion_matrix'])}; per fold "
              + ", ".join(f"{k}: {_f(v['balanced_accuracy'])} (n={v['n']})" for k, v in d["folds"].items()) + ".", ""]
    lines += ["Variants: " + "; ".join(f"`{k}`: {v['note']}" for k, v in p["variants"].items()) + ". "
              "`baseline_logreg`: sklearn LogisticRegression defaults on frozen eval features "
              "(`_scaled`: StandardScaler first). `synth_only`: the "
              "synthetic front-view run applied as is (no real photo in training).", "",
              (f"Compute time {p['seconds_total']} s (summed over the runs merged into this file) on "
               f"{p['machine']['cpu_count']} cores"
               + (f", plus {p['seconds_total_unfreeze_runs']} s for the merged unfreeze runs "
                  if p.get("seconds_total_unfreeze_runs") else " ")
               + f"(load average at start {p['machine']['load_average_at_start'][0]:.1f})."), ""]
    if p.get("what_helped"):
        lines += ["## What helped", "", p["what_helped"], ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--real", default=str(DEFAULT_REAL), help="the real-photo folder (default %(default)s)")
    p.add_argument("--work", default="/tmp/posture_real_photos", help="fold folders, runs and feature cache")
    p.add_argument("--configs", default=",".join(DEFAULT_VARIANTS), help="product variants, comma-separated "
                   f"(default: {', '.join(DEFAULT_VARIANTS)}; also: "
                   f"{', '.join(sorted(set(VARIANTS) - set(DEFAULT_VARIANTS)))}); 'none' for the baseline only")
    p.add_argument("--protocols", default="loso,cv", help="loso and/or cv (default %(default)s)")
    p.add_argument("--cv-folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--what-helped", default=None, help="a file whose text becomes the 'What helped' paragraph")
    p.add_argument("--no-write", action="store_true", help="print the markdown, do not write bench/results")
    p.add_argument("--merge-into", default=None, metavar="FILE",
                   help="add this run's variants to an earlier results JSON (same folds) instead of replacing it")
    p.add_argument("--from-json", default=None, metavar="FILE",
                   help="re-render the markdown from a results JSON (e.g. to add --what-helped) without rerunning")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = build_parser().parse_args(argv)
    real = Path(args.real)
    if not real.is_absolute() and not real.exists():
        real = ROOT / real  # the documented path is relative to the repository root
    if args.from_json:
        import json

        payload = json.loads(Path(args.from_json).read_text())
        return _emit(payload, args)
    if not (real / "manifest.csv").is_file():
        log.error("%s: no real photos (manifest.csv missing); nothing to do", real)
        return 2
    variants = [] if args.configs == "none" else [v.strip() for v in args.configs.split(",") if v.strip()]
    from posture.pose import pose_available

    if args.configs == build_parser().get_default("configs") and not pose_available():
        log.warning("MediaPipe is not installed: leaving out %s (pip install --no-deps -r requirements-pose.txt)",
                    ", ".join(CROP_VARIANTS))
        variants = [v for v in variants if v not in CROP_VARIANTS]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        log.error("unknown configuration(s) %s; choose from %s", unknown, ", ".join(VARIANTS))
        return 2
    cfg = BenchConfig(real=real.resolve(), work=Path(args.work), variants=variants,
                      protocols=[s.strip() for s in args.protocols.split(",") if s.strip()],
                      cv_folds=args.cv_folds, seed=args.seed)
    payload = run_bench(cfg)
    if args.merge_into:
        payload = merge(json_load(args.merge_into), payload)
    return _emit(payload, args)


def json_load(path: str) -> dict[str, Any]:
    import json

    return json.loads(Path(path).read_text())


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Earlier results plus this run's variants; folds must match (same data, seed and fold count)."""
    for protocol, block in new["protocols"].items():
        if protocol not in old["protocols"]:
            old["protocols"][protocol] = block
            continue
        if block["folds"] != old["protocols"][protocol]["folds"]:
            raise UserError(f"--merge-into: the {protocol} folds differ from the earlier run's; rerun everything")
        old["protocols"][protocol]["results"].update(block["results"])
    old["variants"].update(new["variants"])
    old["seconds_total"] = round(float(old["seconds_total"]) + float(new["seconds_total"]), 1)
    return old


def _emit(payload: dict[str, Any], args: argparse.Namespace) -> int:
    if args.what_helped:
        payload["what_helped"] = Path(args.what_helped).read_text().strip()
    markdown = to_markdown(payload)
    if args.no_write:
        print(markdown)
    else:
        for path in write_results("real_photos", payload, markdown):
            log.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
