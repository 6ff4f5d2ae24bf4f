"""Hostile inputs, round two (issue #27): each is one ``error:`` line and exit code 2, never a traceback.

* item 7: an ``--out`` that cannot be written (a parent that is a file, a path under ``/proc``,
  a folder without write permission) in ingest, finetune and evaluate, refused before the work;
* item 14: a run whose config.json names an architecture the zoo lacks beside a ``pose``
  section reports the architecture, not the pose section;
* item 15: binary garbage handed to ``posture.agreement`` as a label CSV.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _finetune_helpers import make_dataset, small_config
from _ingest_helpers import class_tree
from posture.cli import UserError, run_main
from posture.data import agreement
from posture.inference import evaluate
from posture.ingest import __main__ as ingest_cli
from posture.models import model_from_config
from posture.training import finetune

pytestmark = pytest.mark.usefixtures("restore_logging")


def _one_error_line(code: int, capsys: pytest.CaptureFixture[str]) -> str:
    """The command's only stderr line, after checking that it is one ``error:`` line and exit code 2."""
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ----------------------------------------------------------------------------- item 7: impossible --out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(dataset, an evaluated one-epoch run of it): what finetune and evaluate are pointed at."""
    tmp = tmp_path_factory.mktemp("round2")
    data = make_dataset(tmp / "ds", per_class={"train": 6, "val": 3, "test": 3})
    run = tmp / "run"
    finetune.run_finetune(small_config(data, run, tmp / "cache", epochs=1))
    evaluate.evaluate(evaluate.EvalConfig(run=run, data=data, gradcam=False, device="cpu", top_k=2))
    return data, run


def _parent_is_a_file(tmp_path: Path) -> Path:
    (tmp_path / "notes.txt").write_text("a file, not a folder\n")
    return tmp_path / "notes.txt" / "out"


def _under_proc(tmp_path: Path) -> Path:
    return Path("/proc/posture-no-such-folder/out")  # nobody, root included, creates folders there


def _no_permission(tmp_path: Path) -> Path:
    if os.geteuid() == 0:
        pytest.skip("root writes into a read-only folder; the other variants cover root")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    return locked / "out"


OUTS: dict[str, Callable[[Path], Path]] = {
    "parent_is_a_file": _parent_is_a_file,
    "under_proc": _under_proc,
    "no_permission": _no_permission,
}


def _ingest_argv(tmp_path: Path, out: Path, trained: tuple[Path, Path]) -> list[str]:
    src = class_tree(tmp_path / "drop", per_class=2)
    return [str(src), "--out", str(out), "--workers", "1", "--no-progress"]


def _finetune_argv(tmp_path: Path, out: Path, trained: tuple[Path, Path]) -> list[str]:
    fast = ["--model", "resnet18", "--weights", "none", "--epochs", "1", "--image-size", "32", "--workers", "0"]
    cache = ["--cache-dir", str(tmp_path / "cache"), "--extract-backend", "torch", "--device", "cpu"]
    return ["--data", str(trained[0]), "--out", str(out), *fast, *cache, "--no-progress"]


def _evaluate_argv(tmp_path: Path, out: Path, trained: tuple[Path, Path]) -> list[str]:
    data, run = trained
    return ["--run", str(run), "--data", str(data), "--out", str(out), "--no-gradcam", "--device", "cpu"]


def _compare_argv(tmp_path: Path, out: Path, trained: tuple[Path, Path]) -> list[str]:
    return ["--compare", str(trained[1]), "--out", str(out / "compare.md"), "--latency-images", "1"]


COMMANDS = {
    "ingest": (ingest_cli.main, _ingest_argv),
    "finetune": (finetune.main, _finetune_argv),
    "evaluate": (evaluate.main, _evaluate_argv),
    "evaluate_compare": (evaluate.main, _compare_argv),
}


@pytest.mark.parametrize("out_kind", list(OUTS))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_impossible_out_is_one_error_line(
    command: str, out_kind: str, trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = OUTS[out_kind](tmp_path)
    main, argv = COMMANDS[command]
    try:
        line = _one_error_line(run_main(main, argv(tmp_path, out, trained)), capsys)
    finally:
        if out_kind == "no_permission":
            out.parent.chmod(stat.S_IRWXU)
    assert "--out" in line and str(out.parent) in line
    assert not os.path.lexists(out)
    if out_kind == "no_permission":
        assert list(out.parent.iterdir()) == []


def test_an_existing_file_as_evaluate_out_is_one_error_line(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.txt"
    out.write_text("keep me\n")
    line = _one_error_line(run_main(evaluate.main, _evaluate_argv(tmp_path, out, trained)), capsys)
    assert "is a file, not a folder" in line and out.read_text() == "keep me\n"


# ----------------------------------------------------------------------------- item 14: bad architecture


POSE_SECTION = {"features": [{"name": "world_head_drop"}, {"name": "world_nose_forward"}]}


@pytest.mark.parametrize("architecture", ["os.system", "os.system+pose", "os.system\nerror: all is well"])
def test_a_run_config_with_a_bad_architecture_and_a_pose_section_names_the_architecture(architecture: str) -> None:
    config = {"architecture": architecture, "classes": ["forward_head", "normal"], "pose": POSE_SECTION}
    with pytest.raises(UserError) as caught:
        model_from_config(config)
    message = str(caught.value)
    assert repr(architecture) in message and "\n" not in message
    assert "pose features" not in message


def test_evaluate_on_a_run_whose_architecture_is_os_system_names_it(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, good = trained
    run = tmp_path / "run"
    shutil.copytree(good, run)
    config = json.loads((run / "config.json").read_text())
    config.update(architecture="os.system", pose=POSE_SECTION)
    (run / "config.json").write_text(json.dumps(config))
    line = _one_error_line(run_main(evaluate.main, ["--run", str(run), "--data", str(data), "--device", "cpu"]), capsys)
    assert "'os.system'" in line and "pose features" not in line


# ----------------------------------------------------------------------------- item 15: garbage label CSVs


def _image_bytes(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (48, 32), (200, 30, 30)).save(buf, format=fmt)
    return buf.getvalue()


GARBAGE: dict[str, Callable[[], bytes]] = {
    "random_bytes": lambda: np.random.default_rng(0).bytes(4096),
    "nul_bytes": lambda: b"\x00" * 512,
    "csv_with_nul_bytes": lambda: b"filename,label\na.jpg,normal\x00\x00\nb.jpg,forward_head\n",
    "non_utf8_blob": lambda: bytes(range(128, 256)) * 16,
    "png_renamed_csv": lambda: _image_bytes("PNG"),
    "jpeg_renamed_csv": lambda: _image_bytes("JPEG"),
    "control_characters": lambda: b"filename,label\na.jpg,normal\x01\x02\x1b[2J\n",
}
GOOD_CSV = "filename,label\na.jpg,normal\nb.jpg,forward_head\n"


@pytest.mark.parametrize("garbage", list(GARBAGE))
@pytest.mark.parametrize("position", ["first", "second", "shared"])
def test_garbage_given_as_a_label_csv_is_one_error_line_naming_it(
    garbage: str, position: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad, good = tmp_path / "labels.csv", tmp_path / "good.csv"
    bad.write_bytes(GARBAGE[garbage]())
    good.write_text(GOOD_CSV)
    argv = {
        "first": [str(bad), str(good)],
        "second": [str(good), str(bad)],
        "shared": [str(bad), "--labeler-a", "ann", "--labeler-b", "bob"],
    }[position]
    line = _one_error_line(run_main(agreement.main, argv), capsys)
    assert str(bad) in line and "text" in line
    assert line.isprintable()


def test_a_label_csv_with_a_bom_and_a_torn_last_character_still_compares(tmp_path: Path) -> None:
    """Text stays welcome: a spreadsheet's BOM, and a last row cut inside a character by a kill."""
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_bytes(b"\xef\xbb\xbf" + GOOD_CSV.encode() + "c\u00e9.jpg,normal".encode()[:2])  # ends in half an é
    b.write_text(GOOD_CSV + "d.jpg,normal\n", encoding="utf-8")
    report = agreement.labeler_agreement(a, b)
    assert (report.n_a, report.n_b, report.n_common, report.kappa) == (2, 3, 2, 1.0)
