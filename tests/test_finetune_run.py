"""python -m posture.finetune end to end on a tiny dataset: files, determinism, cache reuse, resume."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from _finetune_helpers import InjectedFailure, fail_after, make_dataset, small_config
from posture.models import model_from_config
from posture.runs.checkpoint import load_checkpoint
from posture.training.finetune import main, run_finetune

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RESULT_KEYS = ("best_epoch", "best_phase", "epochs_run", "val", "test", "classes")


def _results(metrics: dict) -> dict:
    return {k: metrics[k] for k in RESULT_KEYS}


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("ft") / "ds")


@pytest.fixture(scope="module")
def baseline(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, Path]:
    """One uninterrupted run that several tests compare against (and its cache)."""
    base = tmp_path_factory.mktemp("baseline")
    metrics = run_finetune(small_config(dataset, base / "run", base / "cache"))
    return base / "run", metrics, base / "cache"


def test_run_writes_a_loadable_checkpoint(baseline: tuple[Path, dict, Path]) -> None:
    run, metrics, _ = baseline
    for name in ("model.safetensors", "config.json", "metrics.json", "history.csv", "training_curve.png"):
        assert (run / name).is_file(), name
    assert not (run / ".resume").exists()
    assert not [p for p in run.parent.iterdir() if p.name.startswith(".")]  # no staging folders left

    config = json.loads((run / "config.json").read_text())
    assert config["architecture"] == "resnet18"
    assert config["classes"] == ["forward_head", "normal"]
    assert config["preprocessing"]["input_size"] == 32
    assert config["head"] == {"hidden": 0, "dropout": 0.0}
    assert config["weights"]["fingerprint"].startswith("random:")
    assert config["training"]["epochs"] == 8

    stored = json.loads((run / "metrics.json").read_text())
    assert stored["test"]["confusion_matrix"] == metrics["test"]["confusion_matrix"]
    assert sum(map(sum, stored["test"]["confusion_matrix"])) == stored["test"]["n"] == 12
    assert metrics["val"]["balanced_accuracy"] >= 0.9 and metrics["test"]["accuracy"] >= 0.9
    assert 1 <= metrics["best_epoch"] <= 8
    history = pd.read_csv(run / "history.csv")
    assert list(history["epoch"]) == list(range(1, 9))
    assert {"train_loss", "val_loss", "val_balanced_accuracy"} <= set(history.columns)

    # The run rebuilds through the zoo exactly as the predictor/evaluator will.
    ckpt = load_checkpoint(run)
    model = model_from_config(ckpt.config)
    model.load_state_dict(ckpt.state_dict)
    assert {k.split(".")[0] for k in ckpt.state_dict} == {"backbone", "head"}


def test_pathlib_paths_are_accepted_and_kept_as_text_for_config_json(dataset: Path, tmp_path: Path) -> None:
    cfg = replace(small_config(dataset, tmp_path / "run", tmp_path / "cache"), data=dataset, out=tmp_path / "run")
    assert (cfg.data, cfg.out) == (str(dataset), str(tmp_path / "run"))
    json.dumps(cfg.training_dict())  # what config.json stores: no Path left in it


def test_same_seed_same_result_and_the_cache_is_reused(
    dataset: Path, baseline: tuple[Path, dict, Path], tmp_path: Path
) -> None:
    run, metrics, cache = baseline
    assert metrics["extraction"]["computed"] == 24 * 2 + 24 * 1  # 24 train images x 2 views; 24 val+test images x 1
    again = run_finetune(small_config(dataset, tmp_path / "again", cache))
    assert again["extraction"]["computed"] == 0
    assert again["extraction"]["from_cache"] == metrics["extraction"]["computed"]
    assert _results(again) == _results(metrics)
    assert _same_weights(run, tmp_path / "again")


def test_a_fresh_cache_gives_the_same_features(
    dataset: Path, baseline: tuple[Path, dict, Path], tmp_path: Path
) -> None:
    _, metrics, _ = baseline
    fresh = run_finetune(small_config(dataset, tmp_path / "fresh", tmp_path / "other-cache"))
    assert fresh["extraction"]["computed"] == metrics["extraction"]["computed"]
    assert _results(fresh) == _results(metrics)


def test_a_different_seed_trains_a_different_head(
    dataset: Path, baseline: tuple[Path, dict, Path], tmp_path: Path
) -> None:
    run, _, cache = baseline
    run_finetune(small_config(dataset, tmp_path / "seed1", cache, seed=1))
    assert not _same_weights(run, tmp_path / "seed1")


def test_resume_after_a_crash_matches_the_uninterrupted_run(
    dataset: Path, baseline: tuple[Path, dict, Path], tmp_path: Path
) -> None:
    run, metrics, cache = baseline
    out = tmp_path / "crashy"
    with pytest.raises(InjectedFailure):
        run_finetune(small_config(dataset, out, cache), after_epoch=fail_after(3))
    assert (out / ".resume" / "state.safetensors").is_file()
    assert not (out / "config.json").exists()  # nothing final written by a crashed run
    resumed = run_finetune(small_config(dataset, out, cache, resume=True))
    assert _results(resumed) == _results(metrics)
    assert _same_weights(run, out)
    assert not (out / ".resume").exists()
    history_a, history_b = pd.read_csv(run / "history.csv"), pd.read_csv(out / "history.csv")
    pd.testing.assert_frame_equal(history_a.drop(columns="seconds"), history_b.drop(columns="seconds"))


@pytest.mark.slow
def test_resume_inside_the_unfreeze_phase(dataset: Path, tmp_path: Path) -> None:
    """The second phase (images, discriminative LRs) resumes to the same weights too."""
    cache = tmp_path / "cache"
    opts = dict(epochs=3, unfreeze="1", unfreeze_epochs=2, batch_size=12)
    whole = run_finetune(small_config(dataset, tmp_path / "whole", cache, **opts))
    assert [r for r in pd.read_csv(tmp_path / "whole" / "history.csv")["phase"]] == ["head"] * 3 + ["unfreeze"] * 2
    with pytest.raises(InjectedFailure):
        run_finetune(small_config(dataset, tmp_path / "part", cache, **opts), after_epoch=fail_after(4))
    resumed = run_finetune(small_config(dataset, tmp_path / "part", cache, resume=True, **opts))
    assert _results(resumed) == _results(whole)
    assert _same_weights(tmp_path / "whole", tmp_path / "part")


def test_unfreeze_trains_only_the_last_stages_with_frozen_batchnorm(dataset: Path) -> None:
    from posture.data.datasets import ManifestDataset
    from posture.data.transforms import build_eval_transform
    from posture.models import build_model
    from posture.runtime.distributed import DistInfo
    from posture.training.loop import ImagePhase, OptimSpec, PhaseSpec

    torch.manual_seed(0)
    model = build_model("resnet18", 2, pretrained=False)
    model.preprocessing = replace(model.preprocessing, input_size=32)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    train = ManifestDataset(dataset, "train")
    val = ManifestDataset(dataset, "val", build_eval_transform(model.preprocessing))
    spec = PhaseSpec(
        optim=OptimSpec(lr=1e-2),
        epochs=1,
        batch_size=12,
        seed=0,
        workers=0,
        device=torch.device("cpu"),
        dist=DistInfo(),
    )
    phase = ImagePhase(
        model, spec, train_ds=train, val_ds=val, num_classes=2, unfreeze=1, lr_decay=0.1, aug_strength=1.0
    )
    lrs = sorted({g["lr"] for g in phase.optimizer.param_groups})
    assert lrs == pytest.approx([1e-3, 1e-2])  # last stage at lr*decay, head at lr
    phase.train_epoch(1)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(start[k], v)}
    assert any(k.startswith("head.") for k in changed)
    backbone_changed = {k for k in changed if k.startswith("backbone.")}
    assert backbone_changed and all(k.startswith("backbone.layer4.") for k in backbone_changed)
    assert not any("running_mean" in k or "running_var" in k or "num_batches" in k for k in changed)


def test_recipe_trains_with_the_papers_sgd(dataset: Path, tmp_path: Path) -> None:
    metrics = run_finetune(small_config(dataset, tmp_path / "sgd", tmp_path / "cache", recipe="resnet_paper", epochs=4))
    config = json.loads((tmp_path / "sgd" / "config.json").read_text())
    assert config["training"]["recipe"] == "resnet_paper"
    assert metrics["epochs_run"] == 4


@pytest.mark.usefixtures("restore_logging")
def test_cli_trains_and_prints_a_summary(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "--data",
            str(dataset),
            "--out",
            str(tmp_path / "cli"),
            "--model",
            "resnet18",
            "--weights",
            "none",
            "--image-size",
            "32",
            "--epochs",
            "3",
            "--workers",
            "0",
            "--aug-views",
            "0",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--extract-backend",
            "torch",
            "--no-progress",
            "-q",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "test" in out and "balanced accuracy" in out
    assert (tmp_path / "cli" / "model.safetensors").is_file()


def test_help_explains_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--unfreeze", "--aug-views", "--resume", "--extract-backend", "--recipe", "--cache-dir"):
        assert flag in text
