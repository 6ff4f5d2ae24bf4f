"""Tiny ingested-like datasets for the fine-tuning and feature tests (written into tmp_path)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from posture.training.finetune import FinetuneConfig

CLASSES = ["forward_head", "normal"]


def make_dataset(
    root: Path,
    per_class: dict[str, int] | None = None,
    size: int = 40,
    seed: int = 0,
    classes: list[str] | None = None,
    labels_in: list[str] | None = None,
) -> Path:
    """``root`` with images/, manifest.csv and classes.json, like ``posture.ingest`` writes.

    The two classes differ in colour and in where a bright blob sits, so even a randomly
    initialised backbone separates them: the tests exercise mechanics, not vision.
    ``per_class`` maps split -> images per class (default train 12, val 6, test 6).
    """
    per_class = per_class or {"train": 12, "val": 6, "test": 6}
    classes = classes or CLASSES
    labels = labels_in or classes
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for split, n in per_class.items():
        for label in labels:
            k = classes.index(label)
            for i in range(n):
                img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
                img[..., 0 if k == 0 else 2] += 150
                y0 = 4 if k == 0 else size // 2
                img[y0 : y0 + size // 3, size // 3 : 2 * size // 3] = 250
                name = f"images/{split}_{label}_{i:03d}.png"
                Image.fromarray(img).save(root / name)
                data = (root / name).read_bytes()
                rows.append(
                    {
                        "path": name,
                        "label": label,
                        "split": split,
                        "subject": f"{split}-{label}-{i}",
                        "sha256": hashlib.sha256(data).hexdigest(),
                        "width": size,
                        "height": size,
                        "source_path": name,
                        "source": "test",
                    }
                )
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    (root / "classes.json").write_text(json.dumps(classes))
    return root


class InjectedFailure(RuntimeError):
    """Raised by :func:`fail_after` to simulate a crash."""


def fail_after(epoch: int) -> Callable[[int], None]:
    """An ``after_epoch`` hook for ``run_finetune`` that crashes once global epoch ``epoch``'s resume
    state is saved, as a killed process would leave it."""

    def hook(global_epoch: int) -> None:
        if global_epoch >= epoch:
            raise InjectedFailure(f"injected failure after epoch {global_epoch}")

    return hook


def small_config(data: Path, out: Path, cache: Path, **overrides) -> FinetuneConfig:
    """A fast configuration: random-init ResNet-18 at 32 px, torch extraction, no workers."""
    base = dict(
        data=str(data),
        out=str(out),
        model="resnet18",
        weights="none",
        epochs=8,
        batch_size=8,
        image_size=32,
        workers=0,
        aug_views=1,
        patience=0,
        head_hidden=0,
        head_dropout=0.0,
        lr=1e-3,
        seed=0,
        cache_dir=str(cache),
        extract_backend="torch",
        progress=False,
        device="cpu",
    )
    base.update(overrides)
    return FinetuneConfig(**base)
