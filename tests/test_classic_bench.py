"""bench.classic end to end on a tiny made-up dataset (two small models, one epoch)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image


def _load_bench():  # type: ignore[no-untyped-def]
    """The benchmark as the package module ``python -m bench.classic`` runs (bench/ is a package)."""
    return importlib.import_module("bench.classic")


def _tiny_dataset(root: Path, per_split: dict[str, int]) -> Path:
    """Two classes that differ in where a bright blob sits; a few 48x40 images per split."""
    rng = np.random.default_rng(0)
    rows = []
    for split, n in per_split.items():
        for i in range(n):
            label = ("forward_head", "normal")[i % 2]
            img = rng.integers(0, 60, (40, 48, 3), dtype=np.uint8)
            y0 = 4 if label == "forward_head" else 24
            img[y0 : y0 + 12, 10:30] = 230
            rel = f"images/{split}_{i}.png"
            (root / "images").mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / rel)
            rows.append({"path": rel, "label": label, "split": split, "subject": f"{split}{i}"})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


@pytest.mark.slow
def test_bench_trains_from_scratch_and_writes_results(tmp_path: Path) -> None:
    bench = _load_bench()
    data = _tiny_dataset(tmp_path / "data", {"train": 8, "val": 4, "test": 4})
    out = tmp_path / "results"
    cfg = bench.BenchConfig(
        data=data, models=["classic_lenet5", "classic_cifar_resnet20"], epochs=1, batch_size=4, baselines=False, out=out
    )
    payload = bench.run_bench(cfg)
    saved = json.loads((out / "classic.json").read_text())
    assert [r["model"] for r in saved["results"]] == ["classic_lenet5", "classic_cifar_resnet20"]
    for r in payload["results"]:
        assert r["input_size"] == 32 and r["loss_is_finite"] and r["seconds_per_epoch"] > 0
        assert 0.0 <= r["test"]["accuracy"] <= 1.0 and 0.0 <= r["val"]["balanced_accuracy"] <= 1.0
    md = (out / "classic.md").read_text()
    assert "| classic_lenet5 | from scratch | 32 |" in md and "compare ratios" in md


def test_bench_training_size_respects_each_architecture() -> None:
    bench = _load_bench()
    assert bench.train_size("classic_lenet5", 64) == 32  # fixed by C5
    assert bench.train_size("classic_cifar_resnet20", 64) == 32  # native size, never upsampled
    assert bench.train_size("classic_alexnet", 64) == 67  # the smallest AlexNet's strides allow
    assert bench.train_size("classic_resnet50", 64) == 64
    assert set(bench.DEFAULT_MODELS) == set(bench.CLASSIC_MODELS) - {"classic_alexnet_2tower"}


def test_bench_reports_user_errors_not_tracebacks(tmp_path: Path) -> None:
    bench = _load_bench()
    with pytest.raises(bench.UserError, match=r"unknown classic model\(s\) classic_resnet51"):
        bench.run_bench(bench.BenchConfig(data=tmp_path, models=["classic_resnet51"], out=tmp_path))
    with pytest.raises(bench.UserError, match="no such dataset folder"):
        bench.run_bench(bench.BenchConfig(data=tmp_path / "absent", models=["classic_lenet5"], out=tmp_path))
    assert bench.run_main(bench.main, ["--data", str(tmp_path / "absent"), "--epochs", "0", "-q"]) == 2
