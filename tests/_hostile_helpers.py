"""Runs and photos for the hostile-input tests of loading, predicting and serving (built in the test)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from _pose_helpers import FakeDetector, make_pose_dataset

ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")


def train_fake_pose_run(root: Path) -> tuple[Path, Path]:
    """A pose run trained and calibrated by the real commands' functions, with the stand-in for
    BlazePose (so it needs no MediaPipe); returns ``(dataset, run)``."""
    import posture.pose.detector as pose
    from posture.inference.calibrate import CalibrateConfig, calibrate
    from posture.training.finetune import FinetuneConfig, run_finetune

    data, run = make_pose_dataset(root / "data"), root / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pose, "PoseDetector", FakeDetector)
        patch.setattr(pose, "load_blazepose", lambda: None)
        patch.setattr(pose, "pose_available", lambda: True)
        common = {"workers": 0, "progress": False, "cache_dir": str(root / "cache"), "device": "cpu"}
        run_finetune(FinetuneConfig(data=str(data), out=str(run), **common))
        calibrate(CalibrateConfig(run=run, data=data, device="cpu", backend="torch"))
    return data, run


def plain_jpeg(path: Path, megapixels: float, seed: int = 0) -> Path:
    """A smooth, low-entropy JPEG of about ``megapixels`` (4:3): huge in pixels, small on disk."""
    rng = np.random.default_rng(seed)
    width = int(round((megapixels * 1e6 * 4 / 3) ** 0.5))
    height = int(round(width * 3 / 4))
    small = (rng.uniform(60, 200, size=(12, 16, 3))).astype(np.uint8)
    picture = Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, format="JPEG", quality=80)
    return path


def jpeg_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def edit_config(run: Path, field: str, value: Any) -> None:
    """Set one field of ``run/config.json``, addressed as ``a.b[0].c``."""
    path = run / "config.json"
    config = json.loads(path.read_text())
    *parents, last = re.findall(r"[^.\[\]]+", field)
    node = config
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    node[int(last) if last.isdigit() else last] = value
    path.write_text(json.dumps(config))


def one_error_line(err: str) -> str:
    """The single ``error:`` line a user mistake prints (asserting there is exactly that and no traceback)."""
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A few dozen bytes of PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def train_real_pose_run(root: Path, n: int = 60) -> tuple[Path, Path]:
    """The README's path on a small scale: ``posture.synth`` → ``posture.ingest`` → ``posture.finetune``
    with the default ``pose`` model and the real BlazePose; returns ``(raw drop, run)``."""
    from posture.ingest.config import IngestConfig
    from posture.ingest.pipeline import ingest
    from posture.synth import SynthConfig, generate
    from posture.training.finetune import FinetuneConfig, run_finetune

    generate(SynthConfig(out=root / "raw", n=n, seed=0, workers=1))
    ingest(IngestConfig(src=root / "raw", out=root / "data", progress=False, workers=1))
    run_finetune(
        FinetuneConfig(
            data=str(root / "data"),
            out=str(root / "run"),
            workers=0,
            progress=False,
            cache_dir=str(root / "cache"),
            device="cpu",
        )
    )
    return root / "raw", root / "run"


def peak_rss_mb(command: list[str], cwd: Path) -> tuple[float, Any]:
    """Run ``command`` to the end and return its peak resident memory (MiB) and the finished process:
    measured by a fresh parent, whose only child it is (``RUSAGE_CHILDREN`` of this test process
    would also count every child an earlier test started)."""
    import subprocess
    import sys

    wrapper = (
        "import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "sys.stdout.write(p.stdout); sys.stderr.write(p.stderr); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, file=sys.stderr); "
        "sys.exit(p.returncode)"
    )
    done = subprocess.run([sys.executable, "-c", wrapper, *command], cwd=cwd, capture_output=True, text=True)
    *err, peak = done.stderr.rstrip("\n").split("\n")
    done.stderr = "\n".join(err)
    return float(peak), done
