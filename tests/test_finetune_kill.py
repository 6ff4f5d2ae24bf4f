"""A training run killed with SIGKILL mid-way resumes to exactly the uninterrupted result.

Killed at a random moment, and at fixed points around each rename of the resume state, where a
state written as two files used to tear (new tensors beside old metadata: a silently different run);
and during the final write of the run folder, whose staging folder a rerun used to leave behind
for good (issue #27, item 13).
"""

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
from posture.runs.resume import read_meta

REPO = Path(__file__).resolve().parents[1]


def _command(data: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
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
        "--epochs",
        "40",
        "--batch-size",
        "8",
        "--image-size",
        "32",
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
        "1e-3",
        "--seed",
        "0",
        "--cache-dir",
        str(cache),
        "--extract-backend",
        "torch",
        "--device",
        "cpu",
        "--no-progress",
        "-q",
        *extra,
    ]


def _saved_epoch(out: Path) -> int:
    meta = read_meta(out)  # the header only: cheap enough to poll
    return int(meta["epoch"]) if meta else 0


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(data, feature cache, the run trained without interruption), shared by the kill tests."""
    tmp = tmp_path_factory.mktemp("kill")
    data, cache = make_dataset(tmp / "ds"), tmp / "cache"
    subprocess.run(_command(data, tmp / "whole", cache), check=True, env=ENV, cwd=REPO, timeout=600)
    return data, cache, tmp / "whole"


def _assert_same_run(whole: Path, resumed_dir: Path) -> None:
    whole_w, resumed = load_file(str(whole / "model.safetensors")), load_file(str(resumed_dir / "model.safetensors"))
    assert whole_w.keys() == resumed.keys()
    assert all((whole_w[k] == resumed[k]).all() for k in whole_w)
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (whole, resumed_dir)]
    assert metrics[0]["test"] == metrics[1]["test"] and metrics[0]["best_epoch"] == metrics[1]["best_epoch"]
    assert not (resumed_dir / ".resume").exists()


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted(uninterrupted: tuple[Path, Path, Path], tmp_path: Path) -> None:
    data, cache, whole = uninterrupted
    env = ENV
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
    _assert_same_run(whole, killed)


@pytest.mark.slow
@pytest.mark.parametrize(("nth", "when"), [(1, "before"), (3, "after"), (4, "before"), (6, "after")])
def test_sigkill_around_a_resume_state_rename_then_resume_equals_uninterrupted(
    uninterrupted: tuple[Path, Path, Path], tmp_path: Path, nth: int, when: str
) -> None:
    """Killed just before / after the n-th rename into .resume/ (for a two-file state, some of
    these fall between the tensors and the metadata of one epoch)."""
    data, cache, whole = uninterrupted
    killed = tmp_path / "killed"
    wrapper = [sys.executable, str(REPO / "tests" / "_kill_at_rename.py"), str(nth), when]
    proc = subprocess.run(wrapper + _command(data, killed, cache)[3:], env=ENV, cwd=REPO, timeout=600)
    assert proc.returncode == -signal.SIGKILL
    subprocess.run(_command(data, killed, cache, "--resume"), check=True, env=ENV, cwd=REPO, timeout=600)
    _assert_same_run(whole, killed)


def _beside(run: Path) -> list[Path]:
    """What lies beside the run folder under its name: staging and set-aside folders."""
    return sorted(p for p in run.parent.iterdir() if p.name.startswith(f".{run.name}."))


@pytest.mark.slow
@pytest.mark.parametrize(("point", "flag"), [("staging", "--resume"), ("swap", "--resume"), ("staging", "--overwrite")])
def test_killed_during_the_final_write_a_rerun_cleans_up_and_spares_a_live_writer(
    uninterrupted: tuple[Path, Path, Path], tmp_path: Path, point: str, flag: str
) -> None:
    """Killed while the finished run is written beside ``--out`` (``staging``) or swapped in (``swap``:
    the previous folder, which holds the resume state, already set aside): a ``--resume`` or
    ``--overwrite`` run removes what the kill left, restores what it set aside, and finishes as
    the uninterrupted run did; a staging folder of a writer that still runs is left alone."""
    data, cache, whole = uninterrupted
    killed = tmp_path / "killed"
    wrapper = [sys.executable, str(REPO / "tests" / "_kill_in_final_write.py"), point]
    proc = subprocess.run(wrapper + _command(data, killed, cache)[3:], env=ENV, cwd=REPO, timeout=600)
    assert proc.returncode == -signal.SIGKILL
    assert _beside(killed), "the kill left nothing beside the run folder"
    live = tmp_path / f".killed.partial-{os.getpid()}-inprogress"  # this test process runs: a live writer's
    (live / "images").mkdir(parents=True)
    subprocess.run(_command(data, killed, cache, flag), check=True, env=ENV, cwd=REPO, timeout=600)
    _assert_same_run(whole, killed)
    assert _beside(killed) == [live] and (live / "images").is_dir()
