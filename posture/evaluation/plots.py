"""The evaluation's pictures: confusion matrix, ROC / precision-recall curves, reliability
diagram and the top-losses gallery.

Figures are built with ``matplotlib.figure.Figure`` and rendered by the Agg canvas directly, never
through ``pyplot``: no global figure registry, no GUI backend, safe in tests, servers and threads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn import metrics as skm

from posture.evaluation.metrics import row_rates
from posture.io.fileio import atomic_path

DPI = 110


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    return Path(path)


def plot_confusion_matrix(
    counts: np.ndarray, class_names: Sequence[str], path: str | os.PathLike[str], title: str = "Confusion matrix"
) -> Path:
    """Counts and row percentages in every cell; colour follows the row rate so that a rare class's
    errors are as visible as a common one's."""
    counts = np.asarray(counts)
    rates = row_rates(counts)
    n = len(class_names)
    size = 2.2 + 1.3 * n
    fig = Figure(figsize=(size + 1.0, size))
    ax = fig.add_subplot()
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_xticks(range(n), labels=list(class_names), rotation=30 if n > 3 else 0, ha="right" if n > 3 else "center")
    ax.set_yticks(range(n), labels=list(class_names))
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title(f"{title} (n={int(counts.sum())})")
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                f"{int(counts[i, j])}\n{100 * rates[i, j]:.1f}%",
                ha="center",
                va="center",
                color="white" if rates[i, j] > 0.5 else "black",
                fontsize=11,
            )
    return _save(fig, path)


def _one_vs_rest(
    y_true: np.ndarray, proba: np.ndarray, class_names: Sequence[str], positive_index: int
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, is-that-class, its score) for the curves: only the positive class when binary."""
    indices = [positive_index] if len(class_names) == 2 else range(len(class_names))
    out = []
    for i in indices:
        y = (np.asarray(y_true) == i).astype(int)
        if 0 < y.sum() < len(y):  # a curve needs both outcomes
            out.append((class_names[i], y, np.asarray(proba)[:, i]))
    return out


def plot_roc(
    y_true: np.ndarray,
    proba: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    positive_index: int = 0,
    threshold: float | None = None,
) -> Path:
    """ROC curve(s); the stored decision threshold is marked as the operating point."""
    fig = Figure(figsize=(5.2, 5.0))
    ax = fig.add_subplot()
    curves = _one_vs_rest(y_true, proba, class_names, positive_index)
    for name, y, score in curves:
        fpr, tpr, thr = skm.roc_curve(y, score)
        ax.plot(fpr, tpr, lw=2, label=f"{name} (AUC {skm.roc_auc_score(y, score):.3f})")
        if threshold is not None and len(class_names) == 2:
            pred = score >= threshold
            op_tpr = pred[y == 1].mean()
            op_fpr = pred[y == 0].mean()
            ax.plot([op_fpr], [op_tpr], "o", color="black", label=f"threshold {threshold:.3f}")
    if not curves:
        ax.text(0.5, 0.5, "undefined: only one class present", ha="center", va="center")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="chance")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.02),
        xlabel="false positive rate",
        ylabel="true positive rate (recall)",
        title="ROC curve",
    )
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_precision_recall(
    y_true: np.ndarray,
    proba: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    positive_index: int = 0,
) -> Path:
    """Precision-recall curve(s), with each class's base rate as the chance line."""
    fig = Figure(figsize=(5.2, 5.0))
    ax = fig.add_subplot()
    curves = _one_vs_rest(y_true, proba, class_names, positive_index)
    for name, y, score in curves:
        precision, recall, _ = skm.precision_recall_curve(y, score)
        (line,) = ax.plot(
            recall,
            precision,
            lw=2,
            label=f"{name} (AP {skm.average_precision_score(y, score):.3f})",
            drawstyle="steps-post",
        )
        ax.axhline(y.mean(), ls="--", lw=1, color=line.get_color(), alpha=0.6, label=f"chance ({y.mean():.2f})")
    if not curves:
        ax.text(0.5, 0.5, "undefined: only one class present", ha="center", va="center")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title="Precision-recall curve")
    ax.legend(loc="lower left", fontsize=8)
    return _save(fig, path)


def plot_reliability(
    tables: dict[str, pd.DataFrame], path: str | os.PathLike[str], eces: dict[str, float] | None = None
) -> Path:
    """Reliability diagram: accuracy against confidence per bin (from
    :func:`posture.evaluation.metrics.reliability_bins`), one line per variant (e.g. before/after scaling),
    with the share of rows per bin underneath."""
    fig = Figure(figsize=(5.4, 6.2))
    ax, hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
    width = None
    for k, (name, table) in enumerate(tables.items()):
        filled = table[table["count"] > 0]
        ece = f" (ECE {eces[name]:.3f})" if eces and name in eces else ""
        ax.plot(filled["confidence"], filled["accuracy"], "o-", label=f"{name}{ece}")
        width = float((table["bin_upper"] - table["bin_lower"]).iloc[0])
        centres = (table["bin_lower"] + table["bin_upper"]) / 2
        hist.bar(
            centres + (k - (len(tables) - 1) / 2) * width / max(len(tables), 1),
            table["count"] / max(table["count"].sum(), 1),
            width=width / max(len(tables), 1),
            alpha=0.7,
            label=name,
        )
    ax.set(xlim=(0, 1), ylim=(0, 1.02), ylabel="accuracy", title="Reliability diagram (top-label)")
    ax.legend(loc="upper left", fontsize=8)
    hist.set(xlabel="confidence", ylabel="share of rows")
    return _save(fig, path)


@dataclass(frozen=True)
class GalleryItem:
    """One image of the top-losses gallery: the photo, its Grad-CAM overlay and a caption."""

    image: np.ndarray
    overlay: np.ndarray | None
    caption: str


def _to_height(image: np.ndarray, height: int) -> np.ndarray:
    """Thumbnails at one height keep the gallery PNG small whatever the photos' sizes."""
    width = max(1, round(image.shape[1] * height / max(image.shape[0], 1)))
    return cv2.resize(np.ascontiguousarray(image), (width, height), interpolation=cv2.INTER_AREA)


def plot_gallery(
    items: Sequence[GalleryItem], path: str | os.PathLike[str], title: str, columns: int = 3, thumb_height: int = 224
) -> Path:
    """A grid of photo | Grad-CAM pairs with captions (the top-losses picture)."""
    tiles = []
    for item in items:
        panels = [
            _to_height(p, thumb_height) for p in [item.image] + ([item.overlay] if item.overlay is not None else [])
        ]
        gap = np.full((thumb_height, 4, 3), 255, np.uint8)
        tiles.append(np.concatenate([panels[0]] + ([gap, panels[1]] if len(panels) > 1 else []), axis=1))
    n = max(len(tiles), 1)
    columns = max(1, min(columns, n))
    rows = (n + columns - 1) // columns
    aspect = max((t.shape[1] / t.shape[0] for t in tiles), default=1.0)  # width / height of the widest tile
    cell_width = 4.6
    fig = Figure(figsize=(cell_width * columns, (cell_width / aspect + 0.55) * rows + 0.5))
    fig.suptitle(title, fontsize=12)
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    for ax in axes:
        ax.axis("off")
    if not tiles:
        axes[0].text(0.5, 0.5, "no images", ha="center", va="center")
    for ax, tile, item in zip(axes, tiles, items, strict=False):
        ax.imshow(tile)
        ax.set_title(item.caption, fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


__all__ = [
    "plot_confusion_matrix",
    "plot_roc",
    "plot_precision_recall",
    "plot_reliability",
    "plot_gallery",
    "GalleryItem",
]
