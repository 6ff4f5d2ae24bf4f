"""``torchrun --nproc_per_node=2 -m posture.finetune``: two CPU processes (gloo) train like one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _finetune_helpers import make_dataset, one_torch_thread, small_config
from posture.finetune import run_finetune

REPO = Path(__file__).resolve().parents[1]
_ = one_torch_thread  # fixture, imported for pytest


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_two_processes_match_one(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "ds", per_class={"train": 10, "val": 5, "test": 5})
    cache = tmp_path / "cache"
    single = run_finetune(small_config(data, tmp_path / "single", cache, epochs=6, lr=1e-2))

    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "posture.finetune", "--data", str(data), "--out", str(out), "--model", "resnet18",
           "--weights", "none", "--image-size", "32", "--epochs", "6", "--batch-size", "8", "--workers", "0",
           "--aug-views", "1", "--patience", "0", "--head-hidden", "0", "--head-dropout", "0", "--lr", "1e-2",
           "--cache-dir", str(tmp_path / "ddp-cache"),
           "--extract-backend", "torch", "--device", "cpu", "--no-progress", "-q"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("run:") == 1  # only rank 0 reports

    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert config["training"]["world_size"] == 2
    assert metrics["classes"] == single["classes"]
    # Each rank extracted half of the images; together they covered all of them once.
    assert metrics["extraction"]["computed"] == single["extraction"]["computed"]
    assert single["test"]["accuracy"] >= 0.9  # the comparison below means something only if both learn
    assert abs(metrics["test"]["accuracy"] - single["test"]["accuracy"]) <= 0.1
    assert abs(metrics["val"]["balanced_accuracy"] - single["val"]["balanced_accuracy"]) <= 0.1
    assert not (out / ".resume").exists()
