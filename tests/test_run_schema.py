"""A run's config.json is checked whole when the run is loaded (issue 27, items 4 and 5).

Hand-edited and damaged configs used to crash predict, evaluate, export and the app with a
traceback (a section that is a string, a temperature that is not a number, a negative head
size...), or to answer nonsense (a zero temperature, NaN weights: ``forward_head nan``, exit 0).
Each is now one ``error:`` line naming the file and the field, exit code 2. Runs here are
trained and calibrated by the real commands' functions, so every section the code writes is in
them, and the hostile edits are made in the test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from _hostile_helpers import edit_config, one_error_line, train_fake_pose_run
from _pose_helpers import pose_photo
from _serving_helpers import make_run, write_photo
from posture.cli import run_main
from posture.inference.predict import NOT_A_NUMBER, Predictor
from posture.runs.checkpoint import load_checkpoint, read_config
from posture.runs.runconfig import ConfigFieldError, check_run_config, nesting_depth


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return train_fake_pose_run(tmp_path_factory.mktemp("schema"))


@pytest.fixture()
def broken(trained: tuple[Path, Path], tmp_path: Path) -> Path:
    """A copy of the trained run, to damage."""
    return Path(shutil.copytree(trained[1], tmp_path / "run"))


@pytest.fixture()
def image(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    from PIL import Image

    Image.fromarray(pose_photo("normal", 5)).save(path)
    return path


def predict_error(run: Path, image: Path, capsys: pytest.CaptureFixture[str]) -> str:
    from posture.inference.predict import main

    assert run_main(main, ["--run", str(run), str(image)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return one_error_line(captured.err)


def test_every_section_the_commands_write_passes(trained: tuple[Path, Path], fake_blazepose) -> None:
    _, run = trained
    config = read_config(run)
    assert {"pose", "calibration", "trained_on", "training", "head", "versions", "format_version"} <= set(config)
    assert config["pose"]["upright_reference"] and config["calibration"]["temperature"] > 0
    check_run_config(config)
    answer = Predictor.from_run(run).predict(pose_photo("normal", 11))
    assert answer.label is not None and np.isfinite(answer.confidence)


def test_a_cnn_run_and_an_older_run_without_the_optional_fields_load(
    broken: Path, tmp_path: Path, fake_blazepose
) -> None:
    check_run_config(read_config(make_run(tmp_path / "cnn")))
    config = json.loads((broken / "config.json").read_text())
    for key in ("format_version", "versions", "trained_on", "calibration", "extractor", "input_size", "weights"):
        config.pop(key)
    config["training"] = {}
    config["pose"] = {"features": [f["name"] for f in config["pose"]["features"]]}  # names only, nothing else
    (broken / "config.json").write_text(json.dumps(config))
    predictor = Predictor.from_run(broken)
    assert predictor.upright is None and predictor.temperature == 1.0
    assert predictor.predict(pose_photo("normal", 12)).label is not None


NESTED = {}
for _ in range(40):
    NESTED = {"x": [NESTED]}

#: (field, hostile value, what the error line must name): each crashed a reader with a traceback,
#: or (zero temperature, short upright reference) made it answer nonsense.
CORRUPTIONS: list[tuple[str, Any, str]] = [
    ("pose", "side view", "pose must be an object"),
    ("calibration", "hot", "calibration must be an object"),
    ("head", "linear", "head must be an object"),
    ("training", "yes", "training must be an object"),
    ("trained_on", "photos", "trained_on must be an object"),
    ("preprocessing", [224], "preprocessing must be an object"),
    ("calibration.temperature", "hot", "calibration.temperature"),
    ("calibration.temperature", 0, "calibration.temperature must be a number above 0"),
    ("calibration.temperature", -2.5, "calibration.temperature"),
    ("calibration.threshold", "high", "calibration.threshold"),
    ("calibration.threshold", 1.5, "calibration.threshold"),
    ("head.hidden", -3, "head.hidden"),
    ("head.hidden", 8.5, "head.hidden"),
    ("head.dropout", 1.0, "head.dropout"),
    ("pose.features", 5, "pose.features"),
    ("pose.features", [], "pose.features"),
    ("pose.features[0]", 7, "pose.features[0]"),
    ("pose.features[0].name", "neck_tilt", "pose.features[0]"),
    ("pose.geometry_version", "three", "pose.geometry_version"),
    ("pose.geometry_version", 2.5, "pose.geometry_version"),
    ("pose.upright_reference", [0.5], "pose.upright_reference has 1 value"),
    ("pose.upright_reference", "upright", "pose.upright_reference"),
    ("preprocessing.input_size", "big", "preprocessing.input_size"),
    ("preprocessing.input_size", True, "preprocessing.input_size"),
    ("preprocessing.mean", 5, "preprocessing.mean"),
    ("preprocessing.mean", [0.5, 0.5], "preprocessing.mean"),
    ("preprocessing.std", [0, 1, 1], "preprocessing.std[0]"),
    ("preprocessing.crop", "face", "preprocessing.crop"),
    ("classes", ["forward_head", "forward_head"], "classes"),
    ("trained_on.splits.train.used", "most", "trained_on.splits.train.used"),
    ("trained_on.sources", {"name": "x"}, "trained_on.sources"),
    ("versions", ["torch"], "versions"),
    ("notes", NESTED, "nests lists or objects"),
    ("pose.coverage", "all", "pose.coverage must be an object"),
    ("pose.coverage.range.world_head_drop", "wide", "pose.coverage.range.world_head_drop"),
    ("pose.coverage.range.world_head_drop", [2.0, -1.0], "runs from 2 down to -1"),
    ("pose.coverage.views.front", -4, "pose.coverage.views.front"),
    ("defaults", "chosen", "defaults must be an object"),
    ("defaults.nested.mean_over_sources", "high", "defaults.nested.mean_over_sources"),
]


@pytest.mark.parametrize(("field", "value", "named"), CORRUPTIONS, ids=[f"{c[0]}={c[1]!r}"[:60] for c in CORRUPTIONS])
def test_a_wrong_value_is_one_error_line_naming_the_file_and_the_field(
    field: str, value: Any, named: str, broken: Path, image: Path, capsys, fake_blazepose
) -> None:
    edit_config(broken, field, value)
    line = predict_error(broken, image, capsys)
    assert "config.json" in line and named in line, line


def test_a_file_nested_deeper_than_the_parser_goes_is_damaged_not_a_crash(broken: Path, image: Path, capsys) -> None:
    depth = 200_000
    (broken / "config.json").write_text('{"architecture": "pose", "classes": ' + "[" * depth + "]" * depth + "}")
    line = predict_error(broken, image, capsys)
    assert "config.json" in line and "too deeply" in line
    assert nesting_depth([[[]]]) == 3 and nesting_depth(NESTED) > 16


def test_a_short_upright_reference_stops_evaluate_export_and_the_app_too(
    trained: tuple[Path, Path], broken: Path, capsys, monkeypatch: pytest.MonkeyPatch, fake_blazepose
) -> None:
    """predict crashed on it while evaluate and export accepted it: now all refuse it alike."""
    import signal

    from app.__main__ import main as app_main
    from posture.inference.evaluate import main as evaluate_main
    from posture.inference.export import main as export_main

    edit_config(broken, "pose.upright_reference", [0.5])
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # the app installs a SIGTERM handler
    for main, argv in [
        (evaluate_main, ["--run", str(broken), "--data", str(trained[0]), "--split", "test"]),
        (export_main, ["--run", str(broken)]),
        (app_main, ["--run", str(broken)]),
    ]:
        assert run_main(main, argv) == 2
        line = one_error_line(capsys.readouterr().err)
        assert "config.json" in line and "pose.upright_reference" in line, line
    assert not (broken / "model.onnx").exists()


def test_the_checker_names_nested_fields() -> None:
    with pytest.raises(ConfigFieldError) as caught:
        check_run_config({"architecture": "pose", "classes": ["a", "b"], "preprocessing": {"mean": [0, 0, "x"]}})
    assert caught.value.field == "preprocessing.mean[2]"
    with pytest.raises(ConfigFieldError, match="classes is missing"):
        check_run_config({"architecture": "pose", "preprocessing": {}})


# --------------------------------------------------------------------- item 5: NaN weights, NaN answers


def _poison(run: Path, value: float) -> None:
    weights = run / "model.safetensors"
    tensors = load_file(str(weights))
    name = next(k for k, t in tensors.items() if t.is_floating_point() and "head" in k)
    tensors[name] = torch.full_like(tensors[name], value)
    save_file(tensors, str(weights))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_weights_are_refused_by_predict_evaluate_and_the_app(
    value: float, trained: tuple[Path, Path], broken: Path, image: Path, capsys, monkeypatch, fake_blazepose
) -> None:
    import signal

    from app.__main__ import main as app_main
    from posture.inference.evaluate import main as evaluate_main

    _poison(broken, value)
    line = predict_error(broken, image, capsys)
    assert "model.safetensors" in line and "NaN or infinite" in line and "retrain" in line
    monkeypatch.setattr(signal, "signal", lambda *args: None)
    for main, argv in [
        (evaluate_main, ["--run", str(broken), "--data", str(trained[0]), "--split", "test"]),
        (app_main, ["--run", str(broken)]),
    ]:
        assert run_main(main, argv) == 2
        assert "model.safetensors" in one_error_line(capsys.readouterr().err)
    with pytest.raises(Exception, match="NaN or infinite"):
        load_checkpoint(broken)


class _NanBackend:
    name = "broken"

    def logits(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(inputs.values())))
        return np.full((n, 2), np.nan, np.float32)


def test_an_answer_that_is_not_a_number_is_refused_not_printed(tmp_path: Path, capsys) -> None:
    """Whatever slips past loading (a damaged model.onnx), NaN never reaches a label or the JSON."""
    from posture.inference.predict import predict_paths

    good = Predictor.from_run(make_run(tmp_path / "cnn"), backend="torch")
    predictor = Predictor(good.config, _NanBackend(), model=good.model, run_dir=good.run_dir)
    answer = predictor.predict(np.full((40, 30, 3), 128, np.uint8))
    assert answer.label is None and answer.confidence is None and answer.reason == NOT_A_NUMBER
    photo = write_photo(tmp_path / "p.png")
    predict_paths(predictor, [str(photo)], as_json=True)
    out = capsys.readouterr().out
    record = json.loads(out)
    assert record["label"] is None and record["reason"] == NOT_A_NUMBER and "NaN" not in out
