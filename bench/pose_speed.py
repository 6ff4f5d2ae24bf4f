"""What the pose extractors cost, next to the bare calls they are made of, measured in one run.

Three ratios (timings are noisy on shared machines, so each pair is measured side by side, in
alternating rounds, and the median round is reported):

* **pose features** per photo (``posture.models.features.extract_run_features`` for the ``pose`` model,
  cold cache: decode, BlazePose, geometry, landmark-space views, cache writes) vs a **bare
  BlazePose call** (decode + one MediaPipe ``Pose.process``);
* **fused extraction** (``efficientnet_lite0+pose``, cold cache: landmarks once, the crop, the CNN
  through ONNX Runtime, the geometry) vs **bare BlazePose + a bare ONNX Runtime forward** of the same
  backbone on ready-made tensors;
* a **warm-cache rerun** of ``posture.finetune`` with the default model (seconds);
* **prediction per photo** through the ``Predictor`` (decode, landmarks, the faces that say whether
  someone else is present, geometry, the training-range check, the head, the explanation), one photo
  at a time as the CLI and the app answer, for the default ``pose`` run vs a bare BlazePose call, and
  for a CNN run with the CNN defaults (the head-and-shoulders crop, ONNX Runtime after
  ``posture.export``) vs a bare BlazePose call plus a bare ONNX Runtime forward of one photo.

    python -m bench.pose_speed                  # the real photos (../shared/data/real), or --photos DIR
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.common import machine, write_results
from posture.data.labels import CLASS_NAMES
from posture.io.formats import IMAGE_EXTENSIONS, MANIFEST_NAME

log = logging.getLogger("bench.pose_speed")
DEFAULT_REAL = Path(__file__).resolve().parent.parent / ".." / "shared" / "data" / "real"


def bare_blazepose(paths: list[Path]) -> float:
    """Seconds for decode + one ``Pose.process`` per photo (the graph built beforehand)."""
    from posture.io.images import load_rgb_array
    from posture.pose.detector import load_blazepose

    graph = load_blazepose().Pose(static_image_mode=True, model_complexity=1, min_detection_confidence=0.5)
    graph.process(load_rgb_array(paths[0]))  # build and warm the graph outside the timing
    t0 = time.perf_counter()
    for p in paths:
        graph.process(load_rgb_array(p))
    return time.perf_counter() - t0


def bare_onnx(n: int, tmp: Path) -> float:
    """Seconds for ONNX Runtime on ``n`` ready-made, preprocessed tensors (batches of 32)."""
    import onnxruntime as ort

    from posture.models import build_model
    from posture.models.features import export_backbone_onnx
    from posture.runtime.device import physical_cores

    model = build_model("efficientnet_lite0", 2).eval()
    size = model.preprocessing.input_size
    path = tmp / "bare.onnx"
    if not path.is_file():
        export_backbone_onnx(model.backbone, size, path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = physical_cores()
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal((32, 3, size, size)).astype(np.float32)
    sess.run(None, {name: x})
    t0 = time.perf_counter()
    for start in range(0, n, 32):
        sess.run(None, {name: x[: min(32, n - start)]})
    return time.perf_counter() - t0


def bare_onnx_single(n: int, tmp: Path) -> float:
    """Seconds for ``n`` single-photo ONNX Runtime forwards (batch 1), as a photo's answer needs."""
    import onnxruntime as ort

    from posture.runtime.device import physical_cores

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = physical_cores()
    sess = ort.InferenceSession(str(tmp / "bare.onnx"), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    size = sess.get_inputs()[0].shape[2]
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    sess.run(None, {name: x})
    t0 = time.perf_counter()
    for _ in range(n):
        sess.run(None, {name: x})
    return time.perf_counter() - t0


def predictor_seconds(run: Path, paths: list[Path]) -> float:
    """Seconds for the Predictor to answer each photo alone (a fresh Predictor: no landmark cache)."""
    from posture.inference.predict import Predictor

    predictor = Predictor.from_run(run)
    predictor.predict(paths[0])  # build BlazePose's and the face detector's graphs outside the timing
    predictor.detector._cache.clear()
    predictor.detector._face_cache.clear()
    t0 = time.perf_counter()
    for p in paths:
        predictor.predict(p)
    return time.perf_counter() - t0


def ours(
    model_name: str, root: Path, frame: pd.DataFrame, warmup: pd.DataFrame, cache: Path, aug_views: int = 0
) -> float:
    """Seconds for the product's extraction of ``model_name`` features of ``frame``, cold cache.

    ``warmup`` (other photos) goes first, so the one-off export of the backbone to ONNX (part of a
    cold run, but not of the per-photo cost) stays out of the timing.
    """
    import torch

    from posture.models import build_model, weights_fingerprint
    from posture.models.features import ExtractOptions, FeatureCache, FeatureSpec, extract_run_features

    model = build_model(model_name, 2)
    model.freeze_backbone()
    spec = FeatureSpec(
        arch=model_name,
        weights_fingerprint=weights_fingerprint(model_name),
        preprocessing=model.preprocessing,
        aug_views=aug_views,
    )
    options = ExtractOptions(cache=FeatureCache(cache), workers=0, progress=False)
    with torch.inference_mode():
        extract_run_features(model, root, warmup, spec, options)
        t0 = time.perf_counter()
        extract_run_features(model, root, frame, spec, options)
    return time.perf_counter() - t0


def photo_frame(root: Path, limit: int) -> pd.DataFrame:
    manifest = root / MANIFEST_NAME
    if manifest.is_file():
        frame = pd.read_csv(manifest)
    else:
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        frame = pd.DataFrame({"path": [str(p.relative_to(root)) for p in files]})
    # Spread over the whole set (a seeded sample, in file order): the first rows of a manifest may all be
    # one class and one source, which neither times a mix of cameras nor trains a two-class run.
    frame = frame.sample(n=min(limit, len(frame)), random_state=0).sort_index()
    return frame.drop(columns=["sha256"], errors="ignore").reset_index(drop=True)


def warm_rerun(root: Path, frame: pd.DataFrame, tmp: Path) -> dict[str, float]:
    """A default-model finetune twice on the same data: cold cache, then warm (the warm run is the
    pose run the prediction timing answers with); then a CNN run with the CNN defaults, exported to ONNX."""
    from posture.inference.export import ExportConfig, export_onnx
    from posture.training.finetune import FinetuneConfig, run_finetune

    data = tmp / "data"
    data.mkdir(exist_ok=True)
    for label in CLASS_NAMES:
        if (root / label).is_dir() and not (data / label).exists():
            (data / label).symlink_to(root.resolve() / label, target_is_directory=True)
    labelled = frame.copy()
    labelled["label"] = labelled["path"].str.split("/").str[0]
    labelled["split"] = np.where(np.arange(len(labelled)) % 5 == 0, "val", "train")
    labelled.to_csv(data / MANIFEST_NAME, index=False)
    out = {}
    for name in ("cold", "warm"):
        t0 = time.perf_counter()
        run_finetune(
            FinetuneConfig(
                data=str(data),
                out=str(tmp / f"run_{name}"),
                cache_dir=str(tmp / "finetune-cache"),
                progress=False,
                workers=0,
                overwrite=True,
            )
        )
        out[f"{name}_s"] = round(time.perf_counter() - t0, 2)
    run_finetune(
        FinetuneConfig(
            data=str(data),
            out=str(tmp / "run_cnn"),
            model="efficientnet_lite0",
            cache_dir=str(tmp / "finetune-cache"),
            progress=False,
            workers=0,
            overwrite=True,
        )
    )
    export_onnx(ExportConfig(run_dir=tmp / "run_cnn"))
    return out


def run(root: Path, limit: int, rounds: int) -> dict[str, Any]:
    everything = photo_frame(root, limit + 2)
    frame, warmup = everything.head(limit).reset_index(drop=True), everything.tail(2).reset_index(drop=True)
    paths = [root / p for p in frame["path"]]
    n = len(paths)
    rows = []
    with tempfile.TemporaryDirectory(prefix="posture-pose-speed-") as tmp_name:
        tmp = Path(tmp_name)
        bare_onnx(32, tmp)  # export once, outside the rounds
        rerun = warm_rerun(root, frame, tmp)
        for r in range(rounds):
            fusion = "efficientnet_lite0+pose"
            row = {
                "bare_blazepose_s": bare_blazepose(paths),
                "pose_s": ours("pose", root, frame, warmup, tmp / f"cache-pose-{r}"),
                "bare_onnx_s": bare_onnx(n, tmp),
                "fusion_s": ours(fusion, root, frame, warmup, tmp / f"cache-fusion-{r}"),
                "pose_4views_s": ours("pose", root, frame, warmup, tmp / f"cache-pose4-{r}", aug_views=4),
                "fusion_4views_s": ours(fusion, root, frame, warmup, tmp / f"cache-fusion4-{r}", aug_views=4),
                "predict_pose_s": predictor_seconds(tmp / "run_warm", paths),
                "bare_onnx_single_s": bare_onnx_single(n, tmp),
                "predict_cnn_s": predictor_seconds(tmp / "run_cnn", paths),
            }
            rows.append(row)
            log.info("round %d: %s", r, {k: round(v, 2) for k, v in row.items()})

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    pose_ratio = statistics.median(r["pose_s"] / r["bare_blazepose_s"] for r in rows)
    fusion_ratio = statistics.median(r["fusion_s"] / (r["bare_blazepose_s"] + r["bare_onnx_s"]) for r in rows)
    predict_pose = statistics.median(r["predict_pose_s"] / r["bare_blazepose_s"] for r in rows)
    predict_cnn = statistics.median(
        r["predict_cnn_s"] / (r["bare_blazepose_s"] + r["bare_onnx_single_s"]) for r in rows
    )
    return {
        "photos": n,
        "rounds": rows,
        "ms_per_photo": {k.removesuffix("_s"): round(1000 * med(k) / n, 1) for k in rows[0]},
        "pose_vs_bare_blazepose": round(pose_ratio, 3),
        "fusion_vs_bare_sum": round(fusion_ratio, 3),
        "predict_pose_vs_bare_blazepose": round(predict_pose, 3),
        "predict_cnn_vs_bare_sum": round(predict_cnn, 3),
        "finetune_rerun": rerun,
        "machine": machine(),
    }


def to_markdown(p: dict[str, Any]) -> str:
    ms = p["ms_per_photo"]
    return "\n".join(
        [
            "# Pose extractors: cost next to the bare calls",
            "",
            f"`python -m bench.pose_speed`: {p['photos']} photos, {len(p['rounds'])} alternating rounds, median "
            "round shown; cold feature caches in every round (the backbone's one-off ONNX export kept out of the "
            "per-photo timing). Ratios compare one view per photo, like the bare calls; the default 4 augmented "
            "views (landmark space for the geometry, pixels for the CNN) are shown below.",
            "",
            "| what | ms per photo |",
            "|---|---:|",
            f"| bare BlazePose (decode + `Pose.process`) | {ms['bare_blazepose']} |",
            f"| `pose` features (ours: landmarks, geometry, views, cache) | {ms['pose']} |",
            f"| bare ONNX Runtime backbone (ready tensors, batch 32) | {ms['bare_onnx']} |",
            f"| `efficientnet_lite0+pose` fused extraction (ours) | {ms['fusion']} |",
            f"| `pose`, + 4 augmented views in landmark space | {ms['pose_4views']} |",
            f"| `efficientnet_lite0+pose`, + 4 augmented CNN views | {ms['fusion_4views']} |",
            f"| bare ONNX Runtime backbone, one photo at a time (batch 1) | {ms['bare_onnx_single']} |",
            f"| `Predictor` answering one photo, default `pose` run | {ms['predict_pose']} |",
            f"| `Predictor` answering one photo, CNN defaults (crop, ONNX Runtime) | {ms['predict_cnn']} |",
            "",
            f"- prediction per photo, default `pose` run, vs a bare BlazePose call: "
            f"**{p['predict_pose_vs_bare_blazepose']:.2f}×** (aim ≤ 1.3×; ours also looks for other people's "
            "faces, checks the training range and explains the answer)",
            f"- prediction per photo, CNN defaults, vs bare BlazePose + a bare batch-1 ORT forward: "
            f"**{p['predict_cnn_vs_bare_sum']:.2f}×** (aim ≤ 1.3×)",
            f"- pose features vs a bare BlazePose call: **{p['pose_vs_bare_blazepose']:.2f}×** (aim ≤ 1.3×)",
            f"- fused extraction vs bare BlazePose + bare ORT backbone: **{p['fusion_vs_bare_sum']:.2f}×** "
            "(aim ≤ 1.3×; ours also decodes each photo for the CNN, crops, resizes and normalises it)",
            "- `posture.finetune` with the defaults on these photos: "
            f"cold cache {p['finetune_rerun']['cold_s']:.1f} s, "
            f"warm-cache rerun **{p['finetune_rerun']['warm_s']:.1f} s**",
            "",
            f"Machine: {p['machine']['cpu_count']} cores, load average at start "
            f"{p['machine']['load_average_at_start'][0]:.1f}.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_REAL, help="photo folder (default: the real photos)")
    parser.add_argument("--limit", type=int, default=96, help="photos per round (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("posture").setLevel(logging.WARNING)
    if not args.photos.is_dir():
        log.error("error: %s is not a folder", args.photos)
        return 2
    payload = run(args.photos.resolve(), args.limit, args.rounds)
    paths = write_results("pose_speed", payload, to_markdown(payload))
    log.info("wrote %s", ", ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
