"""Serving speed, all measured in one run on the same photos: bare forward, Predictor, app under load.

What each number answers:

* **bare forward** (batch 1, one preprocessed photo): PyTorch eager (channels-last, inference mode)
  against ONNX Runtime (all graph optimisations) on the *same* ``model.onnx`` export the app
  uses. Torch and ONNX calls alternate, so machine noise hits both alike; the ratio is the result.
* **Predictor end to end** (one photo file → :class:`~posture.inference.predict.Prediction`: decode, EXIF,
  letterbox, normalise, forward, softmax, threshold) for both backends, p50/p95, and its ratio to
  the bare ONNX forward (how much the plumbing around the model costs).
* **batch throughput**: ``predict_many`` over all photos at batch size 16, images per second.
* **load test**: ``python -m app`` started on 127.0.0.1 (auto backend → ONNX, default concurrency
  limit 2), ``--requests`` calls of the ``/classify`` API (upload + queue + predict + answer,
  Grad-CAM off) from ``--clients`` concurrent gradio_client clients: errors, p50/p95/p99, req/s.
  A few more calls with Grad-CAM on show its price.

Uses ``models/sample`` when it exists, else a random-init efficientnet_lite0 run (timing does not
depend on the weights); the run is copied to a temporary folder and exported there, so the
benchmark never writes into ``models/``. Photos: ``../shared/data/real`` when present (real JPEGs
up to 512 px), else synthetic pictures. Writes ``bench/results/serve.json|md``.

    python -m bench.serve                         # defaults: 200 requests at concurrency 8
    python -m bench.serve --run models/other --requests 500 --clients 16
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import machine, write_results
from posture.cli import UserError, add_logging_flags, run_main, setup_logging
from posture.data.labels import CLASS_NAMES
from posture.io.formats import CONFIG_NAME, IMAGE_EXTENSIONS, METRICS_NAME, WEIGHTS_NAME

log = logging.getLogger("bench.serve")
ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT.parent / "shared" / "data" / "real"


@dataclass
class ServeBenchConfig:
    run: Path | None = None  # default: models/sample, else a random-init efficientnet_lite0
    images: Path | None = None  # default: ../shared/data/real, else synthetic
    n_images: int = 48
    repeats: int = 50
    batch_size: int = 16
    requests: int = 200
    clients: int = 8
    cam_requests: int = 10
    threads: int | None = None  # default: physical cores
    app_concurrency: int = 2
    keep_work: bool = False


def percentiles(samples_s: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(samples_s, dtype=np.float64) * 1000.0
    if ms.size == 0:
        return {"n": 0}
    return {
        "n": int(ms.size),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "min_ms": float(ms.min()),
    }


def alternate(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 3) -> dict[str, list[float]]:
    """Time each function ``repeats`` times, taking turns, so load spikes hit all of them alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def prepare_run(cfg: ServeBenchConfig, work: Path) -> tuple[Path, str]:
    """Copy the run (weights, config, metrics) into ``work`` and export ONNX there."""
    from posture.inference.export import ExportConfig, export_onnx

    source = cfg.run or (ROOT / "models" / "sample")
    dest = work / "run"
    if (source / WEIGHTS_NAME).is_file():
        dest.mkdir(parents=True)
        for name in (WEIGHTS_NAME, CONFIG_NAME, METRICS_NAME):
            if (source / name).is_file():
                shutil.copy2(source / name, dest / name)
        origin = str(source)
    elif cfg.run is not None:
        raise UserError(f"{cfg.run}: not a trained run")
    else:
        import torch

        from posture.models import build_model, get_preprocessing
        from posture.runs.checkpoint import save_checkpoint

        torch.manual_seed(0)
        model = build_model("efficientnet_lite0", 2, pretrained=False)
        save_checkpoint(
            dest,
            model.state_dict(),
            {
                "architecture": "efficientnet_lite0",
                "classes": list(CLASS_NAMES),
                "preprocessing": get_preprocessing("efficientnet_lite0").to_dict(),
                "head": {"hidden": 0, "dropout": 0.0},
            },
        )
        origin = "random-init efficientnet_lite0 (models/sample absent)"
    time.sleep(0.01)  # the export must be strictly newer than the weights for backend=auto
    result = export_onnx(ExportConfig(run_dir=dest))
    log.info("exported %s (parity max |Δp| %.2g)", result.path, result.max_abs_diff)
    return dest, origin


def load_images(cfg: ServeBenchConfig, work: Path) -> tuple[list[Path], str]:
    folder = cfg.images or (REAL if REAL.is_dir() else None)
    if folder is not None:
        files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if files:
            step = max(1, len(files) // cfg.n_images)
            return files[::step][: cfg.n_images], str(folder)
    from PIL import Image

    from posture.inference.export import synthetic_images

    out = []
    for i, rgb in enumerate(synthetic_images(cfg.n_images, seed=1)):
        path = work / "images" / f"synthetic_{i:03d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(path, quality=90)
        out.append(path)
    return out, "synthetic (export.synthetic_images)"


def bench_in_process(cfg: ServeBenchConfig, run: Path, images: list[Path], threads: int) -> dict[str, Any]:
    """Network alone vs Predictor end to end, torch vs ONNX, in one alternating loop.

    For a run that reads landmarks (``pose``, fusions, ``--crop pose``) the Predictor also runs
    BlazePose, so a bare BlazePose call joins the loop and the plumbing ratio is taken over
    BlazePose + the bare ONNX forward. Its detectors keep no cache: with 48 photos cycled, cached
    landmarks would time a dictionary lookup instead of the pose model a new visitor's photo meets.
    """
    from posture.inference.predict import Predictor
    from posture.io.images import load_rgb_array
    from posture.pose.detector import PoseDetector

    uncached = PoseDetector(cache_size=0)  # builds its graph on first use: a CNN run never does
    torch_pred = Predictor.from_run(run, backend="torch", threads=threads, detector=uncached)
    onnx_pred = Predictor.from_run(run, backend="onnx", threads=threads, detector=uncached)
    detector = uncached if torch_pred.needs_landmarks else None
    analyses = (torch_pred.analyse(path) for path in images)
    x = torch_pred.inputs([next(a for a in analyses if a.reason is None)])
    counter = {"i": 0}

    def next_image() -> Path:
        counter["i"] += 1
        return images[counter["i"] % len(images)]

    # All of them take turns in one loop, so every ratio compares numbers from the same moments.
    log.info(
        "bare forward (batch 1) and Predictor end to end (one photo file per call), %d rounds, %d thread(s)",
        cfg.repeats,
        threads,
    )
    calls: dict[str, Callable[[], Any]] = {
        "forward_torch": lambda: torch_pred.backend.logits(x),
        "forward_onnx": lambda: onnx_pred.backend.logits(x),
        "e2e_torch": lambda: torch_pred.predict(next_image()),
        "e2e_onnx": lambda: onnx_pred.predict(next_image()),
    }
    if detector is not None:
        calls["blazepose"] = lambda: detector.detect(load_rgb_array(next_image()))
    times = alternate(calls, cfg.repeats)
    fwd = {"torch": times["forward_torch"], "onnx": times["forward_onnx"]}
    e2e = {"torch": times["e2e_torch"], "onnx": times["e2e_onnx"]}
    log.info("batch throughput over %d photos", len(images))
    through: dict[str, dict[str, float]] = {}
    for name, pred in (("torch", torch_pred), ("onnx", onnx_pred)):
        pred.predict_many(images[: cfg.batch_size], batch_size=cfg.batch_size)  # warm-up
        start = time.perf_counter()
        pred.predict_many(images, batch_size=cfg.batch_size)
        elapsed = time.perf_counter() - start
        through[name] = {"images": len(images), "seconds": elapsed, "images_per_s": len(images) / elapsed}
    f, e = {k: percentiles(v) for k, v in fwd.items()}, {k: percentiles(v) for k, v in e2e.items()}
    bare = f["onnx"]["p50_ms"]
    out: dict[str, Any] = {"forward_batch1": f, "predictor_e2e": e, "batch_throughput": through}
    if detector is not None:
        out["bare_blazepose"] = percentiles(times["blazepose"])
        bare += out["bare_blazepose"]["p50_ms"]
    out["ratios"] = {
        "onnx_speedup_bare_forward_p50": f["torch"]["p50_ms"] / f["onnx"]["p50_ms"],
        "onnx_speedup_predictor_e2e_p50": e["torch"]["p50_ms"] / e["onnx"]["p50_ms"],
        "onnx_speedup_batch_throughput": through["onnx"]["images_per_s"] / through["torch"]["images_per_s"],
        "predictor_e2e_over_bare_p50": e["onnx"]["p50_ms"] / bare,
    }
    return out


def start_app(run: Path, port: int, work: Path, cfg: ServeBenchConfig, threads: int) -> subprocess.Popen:
    import os

    env = {**os.environ, "TMPDIR": str(work), "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(ROOT)}
    log_file = open(work / "app.log", "w")  # noqa: SIM115 - lives as long as the server
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app",
            "--run",
            str(run),
            "--port",
            str(port),
            "--examples",
            "0",
            "--threads",
            str(threads),
            "--concurrency",
            str(cfg.app_concurrency),
            "-q",
        ],
        cwd=ROOT,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with code {proc.returncode}")
        try:
            if httpx.get(url + "gradio_api/info", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the app did not come up")


def stop_app(proc: subprocess.Popen) -> None:
    """Stop the app as a user would (SIGTERM, so it removes its private folder), killing it after 30 s."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def load_test(url: str, images: list[Path], n_requests: int, clients: int, explain: bool) -> dict[str, Any]:
    """``n_requests`` calls from ``clients`` threads, each with its own gradio_client Client."""
    from gradio_client import Client, handle_file

    local = threading.local()
    downloads = Path(tempfile.mkdtemp(prefix="bench-serve-dl-"))

    def one(i: int) -> tuple[float, str | None]:
        if not hasattr(local, "client"):
            local.client = Client(url, verbose=False, download_files=str(downloads))
        start = time.perf_counter()
        try:
            value, _, _ = local.client.predict(handle_file(str(images[i % len(images)])), explain, api_name="/classify")
            error = None if value.get("label") else "no label"
        except Exception as exc:  # noqa: BLE001 - every failure is a data point here
            error = f"{type(exc).__name__}: {exc}"[:200]
        return time.perf_counter() - start, error

    def connect(_: int) -> None:
        if not hasattr(local, "client"):
            local.client = Client(url, verbose=False, download_files=str(downloads))

    with ThreadPoolExecutor(clients) as pool:  # create the clients before the clock starts
        list(pool.map(connect, range(clients * 4)))
        start = time.perf_counter()
        results = list(pool.map(one, range(n_requests)))
        wall = time.perf_counter() - start
    shutil.rmtree(downloads, ignore_errors=True)
    errors = [e for _, e in results if e]
    return {
        "requests": n_requests,
        "clients": clients,
        "grad_cam": explain,
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:3],
        "wall_s": wall,
        "requests_per_s": n_requests / wall,
        "latency": percentiles([t for t, e in results if not e]),
    }


def bench_app(cfg: ServeBenchConfig, run: Path, images: list[Path], threads: int, work: Path) -> dict[str, Any]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    proc = start_app(run, port, work, cfg, threads)
    try:
        t0 = time.perf_counter()
        wait_ready(url, proc)
        started = time.perf_counter() - t0
        log.info("app up in %.1fs; load test: %d requests from %d clients", started, cfg.requests, cfg.clients)
        load = load_test(url, images, cfg.requests, cfg.clients, explain=False)
        cam = load_test(url, images, cfg.cam_requests, min(cfg.clients, 2), explain=True) if cfg.cam_requests else None
    finally:
        stop_app(proc)
    return {
        "startup_s": started,
        "load": load,
        "with_grad_cam": cam,
        "app_concurrency_limit": cfg.app_concurrency,
        "threads_per_request": threads,
    }


def in_process_rows(threads: str, ip: dict[str, Any], batch_size: int) -> list[str]:
    """The markdown table rows of one thread count's in-process measurements."""
    f, e, t, r = ip["forward_batch1"], ip["predictor_e2e"], ip["batch_throughput"], ip["ratios"]
    return [
        f"| {threads} | bare forward, batch 1, p50 | {f['torch']['p50_ms']:.1f} ms | {f['onnx']['p50_ms']:.1f} ms | "
        f"{r['onnx_speedup_bare_forward_p50']:.2f}× |",
        f"| {threads} | bare forward, batch 1, p95 | {f['torch']['p95_ms']:.1f} ms | {f['onnx']['p95_ms']:.1f} ms | |",
        f"| {threads} | Predictor end to end (file → label), p50 | {e['torch']['p50_ms']:.1f} ms | "
        f"{e['onnx']['p50_ms']:.1f} ms | {r['onnx_speedup_predictor_e2e_p50']:.2f}× |",
        f"| {threads} | Predictor end to end, p95 | {e['torch']['p95_ms']:.1f} ms | {e['onnx']['p95_ms']:.1f} ms | |",
        f"| {threads} | batch throughput (batch {batch_size}) | {t['torch']['images_per_s']:.1f} img/s | "
        f"{t['onnx']['images_per_s']:.1f} img/s | {r['onnx_speedup_batch_throughput']:.2f}× |",
    ] + (
        [f"| {threads} | bare BlazePose (decode + detect, no cache), p50 | {b['p50_ms']:.1f} ms | | |"]
        if (b := ip.get("bare_blazepose"))
        else []
    )


def markdown(result: dict[str, Any]) -> str:
    app = result.get("app")
    lines = [
        "# Serving benchmark (`python -m bench.serve`)",
        "",
        f"Run: {result['run_origin']} ({result['architecture']}, "
        + ("posture geometry, no pixels" if result.get("extractor") == "pose" else f"{result['input_size']} px")
        + "). "
        f"Photos: {result['images_origin']} ({result['n_images']} files). Physical cores: {result['threads']}. "
        f"Load average at start: {result['machine']['load_average_at_start']}. "
        "Other jobs share this machine, so compare the **ratios** (measured side by side) more than the "
        "absolute times; with other jobs running, more threads than free cores makes eager PyTorch's "
        "OpenMP workers spin against each other, which the 1-thread rows avoid.",
        "",
        "| threads | measurement | torch | ONNX Runtime | ONNX speed-up |",
        "|---:|---|---:|---:|---:|",
    ]
    for key, ip in result["in_process"].items():
        lines += in_process_rows(key.split("=")[1], ip, result["config"]["batch_size"])
    lines.append("")
    for key, ip in result["in_process"].items():
        r = ip["ratios"]
        bare = "bare BlazePose + bare ONNX forward" if "bare_blazepose" in ip else "bare ONNX forward"
        lines.append(
            f"- {key}: Predictor end to end over {bare} (p50) "
            f"**{r['predictor_e2e_over_bare_p50']:.2f}×** (target ≤ 1.3×); ONNX over torch eager, "
            f"bare forward **{r['onnx_speedup_bare_forward_p50']:.2f}×** (target ≥ 2×)."
        )
    if app:
        ld, lat = app["load"], app["load"]["latency"]
        lines += [
            "",
            "## The app under load",
            "",
            f"`python -m app` on 127.0.0.1 (ONNX backend, concurrency limit {app['app_concurrency_limit']}, "
            f"{app['threads_per_request']} thread(s) per request, "
            f"started in {app['startup_s']:.0f} s): {ld['requests']} `/classify` calls (upload + queue + "
            f"predict, Grad-CAM off) from {ld['clients']} concurrent clients.",
            "",
            "| errors | p50 | p95 | p99 | throughput |",
            "|---:|---:|---:|---:|---:|",
            f"| {ld['errors']} | {lat.get('p50_ms', float('nan')):.0f} ms | {lat.get('p95_ms', float('nan')):.0f} ms"
            f" | {lat.get('p99_ms', float('nan')):.0f} ms | {ld['requests_per_s']:.1f} req/s |",
        ]
        cam = app.get("with_grad_cam")
        if cam:
            lines += [
                "",
                "With explanations on (Grad-CAM for a CNN, the landmarks drawn for a pose run; "
                f"{cam['requests']} calls, {cam['clients']} clients): p50 "
                f"{cam['latency'].get('p50_ms', float('nan')):.0f} ms, errors {cam['errors']}.",
            ]
        if ld["errors"]:
            lines += ["", f"Error examples: {ld['error_examples']}"]
    return "\n".join(lines)


def run_bench(cfg: ServeBenchConfig, with_app: bool = True) -> dict[str, Any]:
    from posture.runs.checkpoint import read_config
    from posture.runtime.device import physical_cores

    threads = cfg.threads or physical_cores()
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    try:
        run, origin = prepare_run(cfg, work)
        images, images_origin = load_images(cfg, work)
        config = read_config(run)
        result: dict[str, Any] = {
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
            "machine": machine(),
            "run_origin": origin,
            "architecture": config["architecture"],
            "input_size": config["preprocessing"]["input_size"],
            "extractor": config.get("extractor", "cnn"),
            "images_origin": images_origin,
            "n_images": len(images),
            "threads": threads,
            # Thread counts run one after the other (torch's is process-wide); within each, torch
            # and ONNX take turns. 1 thread is the contention-free comparison on a shared machine.
            "in_process": {f"threads={n}": bench_in_process(cfg, run, images, n) for n in sorted({1, threads})},
        }
        if with_app:
            app_threads = max(1, threads // cfg.app_concurrency)  # what `python -m app` picks by default
            result["app"] = bench_app(cfg, run, images, app_threads, work)
        result["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return result
    finally:
        if not cfg.keep_work:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=None, help="run folder (default models/sample, else random init)")
    parser.add_argument("--images", type=Path, default=None, help="photo folder (default ../shared/data/real)")
    parser.add_argument("--n-images", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=50, help="timed rounds per thread count (default 50)")
    parser.add_argument("--requests", type=int, default=200, help="load-test requests (default 200)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent load-test clients (default 8)")
    parser.add_argument("--cam-requests", type=int, default=10, help="extra requests with Grad-CAM on (0: skip)")
    parser.add_argument("--threads", type=int, default=None, help="inference threads (default: physical cores)")
    parser.add_argument("--no-app", action="store_true", help="skip the load test of the running app")
    parser.add_argument("--keep-work", action="store_true", help="keep the temporary folder (app log, export)")
    add_logging_flags(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would drown the report
    cfg = ServeBenchConfig(
        run=args.run,
        images=args.images,
        n_images=args.n_images,
        repeats=args.repeats,
        requests=args.requests,
        clients=args.clients,
        cam_requests=args.cam_requests,
        threads=args.threads,
        keep_work=args.keep_work,
    )
    result = run_bench(cfg, with_app=not args.no_app)
    jpath, mpath = write_results("serve", result, markdown(result))
    print(markdown(result))
    print(f"\nwrote {jpath} and {mpath}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
