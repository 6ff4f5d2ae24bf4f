"""The Predictor and ``python -m posture.predict``: one preprocessing path, calibration, backends, CLI."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from _serving_helpers import CLASSES, make_run, photo, write_photo
from posture.cli import UserError, run_main
from posture.data.transforms import build_eval_transform
from posture.inference.predict import ONNX_NAME, Predictor, main, resolve_backend, softmax
from posture.runtime.device import physical_cores


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("predict") / "run")


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """A class-per-folder dataset of four small photos of different shapes."""
    for i, (label, size) in enumerate(
        [("forward_head", (96, 72)), ("forward_head", (50, 120)), ("normal", (80, 80)), ("normal", (120, 40))]
    ):
        write_photo(tmp_path / "data" / label / f"img{i}.png", seed=i, size=size)
    return tmp_path / "data"


def test_preprocessing_equals_the_datasets_eval_transform(run: Path, folder: Path) -> None:
    """No train/serve skew: the Predictor feeds the model what the training data pipeline would."""
    from posture.data.datasets import open_dataset

    predictor = Predictor.from_run(run, backend="torch")
    dataset = open_dataset(folder, transform=build_eval_transform(predictor.preprocessing))
    for i in range(len(dataset)):
        tensor, _ = dataset[i]
        np.testing.assert_array_equal(predictor.preprocess(dataset.image_path(i)), tensor.numpy())


@pytest.mark.slow
def test_probabilities_equal_the_evaluations(run: Path, folder: Path, tmp_path: Path) -> None:
    """``posture.evaluate`` scores through the Predictor, so its predictions.csv matches ours."""
    from posture.inference.evaluate import EvalConfig, evaluate

    evaluate(EvalConfig(run=run, data=folder, calibration="keep", gradcam=False, out=tmp_path / "eval", device="cpu"))
    table = pd.read_csv(tmp_path / "eval" / "predictions.csv")
    predictor = Predictor.from_run(run, backend="torch")
    ours = predictor.predict_proba([folder / p for p in table["path"]])
    theirs = table[[f"p_{c}" for c in CLASSES]].to_numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_every_input_kind_gives_the_same_answer(run: Path, tmp_path: Path) -> None:
    predictor = Predictor.from_run(run, backend="torch")
    path = write_photo(tmp_path / "p.png", seed=3)
    rgb = photo(3)
    inputs = [rgb, Image.fromarray(rgb), path, str(path), path.read_bytes()]
    probs = predictor.predict_proba(inputs)
    np.testing.assert_allclose(probs, np.repeat(probs[:1], len(inputs), axis=0), atol=1e-6)
    assert probs.shape == (5, 2) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_temperature_and_threshold_from_the_run_are_applied(tmp_path: Path) -> None:
    images = [photo(i) for i in range(4)]
    plain = Predictor.from_run(make_run(tmp_path / "plain"), backend="torch")
    logits = plain.logits(images)
    p_fh = softmax(logits, 2.5)[:, 0]
    threshold = float(np.sort(p_fh)[1] + 1e-4)  # between the 2nd and 3rd of four: a split decision
    calibrated = Predictor.from_run(
        make_run(
            tmp_path / "cal",
            calibration={
                "temperature": 2.5,
                "threshold": threshold,
                "positive_class": "forward_head",
                "policy": "test",
            },
        ),
        backend="torch",
    )
    assert calibrated.temperature == 2.5 and calibrated.threshold == pytest.approx(threshold)
    np.testing.assert_allclose(calibrated.predict_proba(images), softmax(logits, 2.5), atol=1e-6)
    np.testing.assert_allclose(calibrated.predict_proba(images, calibrated=False), softmax(logits), atol=1e-6)
    labels = [p.label for p in calibrated.predict_many(images)]
    assert labels == ["forward_head" if p >= threshold else "normal" for p in p_fh]
    assert labels.count("forward_head") == 2
    # the confidence is the decided class's probability, even when it is not the larger one
    pred = calibrated.predict(images[0])
    assert pred.confidence == pytest.approx(pred.probabilities[pred.label])


def test_auto_backend_prefers_an_up_to_date_onnx(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    assert resolve_backend(run, "auto") == "torch"  # no model.onnx yet
    with pytest.raises(UserError, match="posture.export"):
        resolve_backend(run, "onnx")
    onnx_path = run / ONNX_NAME
    onnx_path.write_bytes(b"placeholder")
    weights = run / "model.safetensors"
    os.utime(weights, (1_000_000, 1_000_000))
    assert resolve_backend(run, "auto") == "onnx"
    os.utime(onnx_path, (500_000, 500_000))  # weights retrained after the export: stale
    assert resolve_backend(run, "auto") == "torch"
    assert resolve_backend(run, "torch") == "torch"
    with pytest.raises(UserError, match="unknown backend"):
        resolve_backend(run, "tensorrt")


def test_physical_cores_is_a_sensible_thread_count() -> None:
    assert 1 <= physical_cores() <= (os.cpu_count() or 1)


# ----------------------------------------------------------------------------------------------- CLI


def test_cli_prints_one_json_line_per_image_and_reports_failures(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_photo(tmp_path / "in" / "a.png", seed=1)
    write_photo(tmp_path / "in" / "sub" / "b.jpg", seed=2)
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    single = write_photo(tmp_path / "c.png", seed=3)
    code = run_main(
        main,
        [
            "--run",
            str(run),
            "--json",
            "--backend",
            "torch",
            str(tmp_path / "in"),
            str(single),
            str(tmp_path / "missing.png"),
        ],
    )
    assert code == 1  # some inputs failed...
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_name = {Path(d["path"]).name: d for d in lines}
    assert set(by_name) == {"a.png", "b.jpg", "broken.jpg", "c.png", "missing.png"}  # ...but every one answered
    good = by_name["a.png"]
    assert good["label"] in CLASSES and set(good["probabilities"]) == set(CLASSES)
    assert good["confidence"] == pytest.approx(good["probabilities"][good["label"]])
    assert "error" in by_name["broken.jpg"] and "error" in by_name["missing.png"]
    expected = Predictor.from_run(run, backend="torch").predict(single)
    assert by_name["c.png"]["probabilities"] == pytest.approx(expected.probabilities, abs=1e-6)


def test_cli_text_output_and_glob_exit_zero_when_all_succeed(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(3):
        write_photo(tmp_path / f"shot{i}.png", seed=i)
    code = run_main(main, ["--run", str(run), "--backend", "torch", str(tmp_path / "shot*.png")])
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and len(out) == 3
    path, label, confidence, probs = out[0].split("\t")
    assert path.endswith("shot0.png") and label in CLASSES and 0.0 <= float(confidence) <= 1.0
    assert "forward_head=" in probs and "normal=" in probs


def test_cli_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(main, ["--run", str(tmp_path / "nope"), "x.png"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "not a trained run" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        main(["--run", str(tmp_path)])  # no images: argparse says so
    assert exc.value.code == 2


def test_predict_accepts_bytes_of_a_real_jpeg(run: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(photo(5, (300, 200))).save(buffer, format="JPEG")
    pred = Predictor.from_run(run, backend="torch").predict(buffer.getvalue())
    assert pred.label in CLASSES


# ------------------------------------------------------------------------------- damaged run folders


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _edit_config(run: Path, **changes: object) -> None:
    config = json.loads((run / "config.json").read_text())
    config.update(changes)
    (run / "config.json").write_text(json.dumps(config))


def _interrupted(run: Path) -> None:
    """What a killed ``finetune`` leaves, here with its state damaged too: only ``.resume/``."""
    for name in ("config.json", "model.safetensors", "metrics.json"):
        (run / name).unlink()
    (run / ".resume").mkdir()
    (run / ".resume" / "state.json").write_text('{"epoch": 3, "optim')
    (run / ".resume" / "state.safetensors").write_bytes(b"\x00\x01 not tensors")


#: How a run folder gets damaged → (what the one error line must name, a word of what to do, extra CLI args).
DAMAGES = {
    "truncated weights": (lambda run: _truncate(run / "model.safetensors"), "model.safetensors", "again", []),
    "weights that are not safetensors": (
        lambda run: (run / "model.safetensors").write_bytes(b"PK\x03\x04 zip?"),
        "model.safetensors",
        "again",
        [],
    ),
    "config that is not JSON": (lambda run: _truncate(run / "config.json", 0.6), "config.json", "again", []),
    "config that is not an object": (
        lambda run: (run / "config.json").write_text("[1, 2]"),
        "config.json",
        "again",
        [],
    ),
    "config without classes": (
        lambda run: (run / "config.json").write_text(
            json.dumps({k: v for k, v in json.loads((run / "config.json").read_text()).items() if k != "classes"})
        ),
        "classes",
        "again",
        [],
    ),
    "more classes than the weights": (lambda run: _edit_config(run, classes=["a", "b", "c"]), "3 classes", "again", []),
    "broken model.onnx asked for": (
        lambda run: (run / ONNX_NAME).write_bytes(b"\x08\x07\x12\x04half"),
        "model.onnx",
        "posture.export",
        ["--backend", "onnx"],
    ),
    "an interrupted run with damaged state": (_interrupted, "interrupted", "--resume", []),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_run_folder_is_one_error_line_naming_the_file(
    damage: str, run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    make_damage, named, remedy, extra = DAMAGES[damage]
    broken = Path(shutil.copytree(run, tmp_path / "run"))
    make_damage(broken)
    image = write_photo(tmp_path / "p.png", seed=1)
    assert run_main(main, ["--run", str(broken), *extra, str(image)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert "Traceback" not in captured.err and captured.out == ""
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert named in lines[0] and remedy in lines[0], lines[0]


def test_a_broken_onnx_beside_good_weights_falls_back_to_torch_with_a_warning(
    run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import shutil

    broken = Path(shutil.copytree(run, tmp_path / "run"))
    (broken / ONNX_NAME).write_bytes(b"\x08\x07\x12\x04half an onnx graph")  # newer than the weights
    assert resolve_backend(broken, "auto") == "onnx"
    with caplog.at_level(logging.WARNING):
        predictor = Predictor.from_run(broken, backend="auto")
    assert predictor.backend_name == "torch"
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "model.onnx" in warning and "posture.export" in warning
    expected = Predictor.from_run(run, backend="torch").predict(photo(3))
    assert predictor.predict(photo(3)).probabilities == pytest.approx(expected.probabilities)
