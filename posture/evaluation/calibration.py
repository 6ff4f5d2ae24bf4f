"""Temperature scaling and the decision threshold, both fitted on the validation split.

Why temperature scaling: fine-tuned networks are over-confident; dividing the logits by one
fitted scalar T (Guo et al., 2017) fixes most of it without changing which class wins, so accuracy
is untouched while the confidence the app shows becomes honest.

Why a threshold: for a screening tool a missed forward-head posture costs more than a false alarm,
so the operating point is a choice (``recall:0.9``: catch 90 % of forward-head cases on the
validation split; ``youden``: the ROC point furthest above chance; ``f1``). It is chosen on the
*calibrated* validation probabilities, because that is what the Predictor thresholds.

Both end up in the run's ``config.json`` under ``calibration`` (see :func:`calibration_record`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn import metrics as skm

from posture.cli import UserError

log = logging.getLogger(__name__)

#: Search range for T; outside it the validation split is too small or degenerate to trust.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0
POLICY_HELP = "youden | f1 | recall:R (0<R<=1, recall of the positive class) | none"


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true classes at temperature ``T``."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    return float(-log_softmax(z, axis=1)[np.arange(len(y)), np.asarray(y, dtype=int)].mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T that minimises the validation NLL (bounded 1-D search on log T).

    The NLL is convex in 1/T, so a bounded scalar search finds the optimum without the step-size
    tuning LBFGS needs. Returns 1.0 when there is nothing to fit (no rows).
    """
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=int)
    if len(y) == 0:
        return 1.0
    if np.all(logits.argmax(axis=1) == y):
        # Every row right: the NLL keeps falling as T -> 0, so the "optimum" is just the search
        # bound and would make the model absurdly over-confident. Leave the logits alone.
        log.info("no validation errors to calibrate against; temperature left at 1.0")
        return 1.0
    result = minimize_scalar(
        lambda log_t: nll(logits, y, math.exp(log_t)),
        bounds=(math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    temperature = float(math.exp(result.x))
    # Never worse than doing nothing: the bounded search can stop at an edge on tiny splits.
    return temperature if nll(logits, y, temperature) <= nll(logits, y, 1.0) else 1.0


@dataclass(frozen=True)
class ThresholdPolicy:
    """How to pick the positive-class threshold: ``kind`` is youden, f1, recall or none."""

    kind: str
    target: float | None = None

    @classmethod
    def parse(cls, text: str) -> ThresholdPolicy:
        """``youden``, ``f1``, ``recall:0.9`` or ``none``; anything else is a user error."""
        raw = text.strip().lower()
        if raw in ("youden", "f1", "none"):
            return cls(raw)
        if raw.startswith("recall:"):
            try:
                target = float(raw.split(":", 1)[1])
            except ValueError:
                target = -1.0
            if 0.0 < target <= 1.0:
                return cls("recall", target)
            raise UserError(f"--threshold-policy {text}: the target recall must be a number in (0, 1], e.g. recall:0.9")
        raise UserError(f"--threshold-policy {text}: choose {POLICY_HELP}")

    def __str__(self) -> str:
        return f"recall:{self.target:g}" if self.kind == "recall" else self.kind


def choose_threshold(is_positive: np.ndarray, p_positive: np.ndarray, policy: ThresholdPolicy | str) -> float | None:
    """The probability at or above which a row is called positive, per ``policy``.

    A row is positive when its score is ``>=`` the threshold (scikit-learn's convention); the
    candidates are the observed scores, and the one picked is moved half-way to the next lower score
    (see :func:`_midpoint`). ``None`` means "no threshold, use argmax":
    for policy ``none``, or when the split lacks one of the two classes.
    """
    if isinstance(policy, str):
        policy = ThresholdPolicy.parse(policy)
    if policy.kind == "none":
        return None
    y = np.asarray(is_positive).astype(int)
    scores = np.asarray(p_positive, dtype=np.float64)
    if y.min(initial=1) == y.max(initial=0) or len(y) == 0:
        log.warning("the validation split holds only one class; no threshold chosen (argmax is used)")
        return None
    fpr, tpr, thresholds = skm.roc_curve(y, scores, drop_intermediate=False)
    finite = np.isfinite(thresholds)  # the first threshold is +inf (nothing positive)
    fpr, tpr, thresholds = fpr[finite], tpr[finite], thresholds[finite]  # thresholds: distinct scores, falling
    if policy.kind == "youden":
        index = int(np.argmax(tpr - fpr))
    elif policy.kind == "recall":
        if policy.target is None:
            raise ValueError("a recall threshold policy needs its target recall (recall:0.9)")
        # the highest threshold that still reaches the target recall (fewest false alarms)
        index = int(np.flatnonzero(tpr >= float(policy.target) - 1e-12)[0])
    else:  # f1, over the same candidate thresholds
        positives = y.sum()
        predicted = tpr * positives + fpr * (len(y) - positives)
        f1 = np.divide(
            2 * tpr * positives, predicted + positives, out=np.zeros_like(tpr), where=(predicted + positives) > 0
        )
        index = int(np.argmax(f1))
    return _midpoint(thresholds, index)


def _midpoint(thresholds: np.ndarray, index: int) -> float:
    """Half-way between the chosen score and the next lower one: the same decisions on the
    validation rows, but the widest margin for unseen ones (a threshold sitting exactly on a
    validation score, often 1.0 for a confident model, flips on the tiniest change)."""
    chosen = float(thresholds[index])
    if index + 1 < len(thresholds):
        return (chosen + float(thresholds[index + 1])) / 2.0
    return chosen


def calibration_record(
    temperature: float,
    threshold: float | None,
    positive_class: str,
    policy: ThresholdPolicy | str,
    fitted_on: str,
    n: int,
) -> dict[str, object]:
    """The ``calibration`` entry of a run's ``config.json`` (read by :class:`posture.inference.predict.Predictor`)."""
    return {
        "temperature": float(temperature),
        "threshold": None if threshold is None else float(threshold),
        "positive_class": positive_class,
        "policy": str(policy),
        "fitted_on": fitted_on,
        "n": int(n),
    }


__all__ = ["fit_temperature", "nll", "ThresholdPolicy", "choose_threshold", "calibration_record", "POLICY_HELP"]
