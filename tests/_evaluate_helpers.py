"""Tiny datasets and runs for the evaluation, metrics and Grad-CAM tests (all in tmp_path)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from posture.data.transforms import Preprocessing
from posture.runs.checkpoint import save_checkpoint

CLASSES = ["forward_head", "normal"]


def draw(label_index: int, rng: np.random.Generator, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    """A noisy image whose bright blob sits left (class 0) or right (class 1): learnable, not trivial."""
    h, w = size
    image = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
    cx = w // 4 if label_index == 0 else 3 * w // 4
    image[h // 4 : 3 * h // 4, max(0, cx - w // 8) : cx + w // 8] = 220
    return image


def make_dataset(
    root: Path,
    counts: dict[str, int] | None = None,
    classes: Sequence[str] = CLASSES,
    seed: int = 0,
    size: tuple[int, int] = (48, 64),
    manifest: bool = True,
) -> Path:
    """An ingested-style dataset: images/ + manifest.csv (path,label,split,subject,source) + classes.json.

    ``counts`` is images per class per split; ``manifest=False`` writes a class-per-folder tree instead.
    """
    counts = counts or {"train": 4, "val": 6, "test": 6}
    rng = np.random.default_rng(seed)
    rows = []
    for split, n in counts.items():
        for ci, label in enumerate(classes):
            for k in range(n):
                rel = f"{label}/{split}_{k}.png" if not manifest else f"images/{split}_{label}_{k}.png"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(draw(ci % 2, rng, size)).save(root / rel)
                rows.append(
                    {
                        "path": rel,
                        "label": label,
                        "split": split,
                        "subject": f"p{k % 3}",
                        "source": "drop_a" if k % 2 == 0 else "drop_b",
                    }
                )
    if manifest:
        pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
        (root / "classes.json").write_text(json.dumps(list(classes)))
    return root


def make_run(
    run_dir: Path,
    architecture: str = "mobilenet_v3_small",
    classes: Sequence[str] = CLASSES,
    input_size: int = 64,
    seed: int = 0,
    train_on: Path | None = None,
    steps: int = 30,
) -> Path:
    """A run folder (model.safetensors + config.json) with random weights, optionally head-trained a few
    steps on ``train_on``'s train split so that its probabilities mean something."""
    from posture.models import build_model

    torch.manual_seed(seed)
    model = build_model(architecture, len(classes), pretrained=False)
    pre = Preprocessing(input_size=input_size, mean=model.preprocessing.mean, std=model.preprocessing.std)
    if train_on is not None:
        _train_head(model, pre, train_on, classes, steps)
    config = {
        "architecture": architecture,
        "classes": list(classes),
        "preprocessing": pre.to_dict(),
        "head": {"hidden": 0, "dropout": 0.0},
    }
    save_checkpoint(run_dir, model.state_dict(), config)
    return run_dir


def _train_head(model: torch.nn.Module, pre: Preprocessing, root: Path, classes: Sequence[str], steps: int) -> None:
    from posture.data.datasets import open_dataset
    from posture.data.transforms import apply, build_eval_transform

    transform = build_eval_transform(pre)
    data = open_dataset(root, "train", lambda im: apply(transform, im), class_names=classes)
    x = torch.stack([data[i][0] for i in range(len(data))])
    y = torch.tensor(data.targets)
    model.eval()
    with torch.no_grad():
        features = model.backbone(x)
    optimiser = torch.optim.Adam(model.head.parameters(), lr=0.05)
    for _ in range(steps):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model.head(features), y).backward()
        optimiser.step()
