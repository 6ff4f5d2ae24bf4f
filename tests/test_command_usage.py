"""Every command a user types keeps its command line: ``python -m posture.<command> --help`` prints the
same usage lines as when they were recorded in ``tests/golden/usage.json`` (before the package was
regrouped into rooms). A flag renamed, dropped or reordered by a move fails here, naming the command.

To record a deliberate change: ``python tests/test_command_usage.py --record``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden" / "usage.json"
COMMANDS = ("agreement", "calibrate", "evaluate", "export", "finetune", "ingest", "predict", "synth", "watch")


def usage_lines(command: str) -> list[str]:
    """The ``usage:`` block of the command's ``--help`` (up to the first blank line), at a fixed width."""
    env = {**os.environ, "COLUMNS": "100"}
    done = subprocess.run(
        [sys.executable, "-m", f"posture.{command}", "--help"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"posture.{command} --help failed: {done.stderr[-2000:]}"
    lines = done.stdout.splitlines()
    return lines[: lines.index("")] if "" in lines else lines


def test_the_golden_file_names_every_command() -> None:
    assert sorted(json.loads(GOLDEN.read_text(encoding="utf-8"))) == sorted(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_the_usage_lines_are_unchanged(command: str) -> None:
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))[command]
    assert usage_lines(command) == expected


if __name__ == "__main__":  # pragma: no cover - a maintainer's tool
    if sys.argv[1:] != ["--record"]:
        raise SystemExit("usage: python tests/test_command_usage.py --record")
    GOLDEN.write_text(json.dumps({c: usage_lines(c) for c in COMMANDS}, indent=1) + "\n", encoding="utf-8")
