"""bench/demo_seeds.py: it runs the README's demo commands as written, only the seed and paths moved."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bench.demo_seeds import COMPARED_POLICY, demo_steps, for_seed, parse_seeds, to_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_the_steps_are_the_readme_demo_without_install_or_app() -> None:
    steps = demo_steps((ROOT / "README.md").read_text())
    assert [s[0] for s in steps][:3] == ["posture.synth", "posture.ingest", "posture.finetune"]
    assert "posture.calibrate" in [s[0] for s in steps]
    assert all(s[0].startswith("posture.") for s in steps)  # no pip, no venv, no app
    with pytest.raises(ValueError, match="demo-command"):
        demo_steps("# a README without the block")


def test_a_seed_moves_only_the_seed_and_the_paths(tmp_path: Path) -> None:
    steps = [
        ["posture.synth", "data/raw-sample", "--n", "500", "--seed", "0"],
        ["posture.finetune", "--data", "data/sample", "--out", "models/sample", "--epochs", "3"],
    ]
    moved = for_seed(steps, 4, tmp_path)
    assert moved[0] == ["posture.synth", str(tmp_path / "raw-sample"), "--n", "500", "--seed", "4"]
    assert moved[1] == [
        "posture.finetune",
        "--data",
        str(tmp_path / "sample"),
        "--out",
        str(tmp_path / "run"),
        "--epochs",
        "3",
    ]
    assert for_seed([["posture.synth", "data/raw-sample"]], 2, tmp_path)[0][-2:] == ["--seed", "2"]
    assert steps[0][-1] == "0"  # the README's own steps are left as they are


def test_seeds_are_a_range_or_a_list() -> None:
    assert parse_seeds("0-3") == [0, 1, 2, 3] and parse_seeds("5,1") == [5, 1]
    with pytest.raises(argparse.ArgumentTypeError):
        parse_seeds("a-b")


def _row(seed: int, met: bool, other_met: bool) -> dict:
    def scored(threshold: float, ok: bool) -> dict:
        return {
            "balanced_accuracy": 0.9,
            "roc_auc": 0.98,
            "worst_source": "postural",
            "worst_balanced_accuracy": 0.71 if ok else 0.57,
            "by_source": {"postural": 0.71, "techneck": 0.98},
            "met": ok,
            "window": {"threshold": threshold, "low": 0.44, "high": 0.55, "holds": ok},
        }

    return {
        "seed": seed,
        "demo_seconds": 50.0,
        "demo": scored(0.5, met),
        COMPARED_POLICY: {"threshold": 0.58, "met": other_met},
    }


def test_the_summary_counts_the_seeds_where_the_target_held() -> None:
    payload = {
        "real": "../shared/data/real",
        "demo_calibrate": "python -m posture.calibrate --threshold-policy none",
        "seeds": [_row(0, True, True), _row(1, True, False), _row(2, False, False)],
        "machine": {"cpu_count": 2},
    }
    md = to_markdown(payload)
    assert "**The target held at 2 of 3 seeds with the demo's command**" in md
    assert "at 1 of 3 with the Youden threshold" in md
    assert "| 1 | 0.90 | postural 0.71 | 0.980 | 0.440–0.550 | 0.500, met | 0.580, not met |" in md
