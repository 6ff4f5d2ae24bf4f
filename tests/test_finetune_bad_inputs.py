"""Every user mistake gets one clear line (UserError) and leaves nothing half-written."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from _finetune_helpers import InjectedFailure, fail_after, make_dataset, small_config
from posture.cli import UserError, run_main
from posture.training.finetune import main, run_finetune

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = dict(epochs=2, aug_views=0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("bad") / "ds", per_class={"train": 6, "val": 3, "test": 3})


def _fails(cfg, match: str) -> None:
    with pytest.raises(UserError, match=match):
        run_finetune(cfg)
    assert not Path(cfg.out).exists(), "a failed run must not leave an output folder"


def test_a_dataset_with_one_class(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "ds", per_class={"train": 4, "val": 2, "test": 2}, labels_in=["normal"])
    _fails(small_config(ds, tmp_path / "out", tmp_path / "cache", **FAST), "only one class")


def test_an_empty_validation_split(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "ds", per_class={"train": 4, "test": 2})
    _fails(small_config(ds, tmp_path / "out", tmp_path / "cache", **FAST), "val split is empty")


def test_not_a_dataset(tmp_path: Path) -> None:
    _fails(small_config(tmp_path / "nowhere", tmp_path / "out", tmp_path / "cache", **FAST), "no such dataset")


def test_an_unknown_model_name_suggests_close_ones(dataset: Path, tmp_path: Path) -> None:
    _fails(
        small_config(dataset, tmp_path / "out", tmp_path / "cache", model="resnt18", **FAST), "did you mean.*resnet18"
    )


def test_missing_weights_offline_say_what_to_do(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    _fails(small_config(dataset, tmp_path / "out", tmp_path / "cache", weights=None, **FAST), "--weights none")


def test_a_missing_weights_file(dataset: Path, tmp_path: Path) -> None:
    _fails(
        small_config(dataset, tmp_path / "out", tmp_path / "cache", weights=str(tmp_path / "nope.pth"), **FAST),
        "does not exist",
    )


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("unfreeze", "some", "--unfreeze"),
        ("recipe", "adam_paper", "unknown recipe"),
        ("epochs", 0, "--epochs"),
        ("extract_backend", "tensorrt", "--extract-backend"),
    ],
)
def test_bad_options(dataset: Path, tmp_path: Path, field: str, value: object, match: str) -> None:
    """Refused when the configuration is made, before any folder exists."""
    with pytest.raises(UserError, match=match):
        small_config(dataset, tmp_path / "out", tmp_path / "cache", **{**FAST, field: value})
    assert not (tmp_path / "out").exists()


def test_a_corrupt_image_in_the_manifest_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ds = make_dataset(tmp_path / "ds", per_class={"train": 6, "val": 3, "test": 3})
    victim = ds / "images" / "train_normal_002.png"
    victim.write_bytes(victim.read_bytes()[:60])  # truncated upload
    with caplog.at_level(logging.WARNING):
        metrics = run_finetune(small_config(ds, tmp_path / "out", tmp_path / "cache", **FAST))
    assert [s["path"] for s in metrics["skipped_images"]] == ["images/train_normal_002.png"]
    assert "train_normal_002.png" in caplog.text
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_an_output_folder_with_another_run_is_refused_unless_overwrite(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_finetune(small_config(dataset, out, tmp_path / "cache", **FAST))
    before = (out / "model.safetensors").stat().st_mtime_ns
    with pytest.raises(UserError, match="already holds a finished run.*--overwrite"):
        run_finetune(small_config(dataset, out, tmp_path / "cache", **FAST))
    assert (out / "model.safetensors").stat().st_mtime_ns == before
    with pytest.raises(UserError, match="nothing to resume"):
        run_finetune(small_config(dataset, out, tmp_path / "cache", resume=True, **FAST))
    run_finetune(small_config(dataset, out, tmp_path / "cache", overwrite=True, **{**FAST, "seed": 3}))
    assert '"seed": 3' in (out / "config.json").read_text()


def test_an_interrupted_run_needs_resume_with_the_same_options(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(InjectedFailure):
        run_finetune(small_config(dataset, out, tmp_path / "cache", **FAST), after_epoch=fail_after(1))
    with pytest.raises(UserError, match="interrupted run.*--resume"):
        run_finetune(small_config(dataset, out, tmp_path / "cache", **FAST))
    with pytest.raises(UserError, match="different options"):
        run_finetune(small_config(dataset, out, tmp_path / "cache", resume=True, **{**FAST, "lr": 0.5}))
    run_finetune(small_config(dataset, out, tmp_path / "cache", resume=True, **FAST))
    assert (out / "metrics.json").is_file() and not (out / ".resume").exists()


@pytest.mark.usefixtures("restore_logging")
def test_the_cli_prints_one_error_line_not_a_traceback(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_main(
        main,
        [
            "--data",
            str(dataset),
            "--out",
            str(tmp_path / "out"),
            "--model",
            "resnt18",
            "--weights",
            "none",
            "--no-progress",
        ],
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "resnet18" in lines[0]
