"""The numbers a reviewer asks for, computed from labels and probabilities alone.

Everything except the expected calibration error is scikit-learn's own implementation, so the
numbers match what anyone else computes from ``predictions.csv``. Metrics that are undefined for
the data at hand (ROC AUC when the evaluated rows hold one class only) come back as ``None``
rather than a warning and a NaN, because they end up in JSON and in a printed table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

#: Equal-width confidence bins for the ECE and the reliability diagram (Guo et al. 2017 use 15).
DEFAULT_ECE_BINS = 15


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
        rows.append({"bin_lower": edges[b], "bin_upper": edges[b + 1], "count": count,
                     "confidence": float(confidence[sel].mean()) if count else float("nan"),
                     "accuracy": float(correct[sel].mean()) if count else float("nan")})
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
    return skm.confusion_matrix(y_true, y_pred, labels=list(range(n_classes)))


def row_rates(counts: np.ndarray) -> np.ndarray:
    """Row-normalised confusion matrix (each true class sums to 1; a class with no rows stays 0)."""
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def classification_metrics(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
                           proba: np.ndarray, class_names: Sequence[str], positive_index: int = 0,
                           n_bins: int = DEFAULT_ECE_BINS) -> dict[str, Any]:
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
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    per_class = {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                        "support": int(support[i])} for i, name in enumerate(class_names)}
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


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    """scikit-learn's balanced accuracy (mean recall over the classes that occur)."""
    if not len(y_true):
        return None
    import warnings

    with warnings.catch_warnings():  # it warns when a predicted class never occurs; that is fine here
        warnings.simplefilter("ignore")
        return float(skm.balanced_accuracy_score(y_true, y_pred))


def group_breakdown(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """Accuracy per group (subject, source...): errors cluster by person, and a mean hides that.

    ``frame`` needs ``column``, ``label`` and ``predicted``; rows are sorted worst group first.
    """
    if column not in frame.columns:
        return pd.DataFrame(columns=[column, "n", "correct", "accuracy", "labels"])
    work = frame.assign(_correct=(frame["label"] == frame["predicted"]).astype(int),
                        _group=frame[column].fillna("(none)").astype(str))
    rows = []
    for name, group in work.groupby("_group", sort=True):
        counts = group["label"].value_counts().sort_index()
        rows.append({column: name, "n": int(len(group)), "correct": int(group["_correct"].sum()),
                     "accuracy": float(group["_correct"].mean()),
                     "labels": " ".join(f"{k}:{v}" for k, v in counts.items())})
    out = pd.DataFrame(rows)
    return out.sort_values(["accuracy", "n"], ascending=[True, False], kind="stable").reset_index(drop=True)


__all__ = ["classification_metrics", "expected_calibration_error", "reliability_bins", "confusion_counts",
           "row_rates", "group_breakdown", "DEFAULT_ECE_BINS"]
