"""``python -m posture.export``: ONNX graph, parity with PyTorch, and failing loudly without leftovers."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import posture.inference.export as export_mod
from _serving_helpers import make_run, photo, write_photo
from posture.cli import run_main
from posture.inference.export import ExportConfig, ParityError, export_onnx, main
from posture.inference.predict import ONNX_NAME, Predictor


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = make_run(tmp_path_factory.mktemp("export") / "run")
    export_onnx(ExportConfig(run_dir=run))
    return run


def test_export_writes_a_graph_that_matches_torch(exported: Path) -> None:
    """ONNX parity: on photos the export never saw, probabilities agree within 1e-4."""
    images = [photo(seed, size) for seed, size in [(11, (90, 60)), (12, (40, 130)), (13, (64, 64))]]
    torch_probs = Predictor.from_run(exported, backend="torch").predict_proba(images)
    onnx_pred = Predictor.from_run(exported, backend="onnx")
    assert onnx_pred.backend_name == "onnx" and onnx_pred.model is not None  # torch model kept for Grad-CAM
    assert np.max(np.abs(onnx_pred.predict_proba(images) - torch_probs)) <= 1e-4


def test_graph_has_a_dynamic_batch_axis_opset_17_and_metadata(exported: Path) -> None:
    import onnx
    import onnxruntime as ort

    proto = onnx.load(str(exported / ONNX_NAME))
    assert max(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")) >= 17
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
    assert meta["posture.classes"] == ["forward_head", "normal"]
    assert meta["posture.preprocessing"]["input_size"] == 64
    session = ort.InferenceSession(str(exported / ONNX_NAME), providers=["CPUExecutionProvider"])
    for n in (1, 5):
        out = session.run(None, {"input": np.zeros((n, 3, 64, 64), np.float32)})[0]
        assert out.shape == (n, 2)


def test_auto_backend_picks_the_export(exported: Path) -> None:
    assert Predictor.from_run(exported).backend_name == "onnx"


def test_parity_failure_exits_1_and_leaves_no_model_onnx(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A graph that computes something else (here: a perturbed copy of the model) must not be kept,
    and an older export must not survive to answer for these weights either."""
    run = make_run(tmp_path / "run")
    (run / ONNX_NAME).write_bytes(b"an older export")
    real_export = export_mod.export_graph

    def export_perturbed(model: torch.nn.Module, path: Path, input_size: int, opset: int) -> None:
        wrong = copy.deepcopy(model)
        last = [m for m in wrong.head.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.bias[0] += 1.0  # shifts class 0's logit only, so the probabilities move
        real_export(wrong, path, input_size, opset)

    monkeypatch.setattr(export_mod, "export_graph", export_perturbed)
    with pytest.raises(ParityError, match="disagree"):
        export_onnx(ExportConfig(run_dir=run))
    assert not (run / ONNX_NAME).exists()
    assert run_main(main, ["--run", str(run)]) == 1
    assert "disagree" in capsys.readouterr().err
    assert not (run / ONNX_NAME).exists() and not list(run.glob(".model.onnx*"))


def test_cli_exports_with_given_images_and_reports_the_difference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run(tmp_path / "run")
    for i in range(2):
        write_photo(tmp_path / "imgs" / f"{i}.png", seed=i)
    assert run_main(main, ["--run", str(run), "--images", str(tmp_path / "imgs")]) == 0
    out = capsys.readouterr().out
    assert "parity on 2 images" in out and (run / ONNX_NAME).is_file()
    assert run_main(main, ["--run", str(run), "--opset", "13"]) == 2
    assert run_main(main, ["--run", str(tmp_path / "missing")]) == 2


def test_an_exporter_crash_is_one_error_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run(tmp_path / "run")

    def unsupported(*args: object) -> None:
        raise RuntimeError("Exporting the operator 'aten::fancy' to ONNX opset version 17 is not supported")

    monkeypatch.setattr(export_mod, "export_graph", unsupported)
    assert run_main(main, ["--run", str(run)]) == 1
    err = capsys.readouterr().err
    assert "could not export efficientnet_lite0" in err and "aten::fancy" in err and "Traceback" not in err
    assert not (run / ONNX_NAME).exists() and not list(run.glob(".model.onnx*"))
