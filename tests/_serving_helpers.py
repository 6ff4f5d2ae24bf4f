"""Tiny trained-run folders and test photos for the serving tests (predict, export, app)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from posture.data.transforms import Preprocessing
from posture.runs.checkpoint import save_checkpoint

CLASSES = ["forward_head", "normal"]
REAL_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"


def make_run(
    run_dir: Path,
    arch: str = "efficientnet_lite0",
    input_size: int = 64,
    seed: int = 0,
    calibration: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """A random-init run saved exactly like finetune saves one (safetensors + config.json).

    efficientnet_lite0 (the demo's architecture) at 64 px: small and fast, and unlike some
    random-init nets its outputs still differ from photo to photo, which threshold tests need.
    """
    from posture.models import build_model, get_preprocessing

    torch.manual_seed(seed)
    model = build_model(arch, len(CLASSES), pretrained=False)
    pre = get_preprocessing(arch)
    pre = Preprocessing(input_size=input_size, mean=pre.mean, std=pre.std, interpolation=pre.interpolation)
    config: dict[str, Any] = {
        "architecture": arch,
        "classes": CLASSES,
        "preprocessing": pre.to_dict(),
        "head": {"hidden": 0, "dropout": 0.0},
    }
    if calibration is not None:
        config["calibration"] = calibration
    return save_checkpoint(
        run_dir,
        model.state_dict(),
        config,
        metrics=metrics if metrics is not None else finetune_metrics(val_correct=7, n=8),
    )


def finetune_metrics(val_correct: int, n: int, test_correct: int | None = None) -> dict[str, Any]:
    """A ``metrics.json`` in finetune's layout (:class:`posture.evaluation.metrics.SplitMetrics` per split) whose
    validation (and test) accuracy is ``correct / n``, so card tests can recognise the numbers."""
    from posture.evaluation.metrics import classification_metrics

    def split(correct: int) -> Any:
        y = np.array([i % 2 for i in range(n)])
        decided = np.where(np.arange(n) < correct, y, 1 - y)
        proba = np.eye(2)[decided] * 0.8 + 0.1
        return classification_metrics(y, decided, proba, CLASSES)

    return {
        "classes": CLASSES,
        "val": split(val_correct),
        "test": split(test_correct) if test_correct is not None else None,
    }


def photo(seed: int = 0, size: tuple[int, int] = (96, 72)) -> np.ndarray:
    """A seeded ``H×W×3`` RGB picture: smooth gradient plus noise, so logits differ per seed."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / w, yy / h, 1 - xx / w], axis=-1) * rng.uniform(80, 255, size=3)
    return np.clip(base + rng.normal(0, 30, size=(h, w, 3)), 0, 255).astype(np.uint8)


def write_photo(path: Path, seed: int = 0, size: tuple[int, int] = (96, 72)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo(seed, size)).save(path)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AppServer:
    """``python -m app`` in a subprocess on a free loopback port, exactly as a user starts it.

    ``TMPDIR`` points into the test's folder, so the app's private upload folder can be inspected.
    """

    def __init__(
        self, run: Path | None, tmp: Path, *extra: str, module: str = "app", private_prefix: str = "posture-app-"
    ) -> None:
        """``python -m app --run RUN``; ``module="app.label"`` (and ``run=None``) serves the labeling tool."""
        import os
        import subprocess
        import sys

        self.private_prefix = private_prefix
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.tmp = tmp
        self.log_path = tmp / "app.log"
        tmp.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "TMPDIR": str(tmp), "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
        repo = Path(__file__).resolve().parents[1]
        env["PYTHONPATH"] = os.pathsep.join([str(repo), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self._log = open(self.log_path, "w")  # noqa: SIM115 (the server's log for its whole life; closed in stop())
        env.pop("GRADIO_TEMP_DIR", None)  # the app must choose its own
        command = [
            sys.executable,
            "-m",
            module,
            *([] if run is None else ["--run", str(run)]),
            "--port",
            str(self.port),
            *(["--threads", "1"] if module == "app" else []),
            *extra,
        ]
        self.proc = subprocess.Popen(command, cwd=repo, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 240.0) -> None:
        import time

        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            try:
                if httpx.get(self.url + "gradio_api/info", timeout=5).status_code == 200:
                    self._wait_log_quiet(deadline)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the app did not answer within {timeout}s:\n{self.log_path.read_text()}")

    def _wait_log_quiet(self, deadline: float, quiet: float = 1.0) -> None:
        """Until the log has not grown for ``quiet`` seconds: the server answers before Gradio's launch()
        prints its last start-up lines, which a test measuring what one request logs would count."""
        import time

        size, since = self.log_path.stat().st_size, time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - since < quiet:
            time.sleep(0.1)
            now = self.log_path.stat().st_size
            if now != size:
                size, since = now, time.monotonic()

    def private_dirs(self) -> list[Path]:
        return sorted(self.tmp.glob(self.private_prefix + "*"))

    def upload(self, path: Path) -> dict[str, Any]:
        """Upload a file as the page does (``/gradio_api/upload``); returns the reference the page then
        sends with every click of a button, for as long as the photo stays in the input."""
        import httpx

        response = httpx.post(
            f"{self.url}gradio_api/upload", files=[("files", (path.name, path.read_bytes()))], timeout=60
        )
        response.raise_for_status()
        (server_path,) = response.json()
        return {"path": server_path, "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}

    def call(self, api_name: str, data: list[Any], timeout: float = 120) -> tuple[str, Any]:
        """One event through Gradio's HTTP API: ``("complete", outputs)``, ``("error", message)``, or
        ``("refused", status)`` when the server turned the request away before queueing it."""
        import json

        import httpx

        response = httpx.post(f"{self.url}gradio_api/call/{api_name}", json={"data": data}, timeout=timeout)
        if response.status_code != 200:
            return "refused", response.status_code
        event_id = response.json()["event_id"]
        kind = ""
        with httpx.stream("GET", f"{self.url}gradio_api/call/{api_name}/{event_id}", timeout=timeout) as stream:
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    kind = line[len("event: ") :].strip()
                elif line.startswith("data: ") and kind in ("complete", "error"):
                    payload = json.loads(line[len("data: ") :])
                    return kind, (payload or {}).get("error") if kind == "error" else payload
        raise RuntimeError(f"the event stream of {api_name} ended without a result")

    def stop(self) -> int:
        import subprocess

        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return int(self.proc.returncode)


@contextlib.contextmanager
def served(run: Path | None, tmp: Path, *extra: str, **kwargs: Any) -> Iterator[AppServer]:
    """An :class:`AppServer` that answers, stopped afterwards (for module fixtures)."""
    app = AppServer(run, tmp, *extra, **kwargs)
    try:
        app.wait_ready()
        yield app
    finally:
        app.stop()


#: Debian's headless Chromium, with the flags that make it work in CI containers.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


@contextlib.contextmanager
def chromium_page(width: int = 1280, height: int = 1000, args: Sequence[str] = ()) -> Iterator[Any]:
    """A Playwright page in headless Debian Chromium, closed afterwards (browser tests only);
    ``args``: more Chromium flags (e.g. a fake webcam)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[*CHROMIUM_ARGS, *args])
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


#: File name endings of pictures and videos.
MEDIA_SUFFIXES = {
    ".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif", ".heic",
    ".y4m", ".webm", ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".ts", ".m3u8",
}  # fmt: skip


def media_kind(path: Path) -> str | None:
    """What picture or video ``path`` holds, by its content (magic bytes) or its name; ``None``: neither."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None  # gone meanwhile, or not a readable file
    signatures = {
        b"\xff\xd8\xff": "jpeg",
        b"\x89PNG": "png",
        b"GIF8": "gif",
        b"\x1aE\xdf\xa3": "webm/matroska",
        b"YUV4MPEG2": "y4m",
        b"II*\x00": "tiff",
        b"MM\x00*": "tiff",
    }
    for magic, kind in signatures.items():
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] in (b"WEBP", b"AVI "):
        return head[8:12].decode().strip().lower()
    if head[4:8] == b"ftyp":
        return "mp4/mov/avif/heic"
    if path.suffix.lower() in MEDIA_SUFFIXES:
        return f"{path.suffix.lower()} file"
    return None


def files_under(roots: Iterable[Path], skip: Iterable[Path] = ()) -> set[str]:
    """Every regular file under ``roots``, leaving out the folders in ``skip`` (for before/after snapshots)."""
    import os

    skipped = {os.path.realpath(s) for s in skip}
    found: set[str] = set()
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if os.path.realpath(os.path.join(folder, d)) not in skipped]
            found.update(os.path.join(folder, name) for name in files)
    return found


def new_media(
    before: set[str], roots: Iterable[Path], skip: Iterable[Path] = (), suspect: Callable[[Path], bool] | None = None
) -> dict[str, str]:
    """The picture and video files under ``roots`` that were not there ``before`` (``path → kind``);
    ``suspect``: only those it says could be ours (where other programs write pictures too)."""
    found = {}
    for path in sorted(files_under(roots, skip) - before):
        kind = None if Path(path).is_symlink() else media_kind(Path(path))
        if kind is not None and (suspect is None or suspect(Path(path))):
            found[path] = kind
    return found


def media_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` of a picture or video file, ``None`` where it cannot be read."""
    import cv2

    try:
        with open(path, "rb") as f:
            head = f.read(64)
        if head.startswith(b"YUV4MPEG2"):
            fields = dict((w[:1], w[1:]) for w in head.split(b"\n", 1)[0].split()[1:])
            return int(fields[b"W"]), int(fields[b"H"])
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError, KeyError, Image.DecompressionBombError):
        pass
    video = cv2.VideoCapture(str(path))
    try:
        width, height = int(video.get(cv2.CAP_PROP_FRAME_WIDTH)), int(video.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        video.release()
    return (width, height) if width and height else None
