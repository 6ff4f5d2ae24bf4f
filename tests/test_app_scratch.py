"""The apps' private folders: who owns them, what is swept from them and when."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from app.janitor import CacheJanitor
from app.scratch import OWNER_NAME, make_private_dir, remove_stale_dirs

REPO = Path(__file__).resolve().parents[1]
PREFIX = "posture-app-"


def _folder_of_a_killed_app(parent: Path) -> Path:
    """A process that made its private folder and died without cleaning up (as after SIGKILL)."""
    code = f"from app.scratch import make_private_dir; print(make_private_dir({PREFIX!r}, {str(parent)!r}))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return Path(out.stdout.strip())


def test_folders_of_dead_apps_are_removed_and_live_or_foreign_ones_kept(tmp_path: Path) -> None:
    dead = _folder_of_a_killed_app(tmp_path)
    (dead / "gradio" / "abc").mkdir(parents=True)
    (dead / "gradio" / "abc" / "image.jpeg").write_bytes(b"someone's overlay")
    reused = make_private_dir(PREFIX, tmp_path)  # this process is alive, but the PID was recycled:
    owner = json.loads((reused / OWNER_NAME).read_text())
    (reused / OWNER_NAME).write_text(json.dumps({**owner, "started": "not this process's start"}))
    mine = make_private_dir(PREFIX, tmp_path)
    unowned = tmp_path / "posture-app-from-elsewhere"  # no owner file: not ours to judge
    unowned.mkdir()
    unrelated = tmp_path / "something-else"
    unrelated.mkdir()
    assert sorted(remove_stale_dirs(PREFIX, tmp_path)) == sorted([dead, reused])
    assert not dead.exists() and not reused.exists()
    assert mine.is_dir() and unowned.is_dir() and unrelated.is_dir()
    assert remove_stale_dirs(PREFIX, tmp_path) == []


def _file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_the_janitor_keeps_uploads_a_while_shown_images_briefly_and_examples_always(tmp_path: Path) -> None:
    cache = tmp_path / "gradio"
    upload, overlay, example = (
        _file(cache / "u1" / "me.png"),
        _file(cache / "o1" / "image.jpeg"),
        _file(cache / "e1" / "example.png"),
    )
    unknown = _file(tmp_path / "batch" / "posture-1.csv")  # not told about: kept as long as uploads
    ages = {str(overlay): 30.0, str(example): None}
    deleted: list[str] = []
    janitor = CacheJanitor(
        [cache, tmp_path / "batch"], policy=lambda: lambda path: ages.get(path, 300.0), on_delete=deleted.extend
    )
    now = time.time()
    assert janitor.sweep(now + 10) == []
    assert janitor.sweep(now + 60) == [str(overlay)]
    assert not overlay.parent.exists()  # its now empty hash folder goes too
    assert deleted == [str(overlay)]
    janitor.touch(str(upload), when=now + 250)  # checked again: the clock restarts
    assert sorted(janitor.sweep(now + 400)) == [str(unknown)]
    assert sorted(janitor.sweep(now + 600)) == [str(upload)]
    assert example.is_file() and cache.is_dir() and (tmp_path / "batch").is_dir()
    janitor.touch(str(tmp_path / "gone.png"))  # a file swept meanwhile is no error


def test_the_janitor_sweeps_on_its_own_until_stopped(tmp_path: Path) -> None:
    stale = _file(tmp_path / "old" / "image.jpeg")
    janitor = CacheJanitor([tmp_path], policy=lambda: lambda path: 0.0, period_s=0.05)
    janitor.start()
    try:
        for _ in range(200):  # bounded: fails instead of hanging if the thread never sweeps
            if not stale.exists():
                break
            time.sleep(0.05)
    finally:
        janitor.stop()
    assert not stale.exists() and not janitor.running
