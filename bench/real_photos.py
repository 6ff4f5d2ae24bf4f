"""Real photos of people the model never saw: every extractor of the zoo, leave-one-source-out.

Why this benchmark exists: ``../shared/data/real`` holds real photos from a few sources (capture
sessions; see its SOURCES.md), most of them one person each, in near-identical video frames. A random
split of files would score the identity, not the posture. So two protocols, both grouped:

* **leave-one-source-out** (LOSO): train on every other source, test on one, i.e. on "a capture
  session it never saw" (different room, camera, viewpoint, person, labeller);
* **subject-grouped CV**: ``StratifiedGroupKFold`` by ``subject``.

Each fold is written as a dataset folder (``manifest.csv`` with a ``split`` column; ``images/`` is a
symlink to the ingested copy). The validation split comes from the training sources only: whole people
where a source has many, and blocks of consecutive frames of each clip where a source is one person.

Every configuration is trained by the product (``posture.finetune.run_finetune``) and answered by the
product (``posture.predict.Predictor``), which says "cannot assess" when it finds no person: scores are
on the assessed photos, with the coverage beside them. The grid (``--configs``):

* extractors: ``cnn`` (EfficientNet-Lite0 on the whole photo), ``cnn_crop`` (on the BlazePose
  head-and-shoulders crop), ``pose`` (posture geometry from BlazePose landmarks), ``fusion``
  (``efficientnet_lite0+pose``); each with a linear and an MLP head;
* ``default``: ``FinetuneConfig``'s defaults as they are (no option at all), and ``default_evaluated``:
  the same run after ``posture.calibrate`` fitted its threshold on the fold's validation split, as the
  README demo does before the app uses a run (the name predates that step, which evaluation used to do);
* calibrated rows (pose and fusion): ``Predictor.with_reference`` on one upright photo of the test
  session (``--calibration-draws`` seeded draws; that photo is not scored).

Reported: balanced accuracy per fold and pooled, per-fold confusion matrices, coverage, and a 95 %
interval for the pooled balanced accuracy by person (a bootstrap that resamples whole subjects).
``--select-features`` adds a forward selection of the geometry features by LOSO (a logistic regression
on the product's own geometry as the proxy), whose pick then runs through the product beside the
defaults (``pose_selected``, when it differs from ``posture.geometry.DEFAULT_FEATURES``): the
product's own leave-one-source-out score, not the proxy's, decides the default.
Writes ``bench/results/real_photos.json|md``; folds, runs and caches stay under ``--work``.

    python -m bench.real_photos                       # the whole grid (~15 min on 2 cores, cold caches)
    python -m bench.real_photos --configs default,pose_mlp --protocols loso
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench.common import machine, write_results
from posture.cli import UserError
from posture.data import read_manifest
from posture.fileio import atomic_write_csv
from posture.formats import CLASSES_NAME, MANIFEST_NAME, SPLITS
from posture.geometry import DEFAULT_FEATURES

log = logging.getLogger("bench.real_photos")
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REAL = Path("..") / "shared" / "data" / "real"
CNN = "efficientnet_lite0"
#: The configuration the feature selection adds when its pick differs from the default features.
SELECTED = "pose_selected"
POSITIVE = "forward_head"
UPRIGHT = "normal"
MLP = {"head_hidden": 256, "head_dropout": 0.3}
LINEAR = {"head_hidden": 0, "head_dropout": 0.0}


@dataclass(frozen=True)
class Config:
    """One product configuration: ``FinetuneConfig`` overrides (an empty dict is the defaults)."""

    overrides: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    calibrate: bool = False  # also run posture.calibrate (threshold fitted on val) before predicting

    @property
    def reads_pose(self) -> bool:
        from posture.finetune import DEFAULT_MODEL
        from posture.models import extractor_parts

        return extractor_parts(self.overrides.get("model", DEFAULT_MODEL)).pose


CONFIGS: dict[str, Config] = {
    "default": Config({}, "FinetuneConfig defaults, no option given"),
    "default_evaluated": Config({}, "the defaults, then posture.calibrate's threshold (fitted on val)", calibrate=True),
    "cnn": Config({"model": CNN, **LINEAR}, "EfficientNet-Lite0, whole photo, linear head"),
    "cnn_mlp": Config({"model": CNN, **MLP}, "EfficientNet-Lite0, whole photo, MLP head (the CNN default)"),
    "cnn_crop": Config({"model": CNN, "crop": "pose", **LINEAR}, "EfficientNet-Lite0 on the head-and-shoulders crop"),
    "cnn_crop_mlp": Config({"model": CNN, "crop": "pose", **MLP}, "the same, MLP head"),
    "pose": Config({"model": "pose", **LINEAR}, "posture geometry, linear head"),
    "pose_mlp": Config({"model": "pose", **MLP}, "posture geometry, MLP head"),
    "pose_val_source": Config({"model": "pose", "val_group": "source"}, "pose, validation from a held-out source"),
    "pose_aug0": Config({"model": "pose", "aug_views": 0}, "pose without landmark-space augmentation"),
    "fusion": Config({"model": f"{CNN}+pose", **LINEAR}, "CNN on the crop ‖ geometry, linear head"),
    "fusion_mlp": Config({"model": f"{CNN}+pose", **MLP}, "the same, MLP head"),
}


@dataclass
class BenchConfig:
    real: Path
    work: Path
    configs: list[str]
    protocols: list[str]
    cv_folds: int = 5
    seed: int = 0
    calibration_draws: int = 5
    bootstrap: int = 2000
    select_features: bool = False


# --------------------------------------------------------------------------- data and folds


def ingest(real: Path, out: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The product's ingest (exact duplicates removed), subject and source from the folder's manifest."""
    cmd = [
        sys.executable,
        "-m",
        "posture.ingest",
        str(real),
        "--out",
        str(out),
        "--labels",
        str(real / MANIFEST_NAME),
        "--near-dup-threshold",
        "-1",
        "--no-progress",
        "-q",
        "--overwrite",
    ]
    proc = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"ingest failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    frame = read_manifest(out)
    counts = (frame["source"].astype(str) + "/" + frame["label"].astype(str)).value_counts().sort_index()
    info = {
        "command": " ".join(cmd[1:]).replace(str(real), "REAL").replace(str(out), "TMP"),
        "kept": len(frame),
        "by_source_label": {str(key): int(n) for key, n in counts.items()},
        "people": int(frame["subject"].nunique()),
    }
    return frame, info


def inner_groups(frame: pd.DataFrame, blocks: int = 5) -> pd.Series:
    """Groups for carving val out of a training pool: a person with few photos is one group; a
    person with many (a video) is cut into ``blocks`` runs of consecutive frames per clip."""
    stems = frame["source_path"].astype(str).map(lambda p: Path(p).stem)
    clip = frame["subject"].astype(str) + "|" + stems.map(lambda s: re.sub(r"\d+$", "", s))
    sizes = frame.groupby("subject")["path"].transform("size")
    order = stems.groupby(clip).rank(method="first") - 1
    block = (order * blocks // clip.map(clip.value_counts())).astype(int).astype(str)
    return pd.Series(np.where(sizes >= 10, clip + "|" + block, frame["subject"].astype(str)), index=frame.index)


def make_folds(frame: pd.DataFrame, protocol: str, cv_folds: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """``[(name, test_mask)]``; every row is in exactly one fold's test set."""
    from sklearn.model_selection import StratifiedGroupKFold

    if protocol == "loso":
        return [(f"test={s}", (frame["source"] == s).to_numpy()) for s in sorted(frame["source"].unique())]
    splitter = StratifiedGroupKFold(n_splits=cv_folds, shuffle=True, random_state=seed)
    folds = []
    for k, (_, test_idx) in enumerate(splitter.split(frame, frame["label"], frame["subject"])):
        mask = np.zeros(len(frame), bool)
        mask[test_idx] = True
        folds.append((f"cv{k}", mask))
    return folds


def write_fold(frame: pd.DataFrame, ingested: Path, fold_dir: Path, test: np.ndarray, seed: int) -> pd.DataFrame:
    """A dataset folder for one fold: train/val from the other sources, test the held-out rows."""
    from sklearn.model_selection import StratifiedGroupKFold

    fold = frame.copy()
    pool = fold[~test]
    groups = inner_groups(pool)
    splitter = StratifiedGroupKFold(n_splits=max(2, min(5, groups.nunique())), shuffle=True, random_state=seed)
    _, val_idx = next(splitter.split(pool, pool["label"], groups))
    fold["split"] = "test"
    fold.loc[pool.index, "split"] = "train"
    fold.loc[pool.index[val_idx], "split"] = "val"
    if fold_dir.exists():
        shutil.rmtree(fold_dir)
    fold_dir.mkdir(parents=True)
    (fold_dir / "images").symlink_to((ingested / "images").resolve(), target_is_directory=True)
    shutil.copy(ingested / CLASSES_NAME, fold_dir / CLASSES_NAME)
    atomic_write_csv(fold_dir / MANIFEST_NAME, fold)
    return fold


# --------------------------------------------------------------------------- scoring


def scores(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """Balanced accuracy, accuracy and confusion on the assessed rows (``pred >= 0``)."""
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix

    seen = pred >= 0
    ys, ps = y[seen], pred[seen]
    return {
        "n": int(len(y)),
        "assessed": int(seen.sum()),
        "coverage": round(float(seen.mean()), 4) if len(y) else None,
        "accuracy": round(float((ys == ps).mean()), 4) if len(ys) else None,
        "balanced_accuracy": round(float(balanced_accuracy_score(ys, ps)), 4) if len(set(ys)) > 1 else None,
        "confusion_matrix": confusion_matrix(ys, ps, labels=[0, 1]).tolist(),
    }


def person_interval(y: np.ndarray, pred: np.ndarray, subjects: np.ndarray, n: int, seed: int) -> list[float] | None:
    """95 % interval of the pooled balanced accuracy, resampling whole people (cluster bootstrap)."""
    from sklearn.metrics import balanced_accuracy_score

    seen = pred >= 0
    y, pred, subjects = y[seen], pred[seen], subjects[seen]
    people = np.unique(subjects)
    if len(people) < 2 or n < 1:
        return None
    rows = {p: np.flatnonzero(subjects == p) for p in people}
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        idx = np.concatenate([rows[p] for p in rng.choice(people, size=len(people), replace=True)])
        if len(set(y[idx])) > 1:
            values.append(balanced_accuracy_score(y[idx], pred[idx]))
    return [round(float(np.percentile(values, 2.5)), 4), round(float(np.percentile(values, 97.5)), 4)]


def summarise(cfg: BenchConfig, frame: pd.DataFrame, pred: np.ndarray, fold_of: np.ndarray) -> dict[str, Any]:
    y = (frame["label"] != POSITIVE).astype(int).to_numpy()  # class order: forward_head, normal
    out: dict[str, Any] = {"pooled": scores(y, pred), "folds": {}, "per_source": {}}
    out["pooled"]["interval_by_person"] = person_interval(
        y, pred, frame["subject"].astype(str).to_numpy(), cfg.bootstrap, cfg.seed
    )
    for name in pd.unique(fold_of):
        m = fold_of == name
        out["folds"][str(name)] = scores(y[m], pred[m])
    for src in sorted(frame["source"].unique()):
        m = (frame["source"] == src).to_numpy()
        out["per_source"][src] = scores(y[m], pred[m])
    bacc = [f["balanced_accuracy"] for f in out["folds"].values() if f["balanced_accuracy"] is not None]
    out["mean_fold_balanced_accuracy"] = round(float(np.mean(bacc)), 4) if bacc else None
    out["min_fold_balanced_accuracy"] = round(float(np.min(bacc)), 4) if bacc else None
    return out


def predict_rows(predictor: Any, root: Path, rows: pd.DataFrame) -> tuple[np.ndarray, list[Any]]:
    """Class index per row (``-1``: cannot assess) and the analyses, through the product's Predictor."""
    from posture.images import load_rgb_array

    analyses = [predictor.analyse(load_rgb_array(root / p)) for p in rows["path"]]
    answers = predictor.predict_analysed(analyses)
    return np.array([predictor.class_names.index(a.label) if a.assessed else -1 for a in answers]), analyses


def calibrated_rows(predictor: Any, rows: pd.DataFrame, analyses: list[Any], draws: int, seed: int) -> list[np.ndarray]:
    """Per draw: predictions after calibrating on one upright photo of the session (that photo -2, unscored)."""
    candidates = [i for i, a in enumerate(analyses) if a.geometry is not None and rows["label"].iloc[i] == UPRIGHT]
    out = []
    rng = np.random.default_rng(seed)
    for _ in range(draws):
        pred = np.full(len(rows), -1)
        if candidates:
            ref = int(rng.choice(candidates))
            calibrated = predictor.with_reference_geometry(analyses[ref].geometry)
            answers = calibrated.predict_analysed(analyses)
            pred = np.array([predictor.class_names.index(a.label) if a.assessed else -1 for a in answers])
            pred[ref] = -2
        out.append(pred)
    return out


# --------------------------------------------------------------------------- the bench


def run_config(
    cfg: BenchConfig,
    name: str,
    c: Config,
    protocol: str,
    folds: list[tuple[str, np.ndarray]],
    frame: pd.DataFrame,
    fold_dirs: dict[str, Path],
    detector: Any,
) -> dict[str, Any]:
    from posture.calibrate import CalibrateConfig, calibrate
    from posture.finetune import FinetuneConfig, run_finetune
    from posture.predict import Predictor

    pred = np.full(len(frame), -1)
    fold_of = np.empty(len(frame), object)
    calib = [np.full(len(frame), -1) for _ in range(cfg.calibration_draws)]
    t0 = time.perf_counter()
    for fold_name, test in folds:
        fold_dir = fold_dirs[fold_name]
        run = cfg.work / "runs" / protocol / fold_name.replace("=", "_") / name
        options = {"seed": cfg.seed, **c.overrides}
        run_finetune(
            FinetuneConfig(
                data=str(fold_dir),
                out=str(run),
                cache_dir=str(cfg.work / "cache"),
                workers=0,
                progress=False,
                overwrite=True,
                **options,
            )
        )
        if c.calibrate:
            calibrate(CalibrateConfig(run=run, data=fold_dir, device="cpu"))
        predictor = Predictor.from_run(run, backend="torch", detector=detector)
        rows = frame[test].reset_index(drop=True)
        fold_of[test] = fold_name
        pred[test], analyses = predict_rows(predictor, fold_dir, rows)
        if c.reads_pose and protocol == "loso":
            for k, p in enumerate(calibrated_rows(predictor, rows, analyses, cfg.calibration_draws, cfg.seed)):
                calib[k][test] = p
    out = {**summarise(cfg, frame, pred, fold_of), "seconds": round(time.perf_counter() - t0, 1)}
    if c.reads_pose and protocol == "loso" and cfg.calibration_draws:
        draws = [summarise(cfg, frame[p != -2].reset_index(drop=True), p[p != -2], fold_of[p != -2]) for p in calib]
        means = [d["mean_fold_balanced_accuracy"] for d in draws if d["mean_fold_balanced_accuracy"] is not None]
        out["calibrated"] = {
            "draws": len(draws),
            "mean_fold_balanced_accuracy": round(float(np.mean(means)), 4),
            "range": [round(float(min(means)), 4), round(float(max(means)), 4)],
            "folds": {
                f: round(
                    float(
                        np.mean(
                            [
                                d["folds"][f]["balanced_accuracy"]
                                for d in draws
                                if d["folds"][f]["balanced_accuracy"] is not None
                            ]
                        )
                    ),
                    4,
                )
                for f in draws[0]["folds"]
            },
        }
    log.info(
        "%s %s: mean fold balanced accuracy %s (folds %s), coverage %s",
        protocol,
        name,
        out["mean_fold_balanced_accuracy"],
        {k: v["balanced_accuracy"] for k, v in out["folds"].items()},
        out["pooled"]["coverage"],
    )
    return out


def select_features(
    cfg: BenchConfig, frame: pd.DataFrame, root: Path, detector: Any, max_features: int = 5
) -> dict[str, Any]:
    """Forward selection of geometry features by LOSO (mean fold balanced accuracy, ties by the worst
    fold), on the product's own landmarks and geometry, with a class- and source-balanced logistic
    regression as a fast proxy of the product's linear head."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from posture.features import FeatureCache, frame_paths
    from posture.geometry import FEATURES, posture_features
    from posture.landmarks import detect_landmarks

    paths, shas = frame_paths(root, frame)
    marks = detect_landmarks(paths, shas, FeatureCache(cfg.work / "cache"), detector=detector, progress=False)
    names = list(FEATURES)
    rows = [posture_features(lm, names, shape)[0] for lm, shape in zip(marks.landmarks, marks.shapes, strict=True)]
    keep = np.array([r is not None for r in rows])
    x = np.stack([r for r in rows if r is not None])
    y = (frame["label"][keep] == POSITIVE).to_numpy().astype(int)
    src = frame["source"][keep].to_numpy()
    weight = np.array([1.0 / (src == s).sum() for s in src])

    def loso(cols: list[int]) -> list[float]:
        out = []
        for s in np.unique(src):
            tr = src != s
            clf = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=5000))
            clf.fit(x[tr][:, cols], y[tr], logisticregression__sample_weight=weight[tr] * tr.sum() / weight[tr].sum())
            out.append(float(balanced_accuracy_score(y[~tr], clf.predict(x[~tr][:, cols]))))
        return out

    chosen: list[int] = []
    steps, best = [], -1.0
    while len(chosen) < max_features:
        trials = [
            (np.mean(f) + 0.5 * min(f), i, f)
            for i in range(len(names))
            if i not in chosen
            for f in [loso(chosen + [i])]
        ]
        score, i, folds = max(trials)
        if score <= best + 1e-9:
            break
        best = score
        chosen.append(i)
        steps.append(
            {
                "features": [names[j] for j in chosen],
                "mean_fold": round(float(np.mean(folds)), 4),
                "folds": dict(zip(map(str, np.unique(src)), (round(v, 4) for v in folds), strict=True)),
            }
        )
    single = {names[i]: round(float(np.mean(loso([i]))), 4) for i in range(len(names))}
    return {"assessed": int(keep.sum()), "steps": steps, "single_feature_mean_fold": single}


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    from posture.finetune import FinetuneConfig
    from posture.pose import PoseDetector

    cfg.work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    ingested = cfg.work / "ingested"
    frame, ingest_info = ingest(cfg.real, ingested)
    detector = PoseDetector(cache_size=4096)  # one BlazePose graph for every predictor of the bench
    defaults = FinetuneConfig(data="", out="").training_dict()
    configs = {k: CONFIGS[k] for k in cfg.configs}
    payload: dict[str, Any] = {
        "ingest": ingest_info,
        "product_defaults": {k: v for k, v in defaults.items() if k not in ("data", "out")},
        "protocols": {},
    }
    if cfg.select_features:
        payload["feature_selection"] = selection = select_features(cfg, frame, ingested, detector)
        picked = selection["steps"][-1]["features"]
        if tuple(picked) != tuple(DEFAULT_FEATURES):  # the proxy is a guide; the product decides
            configs[SELECTED] = Config(
                {"model": "pose", "pose_features": ",".join(picked)},
                f"posture geometry with the forward selection's pick ({', '.join(picked)}), linear head",
            )
    payload["configs"] = {k: {"overrides": c.overrides, "note": c.note} for k, c in configs.items()}
    for protocol in cfg.protocols:
        folds = make_folds(frame, protocol, cfg.cv_folds, cfg.seed)
        fold_dirs, info = {}, []
        for name, test in folds:
            fold_dirs[name] = cfg.work / "folds" / protocol / name.replace("=", "_")
            fold = write_fold(frame, ingested, fold_dirs[name], test, cfg.seed)
            info.append(
                {
                    "fold": name,
                    **{s: int((fold["split"] == s).sum()) for s in SPLITS},
                    "test_people": int(fold.loc[test, "subject"].nunique()),
                    "train_sources": sorted(fold.loc[~test, "source"].unique()),
                }
            )
        results = {
            name: run_config(cfg, name, c, protocol, folds, frame, fold_dirs, detector) for name, c in configs.items()
        }
        payload["protocols"][protocol] = {"folds": info, "results": results}
    payload["seconds_total"] = round(time.perf_counter() - t_start, 1)
    payload["machine"] = machine()
    return payload


# --------------------------------------------------------------------------- report


def _f(x: Any) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _cm(c: list[list[int]]) -> str:
    return f"[[{c[0][0]},{c[0][1]}],[{c[1][0]},{c[1][1]}]]"


def to_markdown(p: dict[str, Any]) -> str:
    lines = [
        "# Real photos of unseen people: every extractor, leave-one-source-out",
        "",
        f"`python -m bench.real_photos` on `../shared/data/real`: {p['ingest']['kept']} photos of "
        f"{p['ingest']['people']} people ({', '.join(f'{k} {v}' for k, v in p['ingest']['by_source_label'].items())});"
        " exact duplicates removed by the product's ingest. Every run is `posture.finetune` and every answer "
        "`posture.predict.Predictor`; scores are balanced accuracy on the photos it could assess, coverage "
        "beside them. Confusion matrices `[[TP_fh, FN_fh], [FP, TN]]` (rows = truth, forward_head first). "
        "Intervals: 95 % by person (bootstrap over subjects) of the pooled balanced accuracy.",
        "",
    ]
    for protocol, block in p["protocols"].items():
        title = (
            "Leave-one-source-out (unseen capture session)"
            if protocol == "loso"
            else "Subject-grouped CV (StratifiedGroupKFold by subject)"
        )
        lines += [
            f"## {title}",
            "",
            "| fold | train | val | test | test people | trained on |",
            "|---|---:|---:|---:|---:|---|",
        ]
        lines += [
            f"| {f['fold']} | {f['train']} | {f['val']} | {f['test']} | {f['test_people']} | "
            f"{', '.join(f['train_sources'])} |"
            for f in block["folds"]
        ]
        folds = [f["fold"] for f in block["folds"]]
        lines += [
            "",
            "| configuration | mean fold bal. acc | worst fold | "
            + " | ".join(folds)
            + " | pooled bal. acc [95% by person] | coverage | calibrated (1 upright photo) | s |",
            "|---|---:|---:|" + "---:|" * len(folds) + "---:|---:|---:|---:|",
        ]
        for name, r in block["results"].items():
            pooled = r["pooled"]
            iv = pooled.get("interval_by_person")
            cal = r.get("calibrated")
            lines.append(
                f"| {name} | {_f(r['mean_fold_balanced_accuracy'])} | {_f(r['min_fold_balanced_accuracy'])} | "
                + " | ".join(_f(r["folds"][f]["balanced_accuracy"]) for f in folds)
                + f" | {_f(pooled['balanced_accuracy'])}"
                + (f" [{iv[0]:.2f}, {iv[1]:.2f}]" if iv else "")
                + f" | {_f(pooled['coverage'])} | "
                + (
                    f"{_f(cal['mean_fold_balanced_accuracy'])} ({cal['range'][0]:.2f}–{cal['range'][1]:.2f})"
                    if cal
                    else "–"
                )
                + f" | {r['seconds']:.0f} |"
            )
        lines += [
            "",
            "Per-fold confusion matrices (assessed photos):",
            "",
            "| configuration | " + " | ".join(folds) + " |",
            "|---|" + "---|" * len(folds),
        ]
        lines += [
            f"| {name} | " + " | ".join(_cm(r["folds"][f]["confusion_matrix"]) for f in folds) + " |"
            for name, r in block["results"].items()
        ]
        lines.append("")
    if "feature_selection" in p:
        fs = p["feature_selection"]
        lines += [
            "## How the default geometry features were picked",
            "",
            f"Forward selection by LOSO on the {fs['assessed']} assessed photos (a class- and source-balanced "
            "logistic regression on the product's geometry as the proxy; score = mean fold + ½ worst fold):",
            "",
        ]
        lines += [
            f"{i + 1}. {', '.join(s['features'])}: mean fold {s['mean_fold']:.3f} ("
            + ", ".join(f"{k} {v:.2f}" for k, v in s["folds"].items())
            + ")"
            for i, s in enumerate(fs["steps"])
        ]
        loso = p["protocols"].get("loso", {}).get("results", {})
        if SELECTED in loso and "default" in loso:
            ours, picked = loso["default"]["mean_fold_balanced_accuracy"], loso[SELECTED]["mean_fold_balanced_accuracy"]
            lines += [
                "",
                f"Through the product (LOSO table above), the proxy's pick scores {picked:.3f} mean fold "
                f"(`{SELECTED}`) against {ours:.3f} for the default features ({', '.join(DEFAULT_FEATURES)}): "
                "the product's own score decides the default, the proxy only proposes.",
            ]
        lines += [
            "",
            "Each feature alone (mean fold): "
            + ", ".join(
                f"{k} {v:.2f}" for k, v in sorted(fs["single_feature_mean_fold"].items(), key=lambda kv: -kv[1])
            ),
            "",
        ]
    lines += [
        "Configurations: " + "; ".join(f"`{k}`: {v['note']}" for k, v in p["configs"].items()) + ".",
        "",
        f"Product defaults: `{p['product_defaults']}`.",
        "",
        f"Compute time {p['seconds_total']:.0f} s on {p['machine']['cpu_count']} cores "
        f"(load average at start {p['machine']['load_average_at_start'][0]:.1f}).",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--real", type=Path, default=DEFAULT_REAL, help="the real photo folder (default %(default)s)")
    parser.add_argument(
        "--work",
        type=Path,
        default=Path("/tmp/posture_real_photos"),
        help="scratch folder for folds, runs and caches (default %(default)s)",
    )
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated configurations")
    parser.add_argument("--protocols", default="loso,cv", help="loso, cv or both (default %(default)s)")
    parser.add_argument("--calibration-draws", type=int, default=5, help="seeded upright-photo draws (default 5)")
    parser.add_argument("--select-features", action="store_true", help="also run the geometry feature selection")
    parser.add_argument("--no-write", action="store_true", help="print the markdown, write nothing to bench/results")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in (
        "posture",
        "posture.features",
        "posture.landmarks",
        "posture.finetune",
        "posture.training.loop",
        "posture.evaluate",
        "posture.calibrate",
        "posture.scoring",
        "posture.data",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    real = args.real if args.real.is_absolute() else (ROOT / args.real)
    if not (real / MANIFEST_NAME).is_file():
        log.error("error: %s has no manifest.csv (the real photos live in ../shared/data/real)", real)
        return 2
    unknown = [c for c in args.configs.split(",") if c not in CONFIGS]
    if unknown:
        log.error("error: unknown configuration(s) %s; choose from %s", unknown, ", ".join(CONFIGS))
        return 2
    torch.set_num_threads(2)
    cfg = BenchConfig(
        real=real.resolve(),
        work=args.work,
        configs=args.configs.split(","),
        protocols=args.protocols.split(","),
        calibration_draws=args.calibration_draws,
        select_features=args.select_features,
    )
    payload = run_bench(cfg)
    markdown = to_markdown(payload)
    if args.no_write:
        print(markdown)
    else:
        paths = write_results("real_photos", payload, markdown)
        log.info("wrote %s", ", ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
