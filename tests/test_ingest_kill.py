"""An ingest killed (SIGKILL or a plain ``kill``) leaves no process behind, and a rerun into the same
``--out`` works at once (issue #27, item 1).

Its decoding workers used to live on as orphans, holding the output folder's lock, so every rerun
said "another ingest (process <dead pid>) is writing" until someone found and killed them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from _ingest_helpers import class_tree
from posture.io.csvcells import read_csv

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
#: Images in the drop: enough that the workers still have most of them queued at the first result.
PER_CLASS = 60


@pytest.fixture(scope="module")
def drop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return class_tree(tmp_path_factory.mktemp("kill-drop") / "drop", per_class=PER_CLASS)


def _ingest_args(src: Path, out: Path) -> list[str]:
    return [str(src), "--out", str(out), "--workers", "2", "--no-progress", "-q"]


def _still_running(recorded: list[dict[str, float]]) -> list[psutil.Process]:
    """The recorded processes that still run (a zombie has ended; a reused pid is another process)."""
    running = []
    for entry in recorded:
        try:
            proc = psutil.Process(int(entry["pid"]))
            if proc.create_time() == entry["create_time"] and proc.status() != psutil.STATUS_ZOMBIE:
                running.append(proc)
        except psutil.NoSuchProcess:
            pass
    return running


def _strays(recorded: list[dict[str, float]], patience_s: float = 60.0) -> list[psutil.Process]:
    """What still runs of ``recorded`` once the kernel had time to deliver their death signals.

    ``patience_s`` only bounds a failing test: a worker that outlives its parent never ends.
    """
    deadline = time.monotonic() + patience_s
    while (running := _still_running(recorded)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return running


def _kill_leftovers(recorded: list[dict[str, float]]) -> None:
    """So that a failing run of this test (the old code) does not leave orphans on the machine."""
    for proc in _still_running(recorded):
        with contextlib.suppress(psutil.Error):
            proc.kill()


def _assert_rerun_succeeds(src: Path, out: Path) -> None:
    """Right after the kill, the same command into the same ``--out`` finishes, and cleans up."""
    rerun = subprocess.run(
        [sys.executable, "-m", "posture.ingest", *_ingest_args(src, out)],
        env=ENV,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert len(read_csv(out / "manifest.csv")) == 2 * PER_CLASS
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "point", "start"),
    [
        ("SIGKILL", "decoding", "fork"),
        ("SIGKILL", "decoded", "fork"),
        ("SIGKILL", "writing", "fork"),
        ("SIGTERM", "decoding", "fork"),
        ("SIGTERM", "decoded", "fork"),
        ("SIGKILL", "decoding", "forkserver"),
        ("SIGTERM", "decoding", "forkserver"),
    ],
)
def test_an_ingest_killed_at_a_point_leaves_no_process_and_a_rerun_works(
    drop: Path, tmp_path: Path, sig: str, point: str, start: str
) -> None:
    out, record = tmp_path / "out", tmp_path / "started.json"
    wrapper = [sys.executable, str(REPO / "tests" / "_kill_ingest_at.py"), str(record), sig, point, start]
    killed = subprocess.run(wrapper + _ingest_args(drop, out), env=ENV, cwd=REPO, timeout=300)
    assert killed.returncode == -signal.Signals[sig], "the ingest was not killed where the test meant to"
    started = json.loads(record.read_text())
    if point != "writing":
        assert len(started) >= 2, "the ingest had started no decoding workers"
    try:
        _assert_rerun_succeeds(drop, out)
        assert _strays(started) == []
    finally:
        _kill_leftovers(started)


@pytest.mark.slow
@pytest.mark.parametrize("sig_name", ["SIGKILL", "SIGTERM"])
def test_an_ingest_killed_from_outside_while_decoding(drop: Path, tmp_path: Path, sig_name: str) -> None:
    """The user's way: ``kill`` (or ``kill -9``) from a shell once images appear in the staging folder."""
    out, sig = tmp_path / "out", signal.Signals[sig_name]
    proc = subprocess.Popen([sys.executable, "-m", "posture.ingest", *_ingest_args(drop, out)], env=ENV, cwd=REPO)
    started: list[dict[str, float]] = []
    try:
        while proc.poll() is None and not list(tmp_path.glob(".out.partial-*/images/*/*")):
            time.sleep(0.002)
        started = [{"pid": p.pid, "create_time": p.create_time()} for p in psutil.Process(proc.pid).children(True)]
        proc.send_signal(sig)
        proc.wait(timeout=60)
        assert proc.returncode == -sig, "the ingest finished before it could be killed"
        _assert_rerun_succeeds(drop, out)
        assert _strays(started) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        _kill_leftovers(started)


#: A process that takes the lock, forks a child that inherits its open files and outlives it, and dies.
_LOCK_THEN_DIE = """
import os, signal, sys
from posture.io.fileio import exclusive_lock
with exclusive_lock(sys.argv[1]):
    child = os.fork()
    if child == 0:  # keeps the lock file open, not the test's output pipe
        quiet = os.open(os.devnull, os.O_RDWR)
        os.dup2(quiet, 1)
        os.dup2(quiet, 2)
        signal.pause()
    print(child, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_lock_whose_owner_died_does_not_block_while_its_orphans_live(tmp_path: Path) -> None:
    """The lock is the owner's alone: a child it forked (a decoding worker) never holds it for it."""
    from posture.io.fileio import exclusive_lock

    lock = tmp_path / ".out.lock"
    owner = subprocess.run(
        [sys.executable, "-c", _LOCK_THEN_DIE, str(lock)], env=ENV, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert owner.returncode == -signal.SIGKILL
    orphan = psutil.Process(int(owner.stdout))
    try:
        assert orphan.is_running() and orphan.status() != psutil.STATUS_ZOMBIE  # still holds the lock file open
        with exclusive_lock(lock):
            assert lock.read_text().strip() == str(os.getpid())
    finally:
        orphan.kill()
