"""The numbers a reviewer asks for, computed from labels and probabilities alone.

Everything except the expected calibration error is scikit-learn's own implementation, so the
numbers match what anyone else computes from ``predictions.csv``. Metrics that are undefined for
the data at hand (ROC AUC when the evaluated rows hold one class only) come back as ``None``
rather than a warning and a NaN, because they end up in JSON and in a printed table.

One shape, :class:`SplitMetrics`, describes the scores of one set of photos wherever they are
written: each split of a run's ``metrics.json`` (``val``, ``test``) and the top level of an
evaluation's ``report.json``. Readers go through :func:`split_metrics_from`, so a file in another
layout is one clear error instead of a guess.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypedDict, cast

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from posture.data.labels import FORWARD_HEAD

#: Equal-width confidence bins for the ECE and the reliability diagram (Guo et al. 2017 use 15).
DEFAULT_ECE_BINS = 15


class ClassMetrics(TypedDict):
    """Precision, recall and F1 of one class, and how many rows truly belong to it."""

    precision: float
    recall: float
    f1: float
    support: int


class SplitMetrics(TypedDict):
    """The scores of one set of photos (a split of ``metrics.json``, or ``report.json``).

    ``None`` marks a number that is undefined for these rows (no rows; ROC AUC with one class).
    ``confusion_matrix`` rows are the true class, columns the decided one, in class order.
    """

    n: int
    accuracy: float | None
    balanced_accuracy: float | None
    per_class: dict[str, ClassMetrics]
    macro_f1: float | None
    roc_auc: float | None
    average_precision: float | None
    log_loss: float | None
    ece: float | None
    ece_bins: int
    confusion_matrix: list[list[int]]


class MetricsFormatError(ValueError):
    """A scores file that is not in the :class:`SplitMetrics` shape (written by an older version)."""


def _none_if_nan(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


def reliability_bins(y_true: np.ndarray, proba: np.ndarray, n_bins: int = DEFAULT_ECE_BINS) -> pd.DataFrame:
    """Top-label reliability table: per equal-width confidence bin, its count, mean confidence
    and accuracy.

    The "confidence" of a row is the probability of the class it is predicted as (the argmax);
    bins are ``[0, 1/n), [1/n, 2/n), ... [(n-1)/n, 1]`` (the last one closed). Empty bins are kept
    with count 0 so the table always has ``n_bins`` rows.
    """
    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=np.float64)
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=False), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        sel = index == b
        count = int(sel.sum())
        rows.append(
            {
                "bin_lower": edges[b],
                "bin_upper": edges[b + 1],
                "count": count,
                "confidence": float(confidence[sel].mean()) if count else float("nan"),
                "accuracy": float(correct[sel].mean()) if count else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, n_bins: int = DEFAULT_ECE_BINS) -> float:
    """ECE: the count-weighted mean gap between confidence and accuracy over equal-width bins.

    ``sum_b (n_b / N) * |accuracy_b - confidence_b|`` with the top-label confidence and the bins of
    :func:`reliability_bins`. 0 is perfectly calibrated; an over-confident model scores high.
    """
    table = reliability_bins(y_true, proba, n_bins)
    filled = table[table["count"] > 0]
    if filled.empty:
        return 0.0
    weights = filled["count"] / filled["count"].sum()
    return float((weights * (filled["accuracy"] - filled["confidence"]).abs()).sum())


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows are the true class, columns the predicted one, every class present even if unseen."""
    if not len(y_true):
        return np.zeros((n_classes, n_classes), dtype=np.int64)
    return skm.confusion_matrix(y_true, y_pred, labels=list(range(n_classes)))


def row_rates(counts: np.ndarray) -> np.ndarray:
    """Row-normalised confusion matrix (each true class sums to 1; a class with no rows stays 0)."""
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    proba: np.ndarray,
    class_names: Sequence[str],
    positive_index: int = 0,
    n_bins: int = DEFAULT_ECE_BINS,
) -> SplitMetrics:
    """Accuracy, balanced accuracy, per-class P/R/F1/support, ROC AUC, AP, log loss, ECE, confusion.

    ``y_pred`` is the *decision* (which may use a threshold), ``proba`` the probabilities the
    ranking metrics and the log loss are computed from. For two classes ROC AUC and average
    precision are those of ``class_names[positive_index]``; for more, macro one-vs-rest.
    """
    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(y_pred, dtype=int)
    proba = np.asarray(proba, dtype=np.float64)
    if len(proba):  # float32 softmax rows sum to 1 only within float32 precision
        proba = proba / proba.sum(axis=1, keepdims=True)
    n_classes = len(class_names)
    labels = list(range(n_classes))
    present = np.unique(y_true)
    if len(y_true):
        precision, recall, f1, support = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, zero_division=0
        )
    else:  # no rows: every count is 0 and every rate undefined (scikit-learn refuses empty input)
        precision = recall = f1 = support = np.zeros(n_classes)
    per_class = {
        name: ClassMetrics(
            precision=float(precision[i]), recall=float(recall[i]), f1=float(f1[i]), support=int(support[i])
        )
        for i, name in enumerate(class_names)
    }
    roc_auc = average_precision = None
    if len(present) >= 2:
        if n_classes == 2:
            positive = (y_true == positive_index).astype(int)
            roc_auc = skm.roc_auc_score(positive, proba[:, positive_index])
            average_precision = skm.average_precision_score(positive, proba[:, positive_index])
        elif len(present) == n_classes:
            roc_auc = skm.roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=labels)
            average_precision = skm.average_precision_score(np.eye(n_classes)[y_true], proba, average="macro")
    counts = confusion_counts(y_true, y_pred, n_classes)
    return {
        "n": int(len(y_true)),
        "accuracy": float(skm.accuracy_score(y_true, y_pred)) if len(y_true) else None,
        "balanced_accuracy": _balanced_accuracy(y_true, y_pred),
        "per_class": per_class,
        "macro_f1": float(np.mean([f1[i] for i in present])) if len(present) else None,
        "roc_auc": _none_if_nan(roc_auc),
        "average_precision": _none_if_nan(average_precision),
        "log_loss": float(skm.log_loss(y_true, proba, labels=labels)) if len(y_true) else None,
        "ece": expected_calibration_error(y_true, proba, n_bins) if len(y_true) else None,
        "ece_bins": n_bins,
        "confusion_matrix": counts.tolist(),
    }


def logit_metrics(
    logits: Any, targets: Any, class_names: Sequence[str], n_bins: int = DEFAULT_ECE_BINS
) -> SplitMetrics:
    """:func:`classification_metrics` of raw logits: softmax at temperature 1 and argmax decisions.

    Why: training scores its splits before any calibration exists, yet its ``metrics.json`` must
    have the same shape as an evaluation's report so that every reader reads one layout.
    """
    from scipy.special import softmax

    z = np.asarray(logits, dtype=np.float64).reshape(-1, len(class_names))
    proba = softmax(z, axis=1) if len(z) else z
    y = np.asarray(targets, dtype=int)
    return classification_metrics(y, z.argmax(axis=1), proba, class_names, positive_index(class_names), n_bins)


def positive_index(class_names: Sequence[str]) -> int:
    """Index of the class ROC AUC and thresholds are about: forward_head when present, else 0."""
    return list(class_names).index(FORWARD_HEAD) if FORWARD_HEAD in class_names else 0


def split_metrics_from(value: Any, where: str) -> SplitMetrics | None:
    """``value`` checked to be :class:`SplitMetrics` (``None`` stays ``None``: no such split).

    Raises :class:`MetricsFormatError` naming ``where`` (the file and key) when keys are missing,
    e.g. a ``metrics.json`` from before this shape existed: retraining writes the current one.
    """
    if value is None:
        return None
    missing = sorted(set(SplitMetrics.__annotations__) - set(value)) if isinstance(value, dict) else ["(not a table)"]
    if missing:
        raise MetricsFormatError(
            f"{where} is not in the current scores format (missing {', '.join(missing)}); "
            "it was written by an older version: retrain or re-evaluate the run"
        )
    return cast(SplitMetrics, value)


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    """scikit-learn's balanced accuracy (mean recall over the classes that occur)."""
    if not len(y_true):
        return None
    import warnings

    with warnings.catch_warnings():  # it warns when a predicted class never occurs; that is fine here
        warnings.simplefilter("ignore")
        return float(skm.balanced_accuracy_score(y_true, y_pred))


def group_breakdown(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """Accuracy and balanced accuracy per group (subject, source...): errors cluster by person, and a
    mean hides that.

    ``frame`` needs ``column``, ``label`` and ``predicted``; rows are sorted worst group first (by
    accuracy). Balanced accuracy is the mean recall over the classes the group holds.
    """
    if column not in frame.columns:
        return pd.DataFrame(columns=[column, "n", "correct", "accuracy", "balanced_accuracy", "labels"])
    work = frame.assign(
        _correct=(frame["label"] == frame["predicted"]).astype(int), _group=frame[column].fillna("(none)").astype(str)
    )
    rows = []
    for name, group in work.groupby("_group", sort=True):
        counts = group["label"].value_counts().sort_index()
        rows.append(
            {
                column: name,
                "n": int(len(group)),
                "correct": int(group["_correct"].sum()),
                "accuracy": float(group["_correct"].mean()),
                "balanced_accuracy": float(group.groupby("label")["_correct"].mean().mean()),
                "labels": " ".join(f"{k}:{v}" for k, v in counts.items()),
            }
        )
    out = pd.DataFrame(rows)
    return out.sort_values(["accuracy", "n"], ascending=[True, False], kind="stable").reset_index(drop=True)


__all__ = [
    "SplitMetrics",
    "ClassMetrics",
    "MetricsFormatError",
    "classification_metrics",
    "logit_metrics",
    "positive_index",
    "split_metrics_from",
    "expected_calibration_error",
    "reliability_bins",
    "confusion_counts",
    "row_rates",
    "group_breakdown",
    "DEFAULT_ECE_BINS",
]
