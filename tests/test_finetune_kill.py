"""A training run killed with SIGKILL mid-way resumes to exactly the uninterrupted result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from _finetune_helpers import make_dataset

REPO = Path(__file__).resolve().parents[1]


def _command(data: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "posture.finetune", "--data", str(data), "--out", str(out), "--model", "resnet18",
            "--weights", "none", "--epochs", "40", "--batch-size", "8", "--image-size", "32", "--workers", "0",
            "--aug-views", "1", "--patience", "0", "--head-hidden", "0", "--head-dropout", "0", "--lr", "1e-3",
            "--seed", "0", "--cache-dir", str(cache), "--extract-backend", "torch", "--device", "cpu",
            "--no-progress", "-q", *extra]


def _saved_epoch(out: Path) -> int:
    try:
        return int(json.loads((out / ".resume" / "state.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "ds")
    cache = tmp_path / "cache"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    subprocess.run(_command(data, tmp_path / "whole", cache), check=True, env=env, cwd=REPO, timeout=600)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_command(data, killed, cache), env=env, cwd=REPO)
    try:
        while proc.poll() is None and _saved_epoch(killed) < 3:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "model.safetensors").exists()  # nothing final from a killed run

    # Rerunning without --resume refuses to clobber the interrupted run; --resume continues it.
    refused = subprocess.run(_command(data, killed, cache), env=env, cwd=REPO, capture_output=True, text=True)
    assert refused.returncode == 2 and "error:" in refused.stderr and "Traceback" not in refused.stderr
    subprocess.run(_command(data, killed, cache, "--resume"), check=True, env=env, cwd=REPO, timeout=600)

    whole, resumed = load_file(str(tmp_path / "whole" / "model.safetensors")), load_file(str(killed / "model.safetensors"))
    assert whole.keys() == resumed.keys()
    assert all((whole[k] == resumed[k]).all() for k in whole)
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (tmp_path / "whole", killed)]
    assert metrics[0]["test"] == metrics[1]["test"] and metrics[0]["best_epoch"] == metrics[1]["best_epoch"]
