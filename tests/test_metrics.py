"""Metrics, calibration and threshold policies: the numbers a reviewer reads must be the standard ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from posture.cli import UserError
from posture.evaluation.calibration import ThresholdPolicy, calibration_record, choose_threshold, fit_temperature, nll
from posture.evaluation.metrics import (
    classification_metrics,
    confusion_counts,
    expected_calibration_error,
    group_breakdown,
    reliability_bins,
    row_rates,
)
from posture.inference.predict import softmax

NAMES = ["forward_head", "normal"]


@pytest.fixture
def fixed_predictions() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    y = rng.integers(0, 2, 200)
    p0 = np.clip(np.where(y == 0, 0.7, 0.35) + rng.normal(0, 0.2, 200), 0.01, 0.99)
    proba = np.stack([p0, 1 - p0], axis=1)
    return y, proba, proba.argmax(axis=1)


def test_metrics_equal_scikit_learn(fixed_predictions) -> None:
    y, proba, pred = fixed_predictions
    m = classification_metrics(y, pred, proba, NAMES, positive_index=0)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y == 0, proba[:, 0]))
    assert m["average_precision"] == pytest.approx(skm.average_precision_score(y == 0, proba[:, 0]))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba))
    precision, recall, f1, support = skm.precision_recall_fscore_support(y, pred)
    for i, name in enumerate(NAMES):
        assert m["per_class"][name] == pytest.approx(
            {"precision": precision[i], "recall": recall[i], "f1": f1[i], "support": support[i]}
        )
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()


def test_ece_by_hand() -> None:
    # two bins used: conf 0.9 (3 rows, 2 right) and conf 0.6 (2 rows, 2 right)
    proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.4, 0.6]])
    y = np.array([0, 0, 0, 0, 1])
    expected = 3 / 5 * abs(2 / 3 - 0.9) + 2 / 5 * abs(1.0 - 0.6)
    assert expected_calibration_error(y, proba, n_bins=10) == pytest.approx(expected)
    table = reliability_bins(y, proba, n_bins=10)
    assert len(table) == 10 and table["count"].sum() == 5


def test_confidence_of_one_lands_in_last_bin() -> None:
    table = reliability_bins(np.array([0]), np.array([[1.0, 0.0]]), n_bins=5)
    assert table["count"].tolist() == [0, 0, 0, 0, 1]


def test_one_class_data_gives_none_for_ranking_metrics() -> None:
    y = np.zeros(4, int)
    proba = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.9, 0.1]])
    m = classification_metrics(y, proba.argmax(1), proba, NAMES)
    assert m["roc_auc"] is None and m["average_precision"] is None
    assert m["accuracy"] == pytest.approx(0.75)


def test_row_rates_and_unseen_class() -> None:
    counts = confusion_counts(np.array([0, 0, 0]), np.array([0, 1, 0]), 2)
    assert counts.tolist() == [[2, 1], [0, 0]]
    np.testing.assert_allclose(row_rates(counts), [[2 / 3, 1 / 3], [0.0, 0.0]])


def test_group_breakdown_sorts_worst_first() -> None:
    frame = pd.DataFrame(
        {
            "subject": ["a", "a", "b", "b", "b"],
            "label": ["normal"] * 5,
            "predicted": ["normal", "normal", "normal", "x", "x"],
        }
    )
    table = group_breakdown(frame, "subject")
    assert table["subject"].tolist() == ["b", "a"]
    assert table["accuracy"].tolist() == pytest.approx([1 / 3, 1.0])
    assert group_breakdown(frame, "source").empty


def test_temperature_scaling_lowers_log_loss_of_overconfident_model() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    signal = np.where(y == 0, 1.0, -1.0) + rng.normal(0, 1.0, 300)  # ~84 % separable
    logits = np.stack([signal, -signal], axis=1) * 8.0  # far too sharp
    temperature = fit_temperature(logits, y)
    assert temperature > 2.0

    def log_loss(t: float) -> float:
        p = softmax(logits, t).astype(np.float64)
        return skm.log_loss(y, p / p.sum(axis=1, keepdims=True))

    before, after = log_loss(1.0), log_loss(temperature)
    assert after < before * 0.6
    assert nll(logits, y, temperature) < nll(logits, y, 1.0)
    # accuracy is untouched: dividing logits by T > 0 never changes the argmax
    assert (softmax(logits, temperature).argmax(1) == logits.argmax(1)).all()


def test_temperature_left_alone_without_errors() -> None:
    logits = np.array([[3.0, -3.0], [-2.0, 2.0]])
    assert fit_temperature(logits, np.array([0, 1])) == 1.0


# hand-made: positives scores 0.9 0.8 0.6 0.35, negatives 0.7 0.4 0.3 0.2 0.1
SCORES = np.array([0.9, 0.8, 0.6, 0.35, 0.7, 0.4, 0.3, 0.2, 0.1])
POSITIVE = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0], bool)


def test_youden_threshold() -> None:
    # at >=0.6: tpr 3/4, fpr 1/5 -> J 0.55 (best); at >=0.35: tpr 1, fpr 2/5 -> J 0.6 -> best is 0.35
    # next lower score is 0.3 -> midpoint 0.325
    assert choose_threshold(POSITIVE, SCORES, "youden") == pytest.approx(0.325)


def test_recall_threshold() -> None:
    # recall >= 0.5 first reached at score 0.8 (2 of 4); next lower score 0.7 -> 0.75
    assert choose_threshold(POSITIVE, SCORES, "recall:0.5") == pytest.approx(0.75)
    # recall 0.9 needs all four positives: lowest positive 0.35, next lower 0.3 -> 0.325
    assert choose_threshold(POSITIVE, SCORES, ThresholdPolicy("recall", 0.9)) == pytest.approx(0.325)


def test_f1_threshold() -> None:
    # >=0.8: P1 R.5 F.667; >=0.6: P.75 R.75 F.75; >=0.35: P4/6 R1 F.8 (best) -> midpoint 0.325
    assert choose_threshold(POSITIVE, SCORES, "f1") == pytest.approx(0.325)
    f1 = [skm.f1_score(POSITIVE, t <= SCORES) for t in np.unique(SCORES)]
    assert max(f1) == pytest.approx(skm.f1_score(POSITIVE, SCORES >= 0.325))


def test_threshold_none_and_one_class() -> None:
    assert choose_threshold(POSITIVE, SCORES, "none") is None
    assert choose_threshold(np.ones(3, bool), np.array([0.2, 0.5, 0.9]), "youden") is None


@pytest.mark.parametrize("text", ["recall", "recall:1.5", "recall:abc", "best", ""])
def test_bad_policy_is_a_user_error(text: str) -> None:
    with pytest.raises(UserError, match="threshold-policy"):
        ThresholdPolicy.parse(text)


def test_calibration_record_round_trips_policy() -> None:
    record = calibration_record(1.5, 0.3, "forward_head", ThresholdPolicy.parse("recall:0.9"), "val", 10)
    assert record == {
        "temperature": 1.5,
        "threshold": 0.3,
        "positive_class": "forward_head",
        "policy": "recall:0.9",
        "fitted_on": "val",
        "n": 10,
    }


def test_logit_metrics_are_the_split_metrics_of_softmax_and_argmax(fixed_predictions) -> None:
    from scipy.special import softmax as scipy_softmax

    from posture.evaluation.metrics import SplitMetrics, logit_metrics

    y, proba, _ = fixed_predictions
    logits = np.log(proba)
    m = logit_metrics(logits, y, NAMES)
    assert set(m) == set(SplitMetrics.__annotations__)
    assert m == classification_metrics(y, logits.argmax(1), scipy_softmax(logits, axis=1), NAMES, positive_index=0)
    empty = logit_metrics(np.zeros((0, 2)), np.zeros(0, int), NAMES)
    assert empty["n"] == 0 and empty["accuracy"] is None and empty["confusion_matrix"] == [[0, 0], [0, 0]]


def test_scores_in_another_layout_are_a_clear_error(fixed_predictions) -> None:
    from posture.evaluation.metrics import MetricsFormatError, split_metrics_from

    y, proba, pred = fixed_predictions
    current = classification_metrics(y, pred, proba, NAMES)
    assert split_metrics_from(current, "metrics.json 'val'") is current
    assert split_metrics_from(None, "metrics.json 'test'") is None
    old = {"n": 4, "loss": 0.3, "accuracy": 0.75, "balanced_accuracy": 0.75, "confusion_matrix": [[1, 1], [0, 2]]}
    with pytest.raises(
        MetricsFormatError,
        match=r"metrics.json 'val' is not in the current scores format "
        r"\(missing average_precision, ece, .*retrain or re-evaluate",
    ):
        split_metrics_from(old, "metrics.json 'val'")


def test_group_breakdown_has_balanced_accuracy_per_group() -> None:
    frame = pd.DataFrame(
        {
            "source": ["a"] * 4 + ["b"] * 2,
            "label": ["x", "x", "x", "y", "x", "y"],
            "predicted": ["x", "x", "x", "x", "y", "y"],
        }
    )
    table = group_breakdown(frame, "source").set_index("source")
    assert table.loc["a", "accuracy"] == pytest.approx(0.75) and table.loc["a", "balanced_accuracy"] == 0.5
    assert table.loc["b", "balanced_accuracy"] == 0.5
