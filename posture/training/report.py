"""The run's human-facing files: ``history.csv`` rows and ``training_curve.png``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from posture.io.fileio import atomic_path

CURVE_NAME = "training_curve.png"


def history_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    cols = [
        "epoch",
        "phase",
        "phase_epoch",
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "val_balanced_accuracy",
        "lr",
        "seconds",
    ]
    return pd.DataFrame(rows, columns=cols)


def plot_training_curve(history: pd.DataFrame, path: str | os.PathLike[str], best_epoch: int | None = None) -> Path:
    """Loss and accuracy per epoch; the unfreeze phase (if any) and the kept epoch are marked."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(history["epoch"], history["train_loss"], label="train")
    ax_loss.plot(history["epoch"], history["val_loss"], label="val")
    ax_loss.set(xlabel="epoch", ylabel="loss (class-weighted CE)", title="loss")
    ax_acc.plot(history["epoch"], history["train_accuracy"], label="train accuracy")
    ax_acc.plot(history["epoch"], history["val_accuracy"], label="val accuracy")
    ax_acc.plot(history["epoch"], history["val_balanced_accuracy"], label="val balanced accuracy")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    unfreeze = history[history["phase"] == "unfreeze"]
    for ax in (ax_loss, ax_acc):
        if len(unfreeze):
            ax.axvspan(unfreeze["epoch"].min() - 0.5, unfreeze["epoch"].max() + 0.5, alpha=0.1, label="unfrozen")
        if best_epoch:
            ax.axvline(best_epoch, linestyle="--", color="grey", label="kept epoch")
        ax.legend(fontsize=8)
    fig.tight_layout()
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return target
