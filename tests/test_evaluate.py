"""python -m posture.evaluate end to end on a tiny run and a tiny dataset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from _evaluate_helpers import CLASSES, make_dataset, make_run
from posture.cli import run_main
from posture.inference.calibrate import main as calibrate_main
from posture.inference.evaluate import main
from posture.inference.predict import Predictor

EVAL_FILES = [
    "report.json",
    "predictions.csv",
    "confusion_matrix.csv",
    "confusion_matrix.png",
    "roc_curve.png",
    "pr_curve.png",
    "reliability.png",
    "top_losses.png",
    "by_subject.csv",
    "by_source.csv",
]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    """One evaluation shared by the tests below (the expensive part runs once)."""
    root = tmp_path_factory.mktemp("evaluate")
    data = make_dataset(root / "ds")
    run = make_run(root / "run", architecture="classic_lenet5", input_size=32, train_on=data, steps=3)
    import contextlib
    import io

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert (
            run_main(calibrate_main, ["--run", str(run), "--data", str(data), "--threshold-policy", "recall:0.9", "-q"])
            == 0
        )
        calibrated = (run / "config.json").read_bytes()
        code = run_main(main, ["--run", str(run), "--data", str(data), "--top-k", "3", "-q"])
    assert code == 0
    return {
        "root": root,
        "data": data,
        "run": run,
        "eval": run / "eval",
        "stdout": stdout.getvalue(),
        "config_after_calibrate": calibrated,
    }


@pytest.mark.slow
def test_cli_writes_every_file_and_prints_a_summary(evaluated) -> None:
    for name in EVAL_FILES:
        assert (evaluated["eval"] / name).is_file(), name
    out = evaluated["stdout"]
    assert "balanced accuracy" in out and "confusion matrix" in out and "forward_head" in out


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in EVAL_FILES if n.endswith(".png")])
def test_pngs_are_valid_images_of_sensible_size(evaluated, name: str) -> None:
    with Image.open(evaluated["eval"] / name) as image:
        image.verify()
    with Image.open(evaluated["eval"] / name) as image:
        assert image.format == "PNG"
        assert 200 <= image.width <= 4000 and 200 <= image.height <= 4000


@pytest.mark.slow
def test_confusion_csv_agrees_with_predictions(evaluated) -> None:
    predictions = pd.read_csv(evaluated["eval"] / "predictions.csv")
    confusion = pd.read_csv(evaluated["eval"] / "confusion_matrix.csv").set_index("true_label")
    crosstab = pd.crosstab(predictions["label"], predictions["predicted"]).reindex(
        index=CLASSES, columns=CLASSES, fill_value=0
    )
    np.testing.assert_array_equal(confusion[CLASSES].to_numpy(), crosstab.to_numpy())
    np.testing.assert_allclose(confusion[[f"rate_{c}" for c in CLASSES]].sum(axis=1), 1.0)
    report = json.loads((evaluated["eval"] / "report.json").read_text())
    assert report["confusion_matrix"] == crosstab.to_numpy().tolist()
    assert report["accuracy"] == pytest.approx((predictions["label"] == predictions["predicted"]).mean())
    assert report["n"] == len(predictions) == 12  # the test split only


@pytest.mark.slow
def test_predictions_csv_columns_and_probabilities(evaluated) -> None:
    predictions = pd.read_csv(evaluated["eval"] / "predictions.csv", dtype={"subject": str})
    for column in ["path", "subject", "source", "label", "predicted", "p_forward_head", "p_normal"]:
        assert column in predictions.columns
    np.testing.assert_allclose(predictions[["p_forward_head", "p_normal"]].sum(axis=1), 1.0, atol=1e-5)
    # the same numbers the Predictor (CLI, app) gives for the same files: one preprocessing path
    predictor = Predictor.from_run(evaluated["run"])
    paths = [evaluated["data"] / p for p in predictions["path"][:4]]
    np.testing.assert_allclose(predictor.predict_proba(paths)[:, 0], predictions["p_forward_head"][:4], atol=1e-5)
    assert [p.label for p in predictor.predict_many(paths)] == predictions["predicted"][:4].tolist()


@pytest.mark.slow
def test_calibrate_stores_it_in_the_run_and_evaluate_only_reads_it(evaluated) -> None:
    config = json.loads((evaluated["run"] / "config.json").read_text())
    calibration = config["calibration"]
    assert calibration["policy"] == "recall:0.9" and calibration["fitted_on"] == "val"
    assert calibration["positive_class"] == "forward_head" and calibration["n"] == 12
    assert calibration["data"] == str(evaluated["data"])
    predictor = Predictor.from_run(evaluated["run"])
    assert predictor.temperature == pytest.approx(calibration["temperature"])
    assert predictor.threshold == pytest.approx(calibration["threshold"])
    # evaluation changed nothing in the run: config.json is byte for byte what calibrate left
    assert (evaluated["run"] / "config.json").read_bytes() == evaluated["config_after_calibrate"]
    report = json.loads((evaluated["eval"] / "report.json").read_text())
    assert report["calibration"]["mode"] == "keep" and report["calibration"]["stored"] is True
    assert report["calibration"]["threshold"] == pytest.approx(calibration["threshold"])
    assert {"accuracy", "roc_auc", "ece", "log_loss"} <= set(report["uncalibrated"])
    assert "calibration (the run's stored one)" in evaluated["stdout"]


@pytest.mark.slow
def test_the_report_is_split_metrics_and_says_what_was_trained_on_and_scored(evaluated) -> None:
    from posture.evaluation.metrics import split_metrics_from

    report = json.loads((evaluated["eval"] / "report.json").read_text())
    assert split_metrics_from(report, "report.json") is report
    assert report["data_provenance"]["kind"] == "real" and report["data_provenance"]["photos"] == 12
    assert report["data_provenance"]["dataset"] == "ds" and report["data_provenance"]["subjects"] == 3
    assert report["trained_on"] is None  # this hand-made run records no training data; the summary says so
    assert "trained on: not recorded" in evaluated["stdout"]
    assert "scored on: real photos: 12 photos of 3 people from drop_a, drop_b" in evaluated["stdout"]


@pytest.mark.slow
def test_group_breakdowns(evaluated) -> None:
    by_subject = pd.read_csv(evaluated["eval"] / "by_subject.csv", dtype={"subject": str})
    by_source = pd.read_csv(evaluated["eval"] / "by_source.csv")
    assert sorted(by_subject["subject"]) == ["p0", "p1", "p2"] and by_subject["n"].sum() == 12
    assert sorted(by_source["source"]) == ["drop_a", "drop_b"]
    report = json.loads((evaluated["eval"] / "report.json").read_text())
    assert len(report["by_subject"]) == 3 and len(report["by_source"]) == 2


@pytest.mark.slow
def test_compare_writes_a_markdown_table(evaluated, capsys) -> None:
    out = evaluated["root"] / "compare.md"
    other = evaluated["root"] / "run_copy"
    shutil.copytree(evaluated["run"], other)
    assert (
        run_main(
            main, ["--compare", str(evaluated["run"]), str(other), "--out", str(out), "--latency-images", "2", "-q"]
        )
        == 0
    )
    table = out.read_text()
    lines = [line for line in table.splitlines() if line.startswith("|")]
    assert len(lines) == 4 and "latency" in lines[0] and "classic_lenet5" in lines[2]
    assert "run_copy" in lines[3]


def test_class_mismatch_is_one_clear_line(tmp_path: Path, capsys) -> None:
    data = make_dataset(tmp_path / "pets", counts={"test": 1}, classes=["cat", "dog"])
    run = make_run(tmp_path / "run", architecture="classic_lenet5", input_size=32)
    code = run_main(main, ["--run", str(run), "--data", str(data)])
    assert code == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: ")
    assert "['cat', 'dog']" in errors[0] and "forward_head" in errors[0]
    assert not (run / "eval").exists()


def test_user_mistakes_exit_2(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "ds", counts={"val": 1, "test": 1})
    run = make_run(tmp_path / "run", architecture="classic_lenet5", input_size=32)
    assert run_main(main, ["--run", str(run), "--data", str(tmp_path / "missing")]) == 2
    assert run_main(main, ["--run", str(tmp_path / "nope"), "--data", str(data)]) == 2
    assert run_main(main, ["--run", str(run), "--data", str(data), "--split", "holdout"]) == 2
    assert run_main(main, ["--run", str(run), "--data", str(data), "--top-k", "-1"]) == 2
    assert run_main(main, ["--compare", str(run)]) == 2  # not evaluated yet
    assert run_main(calibrate_main, ["--run", str(run), "--data", str(data), "--threshold-policy", "recall:2"]) == 2
    assert run_main(calibrate_main, ["--run", str(run), "--data", str(data), "--split", "holdout"]) == 2
    assert "calibration" not in json.loads((run / "config.json").read_text())
    tree = make_dataset(tmp_path / "tree", counts={"x": 1}, manifest=False)
    assert run_main(calibrate_main, ["--run", str(run), "--data", str(tree)]) == 2  # no validation split
    assert run_main(calibrate_main, ["--run", str(run), "--data", str(data), "-q"]) == 0
    # the rows the calibration was fitted on are refused, unless scored without it
    assert run_main(main, ["--run", str(run), "--data", str(data), "--split", "val"]) == 2
    assert run_main(main, ["--run", str(run), "--data", str(data), "--split", "all"]) == 2
    assert (
        run_main(
            main,
            [
                "--run",
                str(run),
                "--data",
                str(data),
                "--split",
                "val",
                "--calibration",
                "none",
                "--no-gradcam",
                "--top-k",
                "0",
                "-q",
            ],
        )
        == 0
    )


def test_with_calibration_is_a_new_predictor(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", architecture="classic_lenet5", input_size=32)
    plain = Predictor.from_run(run)
    tuned = plain.with_calibration({"temperature": 2.0, "threshold": 0.7, "positive_class": "normal"})
    assert (tuned.temperature, tuned.threshold, tuned.positive_class) == (2.0, 0.7, "normal")
    assert (plain.temperature, plain.threshold, plain.positive_class) == (1.0, None, "forward_head")
    assert "calibration" not in plain.config and tuned.config["calibration"]["threshold"] == 0.7
    assert tuned.decide(np.array([0.35, 0.65]))[0] == "forward_head"  # normal needs 0.7
    assert plain.decide(np.array([0.35, 0.65]))[0] == "normal"
    back = tuned.with_calibration(None)
    assert (back.temperature, back.threshold, back.positive_class) == (1.0, None, "forward_head")


def test_calibrate_help_names_the_step(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        calibrate_main(["--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "--threshold-policy" in out and "config.json" in out
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "posture.calibrate" in capsys.readouterr().out


@pytest.mark.slow
def test_class_folder_tree_keeps_the_stored_calibration(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "tree", counts={"x": 2}, manifest=False)
    run = make_run(tmp_path / "run", architecture="classic_lenet5", input_size=32)
    from posture.runs.checkpoint import update_config

    stored = {"temperature": 2.0, "threshold": 0.3, "positive_class": "forward_head", "policy": "f1"}
    update_config(run, calibration=stored)
    assert (
        run_main(
            main,
            [
                "--run",
                str(run),
                "--data",
                str(data),
                "--out",
                str(tmp_path / "out"),
                "--no-gradcam",
                "--top-k",
                "2",
                "-q",
            ],
        )
        == 0
    )
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["n"] == 4 and report["split"] == "(all rows)"
    assert report["calibration"]["mode"] == "keep" and report["calibration"]["temperature"] == 2.0
    assert json.loads((run / "config.json").read_text())["calibration"] == stored
    predictions = pd.read_csv(tmp_path / "out" / "predictions.csv")
    expected = np.where(predictions["p_forward_head"] >= 0.3, "forward_head", "normal")
    assert predictions["predicted"].tolist() == expected.tolist()
