"""Hostile drops: special files, symlink loops, odd names and concurrent runs never hang, crash or leak."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
from _ingest_helpers import class_tree, photo, run, save

REPO = Path(__file__).resolve().parents[1]


def _ingest_cli(src: Path, out: Path, *extra: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``python -m posture.ingest`` as a user runs it; the timeout only turns a hang into a failure."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "posture.ingest", str(src), "--out", str(out), "--workers", "1",
                           "--no-progress", *extra], capture_output=True, encoding="utf-8", errors="replace",
                          env=env, cwd=REPO, timeout=timeout)


def _rejected(result) -> dict[str, str]:
    return dict(zip(result.rejected["path"], result.rejected["reason"]))


def test_fifos_and_device_nodes_are_rejected_without_being_read(tmp_path):
    src = class_tree(tmp_path / "drop", per_class=2)
    os.mkfifo(src / "normal" / "fifo.jpg")  # sorts first: the old code blocked here before reaching zero.jpg
    special = ["normal/fifo.jpg"]
    try:
        os.mknod(src / "normal" / "zero.jpg", stat.S_IFCHR | 0o644, os.makedev(1, 5))  # /dev/zero
        special.append("normal/zero.jpg")
    except OSError:
        pass  # not allowed here (not root): the FIFO still stands for every file that is not a regular file
    proc = _ingest_cli(src, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    rejected = pd.read_csv(tmp_path / "out" / "rejected.csv")
    assert dict(zip(rejected["path"], rejected["reason"])) == {p: "not_a_regular_file" for p in special}
    assert len(pd.read_csv(tmp_path / "out" / "manifest.csv")) == 4


def test_files_over_the_byte_cap_are_rejected_unread(tmp_path):
    src = class_tree(tmp_path / "drop", per_class=2)
    with open(src / "normal" / "sparse.jpg", "wb") as fh:
        fh.truncate(8 << 20)  # 8 MiB of nothing, no disk used
    result = run(src, tmp_path / "out", max_bytes=1 << 20)
    assert _rejected(result) == {"normal/sparse.jpg": "too_large"}
    assert "bytes" in result.rejected["detail"][0]
    assert result.kept == 4


def test_symlink_loops_are_rejected_and_the_run_goes_on(tmp_path):
    src = class_tree(tmp_path / "drop", per_class=2)
    nm = src / "normal"
    os.symlink("self.jpg", nm / "self.jpg")  # a file that points at itself
    os.symlink("pong.jpg", nm / "ping.jpg")
    os.symlink("ping.jpg", nm / "pong.jpg")
    os.symlink("loopdir", src / "loopdir")  # a folder that points at itself
    os.symlink("..", nm / "up")  # a folder link back to an ancestor: not followed, so no loop
    result = run(src, tmp_path / "out")
    assert _rejected(result) == {"normal/self.jpg": "symlink_loop", "normal/ping.jpg": "symlink_loop",
                                 "normal/pong.jpg": "symlink_loop", "loopdir": "symlink_loop"}
    assert result.kept == 4
    assert result.summary["skipped"]["symlinked_folder"] == 1


def test_a_symlink_loop_as_src_is_one_clear_error(tmp_path):
    os.symlink("loop", tmp_path / "loop")
    proc = _ingest_cli(tmp_path / "loop", tmp_path / "out")
    assert proc.returncode == 2 and "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_photos_behind_symlinks_inside_src_are_still_read(tmp_path):
    src = class_tree(tmp_path / "drop", per_class=2)
    save(photo(30), src / "extra" / "real.jpg")
    os.symlink("../extra/real.jpg", src / "normal" / "linked.jpg")
    result = run(src, tmp_path / "out")
    assert "normal/linked.jpg" in set(result.manifest["source_path"])
