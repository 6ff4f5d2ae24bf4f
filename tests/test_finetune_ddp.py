"""``torchrun --nproc_per_node=2 -m posture.finetune``: two CPU processes (gloo) train like one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from _finetune_helpers import make_dataset, small_config
from posture.training.finetune import run_finetune

if TYPE_CHECKING:
    import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_two_processes_match_one(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "ds", per_class={"train": 10, "val": 5, "test": 5})
    cache = tmp_path / "cache"
    single = run_finetune(small_config(data, tmp_path / "single", cache, epochs=6, lr=1e-2))

    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "posture.finetune",
        "--data",
        str(data),
        "--out",
        str(out),
        "--model",
        "resnet18",
        "--weights",
        "none",
        "--image-size",
        "32",
        "--epochs",
        "6",
        "--batch-size",
        "8",
        "--workers",
        "0",
        "--aug-views",
        "1",
        "--patience",
        "0",
        "--head-hidden",
        "0",
        "--head-dropout",
        "0",
        "--lr",
        "1e-2",
        "--cache-dir",
        str(tmp_path / "ddp-cache"),
        "--extract-backend",
        "torch",
        "--device",
        "cpu",
        "--no-progress",
        "-q",
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
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


def _tiny_extraction(data: str, cache: str, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    import pandas as pd
    import torch
    from torch import nn

    from posture.data.transforms import Preprocessing
    from posture.models.features import ExtractOptions, FeatureCache, FeatureSpec, extract_features

    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    spec = FeatureSpec(
        arch="tiny", weights_fingerprint="seed0", preprocessing=Preprocessing(input_size=32), aug_views=1
    )
    frame = pd.read_csv(Path(data) / "manifest.csv")
    options = ExtractOptions(
        cache=FeatureCache(cache), backend="torch", rank=rank, world_size=world_size, progress=False
    )
    return extract_features(backbone, data, frame, spec, options, num_features=4).features


def _extract_on_rank(rank: int, world_size: int, init_file: str, data: str, cache: str, out: str) -> None:
    """One gloo rank of :func:`test_ranks_agree_on_pending_images_when_one_starts_late`."""
    import time

    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        if rank == 0:
            time.sleep(3.0)  # by now rank 1 has extracted, and cached, its whole shard
        torch.save(_tiny_extraction(data, cache, rank, world_size), out.format(rank=rank))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ranks_agree_on_pending_images_when_one_starts_late(tmp_path: Path) -> None:
    """Regression: ranks share the cache folder, so a rank that reached it late found the other
    rank's freshly cached shard, split the remaining images differently, and the summed features
    came out doubled or zero (a torchrun finetune then scored lower; flaky under load)."""
    import torch
    import torch.multiprocessing as mp

    data = str(make_dataset(tmp_path / "ds", per_class={"train": 6}, size=32))
    truth = _tiny_extraction(data, str(tmp_path / "single-cache"))
    out = str(tmp_path / "features-{rank}.pt")
    mp.start_processes(
        _extract_on_rank,
        args=(2, str(tmp_path / "init"), data, str(tmp_path / "cache"), out),
        nprocs=2,
        join=True,
        start_method="spawn",
    )
    for rank in range(2):
        assert torch.allclose(torch.load(out.format(rank=rank), weights_only=True), truth, atol=1e-6)


def _landmarks_on_rank(rank: int, world_size: int, init_file: str, data: str, cache: str | None, out: str) -> None:
    """One gloo rank of :func:`test_ranks_share_the_landmark_stage`."""
    import numpy as np
    import pandas as pd
    import torch
    import torch.distributed as dist

    from _pose_helpers import FakeDetector
    from posture.models.features import FeatureCache, frame_paths
    from posture.pose.landmarks import detect_landmarks

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        paths, shas = frame_paths(Path(data), pd.read_csv(Path(data) / "manifest.csv"))
        marks = detect_landmarks(
            paths,
            shas,
            FeatureCache(cache) if cache else None,
            detector=FakeDetector(),
            progress=False,
            rank=rank,
            world_size=world_size,
        )
        np.savez(out.format(rank=rank), landmarks=np.stack(marks.landmarks), computed=marks.computed)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("cached", [True, False])
def test_ranks_share_the_landmark_stage(tmp_path: Path, cached: bool) -> None:
    """Under torchrun each rank finds the landmarks of half the photos, and both end with all of them."""
    import numpy as np
    import pandas as pd
    import torch.multiprocessing as mp

    from _pose_helpers import FakeDetector, make_pose_dataset
    from posture.models.features import frame_paths
    from posture.pose.landmarks import detect_landmarks

    data = make_pose_dataset(tmp_path / "ds", per_class={"train": 5})
    paths, shas = frame_paths(data, pd.read_csv(data / "manifest.csv"))
    truth = detect_landmarks(paths, shas, None, detector=FakeDetector(), progress=False)
    out = str(tmp_path / "marks-{rank}.npz")
    mp.start_processes(
        _landmarks_on_rank,
        args=(2, str(tmp_path / "init"), str(data), str(tmp_path / "cache") if cached else None, out),
        nprocs=2,
        join=True,
        start_method="spawn",
    )
    for rank in range(2):
        marks = np.load(out.format(rank=rank))
        assert int(marks["computed"]) == len(paths)  # the ranks' shares add up to every photo, each once
        np.testing.assert_allclose(marks["landmarks"], np.stack(truth.landmarks), atol=1e-5)
