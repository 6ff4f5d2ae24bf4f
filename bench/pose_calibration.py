"""Calibrated pose (``posture.posecal``) vs the plain baseline on real photos of an unseen capture session.

Why: on leave-one-source-out folds of ``../shared/data/real`` (``bench/real_photos.py``) no
frozen-backbone configuration clearly beats a plain logistic regression; both sit near chance on a
session they never saw. ``posture.posecal`` measures head height over the shoulders with BlazePose
and compares each photo with upright photos of the same session. This bench measures it on the same
folds, beside the baseline given the *same* calibration (CNN features minus the mean features of
the same upright photos), so the comparison is about the features, not about the extra photos.

Protocol per fold (test source = the unseen session): fit on every photo of the other two sources,
each against the mean of its own source's upright (``normal``) photos. In the test session, ``k``
upright photos (k = 1 and 3, seeded; 10 seeds) are the calibration and are not scored; every other
photo is. The uncalibrated rows use no photo of the test session at all (the pose model against
the training sessions' mean reference; the baseline as is) and are scored on the same photos.

    python bench/pose_calibration.py            # about 1 min on 2 cores; writes bench/results/pose_calibration.*
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import RESULTS, machine  # noqa: E402
from bench.real_photos import DEFAULT_REAL, eval_features, ingest, make_folds  # noqa: E402

log = logging.getLogger("bench.pose_calibration")
SESSION = "source"
KS = (1, 3)


def _lr(scaled: bool, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = LogisticRegression(max_iter=5000, random_state=seed)
    return make_pipeline(StandardScaler(), clf) if scaled else clf


def _center(x: np.ndarray, sessions: np.ndarray, is_ref: np.ndarray) -> np.ndarray:
    """Subtract each session's mean over its reference rows (the baseline's version of calibration)."""
    out = x.copy()
    for s in np.unique(sessions):
        rows = sessions == s
        out[rows] -= x[rows & is_ref].mean(axis=0)
    return out


def _scores(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix

    return {"n": int(len(y)), "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
            "accuracy": float((y == pred).mean()), "confusion_matrix": confusion_matrix(y, pred, labels=[1, 0]).tolist()}  # row 0 = forward_head


def run(real: Path, work: Path, seeds: int, threads: int) -> dict[str, Any]:
    from posture.posecal import (REFERENCE_CLASS, PoseCalConfig, evaluate_sessions, measure, session_references,
                                 train)

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    frame, ingest_info = ingest(real, work / "ingested", -1)
    classes = ["forward_head", "normal"]
    positive = "forward_head"
    y = (frame["label"] == positive).to_numpy().astype(int)  # 1 = forward_head
    t_measure = time.perf_counter()
    geometry = measure([work / "ingested" / p for p in frame["path"]], progress=False)
    measure_s = time.perf_counter() - t_measure
    cnn = eval_features(work / "ingested", frame, classes).numpy()
    sessions = frame[SESSION].to_numpy()
    is_normal = (frame["label"] == REFERENCE_CLASS).to_numpy()
    methods = ["pose_calibrated", "pose_uncalibrated", "baseline_logreg", "baseline_logreg_calibrated",
               "baseline_logreg_scaled", "baseline_logreg_scaled_calibrated"]
    # results[method][k][seed] = (fold -> (y, pred)) over the scored photos
    raw: dict[str, dict[int, list[dict[str, tuple[np.ndarray, np.ndarray]]]]] = {
        m: {k: [{} for _ in range(seeds)] for k in KS} for m in methods}
    folds = make_folds(frame, "loso", 5, 0)
    for f in folds:
        test = f["test"]
        tr_frame, te_frame = frame[~test].reset_index(drop=True), frame[test].reset_index(drop=True)
        cfg = PoseCalConfig(data="", out="", session_column=SESSION, seed=0)
        model = train(cfg, tr_frame, geometry[~test], classes)
        mean_ref = np.mean(list(session_references(geometry[~test], sessions[~test], is_normal[~test]).values()), 0)
        plain = {s: _lr(s, 0).fit(cnn[~test], y[~test]) for s in (False, True)}
        centred_train = _center(cnn[~test], sessions[~test], is_normal[~test])
        calibrated = {s: _lr(s, 0).fit(centred_train, y[~test]) for s in (False, True)}
        for k in KS:
            for seed in range(seeds):
                table = evaluate_sessions(model, geometry[test], te_frame, SESSION, k, seed)
                unc = evaluate_sessions(model, geometry[test], te_frame, SESSION, k, seed, fixed_reference=mean_ref)
                scored = (table["role"] == "scored").to_numpy()
                refs = (table["role"] == "reference").to_numpy()
                yt = y[test][scored]
                pose_pred = (table["prediction"][scored] == positive).to_numpy().astype(int)
                unc_pred = (unc["prediction"][scored] == positive).to_numpy().astype(int)
                x_test = cnn[test]
                x_centred = x_test - x_test[refs].mean(axis=0)
                preds = {"pose_calibrated": pose_pred, "pose_uncalibrated": unc_pred,
                         "baseline_logreg": plain[False].predict(x_test[scored]),
                         "baseline_logreg_scaled": plain[True].predict(x_test[scored]),
                         "baseline_logreg_calibrated": calibrated[False].predict(x_centred[scored]),
                         "baseline_logreg_scaled_calibrated": calibrated[True].predict(x_centred[scored])}
                for m, p in preds.items():
                    raw[m][k][seed][f["name"]] = (yt, np.asarray(p, int))
        log.info("fold %s done", f["name"])
    fold_names = [f["name"] for f in folds]
    summary: dict[str, Any] = {}
    for m in methods:
        summary[m] = {}
        for k in KS:
            per_seed = []
            for seed in range(seeds):
                folds_s = {n: _scores(*raw[m][k][seed][n]) for n in fold_names}
                yy = np.concatenate([raw[m][k][seed][n][0] for n in fold_names])
                pp = np.concatenate([raw[m][k][seed][n][1] for n in fold_names])
                per_seed.append({"pooled": _scores(yy, pp), "folds": folds_s,
                                 "mean_fold": float(np.mean([folds_s[n]["balanced_accuracy"] for n in fold_names]))})
            summary[m][str(k)] = {
                "mean_fold_balanced_accuracy": float(np.mean([s["mean_fold"] for s in per_seed])),
                "mean_fold_min_max": [float(min(s["mean_fold"] for s in per_seed)),
                                      float(max(s["mean_fold"] for s in per_seed))],
                "pooled_balanced_accuracy": float(np.mean([s["pooled"]["balanced_accuracy"] for s in per_seed])),
                "fold_balanced_accuracy": {n: float(np.mean([s["folds"][n]["balanced_accuracy"] for s in per_seed]))
                                           for n in fold_names},
                "seed0": per_seed[0],
            }
    synth = synthetic_check(work, 120, 3)
    return {"classes": classes, "ingest": ingest_info, "folds": fold_names, "synthetic_check": synth, "seeds": seeds, "ks": list(KS),
            "session_column": SESSION, "unmeasured_photos": int(np.isnan(geometry).any(axis=1).sum()),
            "landmark_ms_per_photo": round(1000 * measure_s / len(frame), 1), "results": summary,
            "seconds_total": round(time.perf_counter() - t0, 1), "machine": machine()}


def synthetic_check(work: Path, n: int, seed: int) -> dict[str, Any]:
    """Does head height track the CVA on pictures that played no part in choosing the features?

    ``posture.synth --view front`` renders webcam-like views with a known craniovertebral angle;
    the geometry features were chosen on the real photos, so this is an independent check of
    what they measure, not of the calibration."""
    import subprocess

    from sklearn.metrics import roc_auc_score

    from posture.posecal import measure

    out = work / "synth_front"
    cmd = [sys.executable, "-m", "posture.synth", str(out), "--view", "front", "--n", str(n), "--seed", str(seed),
           "--overwrite", "-q"]
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, text=True)
    import pandas as pd

    labels = pd.read_csv(out / "labels.csv")
    geometry = measure([out / f for f in labels["filename"]])
    ok = ~np.isnan(geometry).any(axis=1)
    d = labels[ok].assign(head_height=geometry[ok, 0], angle=geometry[ok, 1])
    centred = {c: d[c] - d.groupby("subject")[c].transform("mean") for c in ("head_height", "angle", "cva_deg")}
    y = (d["label"] == "forward_head").to_numpy().astype(int)
    return {"command": " ".join(["python"] + cmd[1:-2]), "n": int(len(labels)), "measured": int(ok.sum()),
            "corr_head_height_cva": float(np.corrcoef(d["head_height"], d["cva_deg"])[0, 1]),
            "corr_head_height_cva_within_subject": float(np.corrcoef(centred["head_height"], centred["cva_deg"])[0, 1]),
            "corr_angle_cva": float(np.corrcoef(d["angle"], d["cva_deg"])[0, 1]),
            "auc_head_height": float(roc_auc_score(y, -d["head_height"])),
            "auc_head_height_within_subject": float(roc_auc_score(y, -centred["head_height"]))}


def _cm(c: list[list[int]]) -> str:
    return f"[[{c[0][0]},{c[0][1]}],[{c[1][0]},{c[1][1]}]]"


def to_markdown(p: dict[str, Any]) -> str:
    folds = p["folds"]
    lines = ["# Calibrated pose vs plain baseline: real photos, leave-one-source-out", "",
             (f"`python bench/pose_calibration.py`. {p['ingest']['kept']} real photos (exact duplicates removed), "
              f"3 folds, each testing one capture session never seen in training. Calibration: k upright photos of "
              f"the test session (not scored), {p['seeds']} seeds; every other photo of the session is scored. "
              f"Uncalibrated rows score the same photos without using any photo of the test session. "
              f"Confusion matrices `[[TP_fh, FN_fh], [FP, TN]]` (rows = truth, {p['classes']}), seed 0, pooled over "
              f"folds. Landmarks: {p['landmark_ms_per_photo']} ms per photo; {p['unmeasured_photos']} photo(s) "
              "without a measurable person."), ""]
    for k in p["ks"]:
        lines += [f"## k = {k} upright photo(s) per test session", "",
                  "| method | mean fold bal. acc (min–max over seeds) | pooled bal. acc | "
                  + " | ".join(f"{n} bal. acc" for n in folds) + " | pooled confusion (seed 0) | "
                  + " | ".join(f"{n} confusion (seed 0)" for n in folds) + " |",
                  "|---|---:|---:|" + "---:|" * len(folds) + "---|" + "---|" * len(folds)]
        for m, r in p["results"].items():
            rk = r[str(k)]
            lo, hi = rk["mean_fold_min_max"]
            lines.append(f"| {m} | {rk['mean_fold_balanced_accuracy']:.3f} ({lo:.3f}–{hi:.3f}) | "
                         f"{rk['pooled_balanced_accuracy']:.3f} | "
                         + " | ".join(f"{rk['fold_balanced_accuracy'][n]:.3f}" for n in folds)
                         + f" | {_cm(rk['seed0']['pooled']['confusion_matrix'])} | "
                         + " | ".join(_cm(rk["seed0"]["folds"][n]["confusion_matrix"]) for n in folds) + " |")
        lines.append("")
    lines += ["Methods: `pose_calibrated` is `posture.posecal` (BlazePose head height over the shoulders and "
              "ear–shoulder angle, minus the session's upright reference, standardised logistic regression). "
              "`pose_uncalibrated`: the same model against the training sessions' mean reference. "
              "`baseline_logreg`: sklearn LogisticRegression defaults on frozen EfficientNet-Lite0 features "
              "(`_scaled`: StandardScaler first); `_calibrated`: the same with each session's features centred on "
              "the mean of its upright photos (training: all of them; test: the same k photos as the pose model).",
              ""]
    sc = p.get("synthetic_check")
    if sc:
        lines += ["## Independent check: synthetic front views", "",
                  (f"The two features were chosen while exploring the 93 real photos above, and with 3 sessions there is "
                   f"no untouched real test set, so those numbers are optimistic to an unknown degree. As a check of what "
                   f"the features measure, `{sc['command']}` renders webcam-like pictures with a known craniovertebral "
                   f"angle: BlazePose measured {sc['measured']} of {sc['n']}; head height correlates with the CVA at "
                   f"r = {sc['corr_head_height_cva']:.2f} (within subject {sc['corr_head_height_cva_within_subject']:.2f}; "
                   f"the ear–shoulder angle only {sc['corr_angle_cva']:.2f}) and ranks forward_head below normal with "
                   f"ROC AUC {sc['auc_head_height']:.2f} ({sc['auc_head_height_within_subject']:.2f} within subject)."),
                  ""]
    lines += [f"Compute time {p['seconds_total']} s on {p['machine']['cpu_count']} cores "
              f"(load average at start {p['machine']['load_average_at_start'][0]:.1f}).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real", default=str(DEFAULT_REAL), help="the real-photo folder (default %(default)s)")
    ap.add_argument("--work", default="/tmp/posture_pose_calibration", help="ingested copy and scratch files")
    ap.add_argument("--seeds", type=int, default=10, help="calibration draws per k (default 10)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="print the markdown, do not write bench/results")
    args = ap.parse_args(argv)
    real = Path(args.real)
    if not real.is_absolute() and not real.exists():
        real = ROOT / real
    if not (real / "manifest.csv").is_file():
        log.error("%s: no real photos (manifest.csv missing); nothing to do", real)
        return 2
    from posture.pose import pose_available

    if not pose_available():
        log.error("MediaPipe is not installed: pip install --no-deps -r requirements-pose.txt")
        return 2
    payload = run(real.resolve(), Path(args.work), args.seeds, args.threads)
    md = to_markdown(payload)
    if args.no_write:
        sys.stdout.write(md + "\n")
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pose_calibration.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS / "pose_calibration.md").write_text(md + "\n")
    log.info("wrote %s", RESULTS / "pose_calibration.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
