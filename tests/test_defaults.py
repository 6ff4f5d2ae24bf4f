"""The defaults follow the protocol: posture.finetune's defaults are the pick of the procedure on the real
photos (posture.training.selection), the committed benchmark says so, and every run and its model card tell how the
defaults were chosen and what the run changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _pose_helpers import make_pose_dataset
from posture.pose.geometry import DEFAULT_FEATURES, check_feature_names
from posture.training.finetune import FinetuneConfig, run_finetune
from posture.training.selection import DEFAULTS_CHOSEN, GRIDS

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results" / "real_photos.json"


def test_the_finetune_defaults_are_the_procedures_pick() -> None:
    pick = next(c for c in GRIDS[DEFAULTS_CHOSEN["grid"]] if c.name == DEFAULTS_CHOSEN["pick"])
    defaults = FinetuneConfig(data="d", out="o")
    for option, value in pick.options.items():
        if option == "pose_features":
            assert check_feature_names([value]) == DEFAULT_FEATURES
        else:
            assert getattr(defaults, option) == value, option
    assert pick.threshold_policy is None  # the defaults answer by argmax: no threshold step to run


def test_the_committed_benchmark_is_where_the_defaults_came_from() -> None:
    results = json.loads(RESULTS.read_text())
    grid = results["grids"][DEFAULTS_CHOSEN["grid"]]
    assert grid["procedure_on_all"]["pick"] == DEFAULTS_CHOSEN["pick"]
    for key, value in DEFAULTS_CHOSEN["nested"].items():
        assert grid["nested"][key] == pytest.approx(value, abs=5e-4), key


def test_a_run_records_how_its_defaults_were_chosen_and_what_it_changed(
    tmp_path, fake_blazepose, one_torch_thread
) -> None:
    from app.card import model_card
    from posture.inference.predict import Predictor

    data = make_pose_dataset(tmp_path / "data")
    plain, changed = tmp_path / "plain", tmp_path / "changed"
    run_finetune(FinetuneConfig(data=str(data), out=str(plain), workers=0, progress=False, device="cpu"))
    run_finetune(
        FinetuneConfig(
            data=str(data), out=str(changed), workers=0, progress=False, device="cpu", balance="class", epochs=5
        )
    )
    record = json.loads((plain / "config.json").read_text())["defaults"]
    assert record["pick"] == DEFAULTS_CHOSEN["pick"] and record["changed"] == []
    assert json.loads((changed / "config.json").read_text())["defaults"]["changed"] == ["balance", "epochs"]
    card = model_card(Predictor.from_run(changed))
    assert "picked by nested leave" in card and "this run changed balance, epochs" in card.replace("\\", "")
