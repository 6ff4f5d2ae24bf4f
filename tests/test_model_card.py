"""The app's model card tells what a run learnt from and headlines only scores on real photos."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from _evaluate_helpers import make_dataset, make_run
from _markup_helpers import shown_text
from _serving_helpers import finetune_metrics
from app.card import NOT_MEASURED, model_card
from posture.evaluation.provenance import training_record
from posture.inference.evaluate import EvalConfig, evaluate
from posture.inference.predict import Predictor
from posture.runs.checkpoint import update_config


def _synthetic_drop(root: Path) -> Path:
    """A dataset shaped as ``posture.synth → posture.ingest`` leaves it: synth file names under
    ``source_path`` and the angle and keypoint columns synth writes (the pictures are the test's own)."""
    data = make_dataset(root)
    manifest = pd.read_csv(data / "manifest.csv")
    manifest["source_path"] = [f"{label}/s{i % 3:03d}_{i:04d}.jpg" for i, label in enumerate(manifest["label"])]
    manifest["source"] = "raw-sample"
    manifest["subject"] = [f"s{i % 3:03d}" for i in range(len(manifest))]
    for column, value in (("cva_deg", 40.0), ("ear_x", 10.0), ("ear_y", 12.0), ("c7_x", 8.0), ("c7_y", 30.0)):
        manifest[column] = value
    manifest.to_csv(data / "manifest.csv", index=False)
    return data


def _headline(card: str) -> str:
    """The first bullet after the run's name and what it reads: where the card's claim sits."""
    return [line for line in card.splitlines() if line.startswith("- ")][2]


def _shown(markdown: str) -> str:
    """What a visitor reads (names from the data are escaped in the card's Markdown)."""
    return shown_text(markdown).strip()


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("card")
    data = _synthetic_drop(root / "synthetic")
    run = make_run(root / "run", architecture="classic_lenet5", input_size=32, train_on=data, steps=3)
    update_config(run, trained_on=training_record(data))
    (run / "metrics.json").write_text(json.dumps(finetune_metrics(val_correct=35, n=36, test_correct=36)))
    return run, data


def test_synthetic_only_says_real_accuracy_is_not_measured(synthetic_run: tuple[Path, Path]) -> None:
    run, _ = synthetic_run
    card = model_card(Predictor.from_run(run, backend="torch"))
    assert _headline(card) == f"- **{NOT_MEASURED}**"
    assert "On real photos" not in card
    assert "Trained on: synthetic pictures (posture.synth): 8 pictures of 3 generated people" in _shown(card)
    # the synthetic scores appear once, on a line that names them synthetic
    percent_lines = [line for line in card.splitlines() if "%" in line]
    assert len(percent_lines) == 1 and "held-out synthetic pictures, not photos" in percent_lines[0]
    assert "97.2%" in percent_lines[0] and "100.0%" in percent_lines[0]


def test_an_evaluation_on_synthetic_pictures_is_no_real_score(synthetic_run: tuple[Path, Path], tmp_path: Path) -> None:
    import shutil

    run, data = synthetic_run
    copy = Path(shutil.copytree(run, tmp_path / "run"))
    evaluate(EvalConfig(run=copy, data=data, gradcam=False, top_k=0, device="cpu"))
    assert json.loads((copy / "eval" / "report.json").read_text())["data_provenance"]["kind"] == "synthetic"
    assert _headline(model_card(Predictor.from_run(copy, backend="torch"))) == f"- **{NOT_MEASURED}**"


@pytest.mark.slow
def test_an_evaluation_on_real_photos_is_the_headline(synthetic_run: tuple[Path, Path], tmp_path: Path) -> None:
    import shutil

    run, _ = synthetic_run
    copy = Path(shutil.copytree(run, tmp_path / "run"))
    photos = make_dataset(tmp_path / "photos", counts={"test": 6}, seed=5)  # camera-like names: real photos
    report = evaluate(
        EvalConfig(run=copy, data=photos, split="all", out=copy / "eval_real", gradcam=False, top_k=0, device="cpu")
    )
    card = model_card(Predictor.from_run(copy, backend="torch"))
    headline = _headline(card)
    assert _shown(headline).startswith(
        f"On real photos: balanced accuracy {report['balanced_accuracy']:.1%} "
        "on photos [(all rows)] (12 photos of 3 people; 12 assessed, coverage 100.0%)"
    )
    for group in report["by_source"]:
        assert f"{group['source']} {group['balanced_accuracy']:.1%} (n={group['n']})" in _shown(headline)
    assert NOT_MEASURED not in card
    assert "**Trained on:** synthetic pictures" in card and "held-out synthetic pictures, not photos" in card
    lines = card.splitlines()
    assert lines.index(headline) < next(i for i, line in enumerate(lines) if "synthetic pictures, not photos" in line)
    # recalibrating afterwards makes the stored score stale, and the card says so
    update_config(copy, calibration={"temperature": 2.0, "threshold": 0.3, "positive_class": "forward_head"})
    assert "scored with another calibration" in _headline(model_card(Predictor.from_run(copy, backend="torch")))


def test_a_real_trained_run_says_which_photos_and_people(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "clinic")
    run = make_run(tmp_path / "run", architecture="classic_lenet5", input_size=32)
    update_config(run, trained_on=training_record(data))
    metrics = finetune_metrics(val_correct=9, n=12, test_correct=11)
    (run / "metrics.json").write_text(json.dumps(metrics))
    card = model_card(Predictor.from_run(run, backend="torch"))
    assert _headline(card) == (
        "- **On held-out real photos** (this data set's test split, people absent from "
        f"training): balanced accuracy **{metrics['test']['balanced_accuracy']:.1%}** (n=12)"
    )
    assert "Trained on: real photos: 8 photos of 3 people from drop_a, drop_b" in _shown(card)
    assert "synthetic" not in card and NOT_MEASURED not in card


def test_reports_that_do_not_say_what_they_scored_are_left_out(
    synthetic_run: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    run, _ = synthetic_run
    copy = Path(shutil.copytree(run, tmp_path / "run"))
    (copy / "eval").mkdir()
    (copy / "eval" / "report.json").write_text(json.dumps({**finetune_metrics(12, 12)["val"], "split": "test"}))
    (copy / "metrics.json").write_text(json.dumps({"val": {"n": 4, "loss": 0.3, "accuracy": 0.97}}))  # an old layout
    with caplog.at_level(logging.WARNING):
        card = model_card(Predictor.from_run(copy, backend="torch"))
    assert _headline(card) == f"- **{NOT_MEASURED}**" and "%" not in card
    assert "does not say what data it scored" in caplog.text
    assert "metrics.json 'val' is not in the current scores format" in caplog.text
