"""Staging folders beside an output: a killed writer's leftovers are removed by the next run, a live
writer's never (issue #27, item 13); a writer killed mid-swap leaves the previous output restorable."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from posture.io.fileio import STAGING_TAG, TRASH_TAG, remove_stale_staging, staged_folder, stale_staging


def _ended_pid() -> int:
    """The id of a process that has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def other_live_pid() -> Iterator[int]:
    """Another process that runs for the whole test, as a second writer would."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def _leftover(parent: Path, out_name: str, tag: str, owner: object, content: str = "x") -> Path:
    folder = parent / f".{out_name}{tag}{owner}-abc123"
    folder.mkdir()
    (folder / "file.txt").write_text(content)
    return folder


def test_a_staging_folder_is_named_after_its_writer(tmp_path: Path) -> None:
    with staged_folder(tmp_path / "run") as staging:
        assert staging.name.startswith(f".run{STAGING_TAG}{os.getpid()}-")
        assert stale_staging(tmp_path / "run") == []  # this process's own, in use
        (staging / "a.txt").write_text("done")
    assert (tmp_path / "run" / "a.txt").read_text() == "done"


@pytest.mark.parametrize("out_name", ["run", "run[1]*?"])
def test_only_leftovers_of_ended_writers_are_stale(tmp_path: Path, other_live_pid: int, out_name: str) -> None:
    ended = _ended_pid()
    dead = [_leftover(tmp_path, out_name, tag, ended) for tag in (STAGING_TAG, TRASH_TAG)]
    legacy = tmp_path / f".{out_name}{STAGING_TAG}k2j4_x9q"  # an older version's: no writer named
    legacy.mkdir()
    live = [_leftover(tmp_path, out_name, tag, other_live_pid) for tag in (STAGING_TAG, TRASH_TAG)]
    mine = _leftover(tmp_path, out_name, STAGING_TAG, os.getpid())
    neighbour = _leftover(tmp_path, "other", STAGING_TAG, ended)  # another output's
    (tmp_path / out_name).mkdir()
    assert stale_staging(tmp_path / out_name) == sorted([*dead, legacy])
    assert remove_stale_staging(tmp_path / out_name) == sorted([*dead, legacy])
    assert sorted(tmp_path.iterdir()) == sorted([*live, mine, neighbour, tmp_path / out_name])


def test_a_writer_killed_between_the_renames_of_a_swap_leaves_the_previous_output_restored(tmp_path: Path) -> None:
    """Killed after ``out`` was set aside and before the new one took its place: the previous one
    comes back (an interrupted run inside it can then be resumed)."""
    ended = _ended_pid()
    _leftover(tmp_path, "run", STAGING_TAG, ended, "new, never swapped in")
    _leftover(tmp_path, "run", TRASH_TAG, ended, "previous")
    remove_stale_staging(tmp_path / "run")
    assert (tmp_path / "run" / "file.txt").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_set_aside_output_is_not_restored_over_a_newer_one(tmp_path: Path) -> None:
    _leftover(tmp_path, "run", TRASH_TAG, _ended_pid(), "older")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "file.txt").write_text("newer")
    remove_stale_staging(tmp_path / "run")
    assert (tmp_path / "run" / "file.txt").read_text() == "newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
