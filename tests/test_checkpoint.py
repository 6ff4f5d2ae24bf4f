"""Runs are safetensors + JSON: they load without unpickling and are written atomically."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from posture.cli import UserError
from posture.data.transforms import Preprocessing
from posture.runs.checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    find_latest_run,
    load_checkpoint,
    read_config,
    save_checkpoint,
    update_config,
)

CONFIG = {
    "architecture": "tiny",
    "classes": ["forward_head", "normal"],
    "preprocessing": Preprocessing(input_size=32).to_dict(),
}


def test_round_trip(tmp_path) -> None:
    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.zeros(2)}
    save_checkpoint(
        tmp_path / "run", state, CONFIG, metrics={"accuracy": 0.9}, history=pd.DataFrame({"epoch": [1], "loss": [0.5]})
    )
    ckpt = load_checkpoint(tmp_path / "run")
    assert torch.equal(ckpt.state_dict["w"], state["w"])
    assert ckpt.class_names == ["forward_head", "normal"]
    assert ckpt.metrics["accuracy"] == 0.9
    assert "torch" in ckpt.config["versions"]
    assert (tmp_path / "run" / "history.csv").is_file()
    # nothing but our files, no temp leftovers
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "config.json",
        "history.csv",
        "metrics.json",
        "model.safetensors",
    ]


def test_weights_file_is_not_a_pickle(tmp_path) -> None:
    save_checkpoint(tmp_path, {"w": torch.ones(1)}, CONFIG)
    head = (tmp_path / WEIGHTS_NAME).read_bytes()[:16]
    assert not head.startswith(b"PK") and not head.startswith(b"\x80")  # neither zip nor pickle
    json.loads((tmp_path / CONFIG_NAME).read_text())


def test_update_config_and_missing_run(tmp_path) -> None:
    save_checkpoint(tmp_path / "r", {"w": torch.ones(1)}, CONFIG)
    update_config(tmp_path / "r", calibration={"temperature": 1.5})
    assert read_config(tmp_path / "r")["calibration"]["temperature"] == 1.5
    with pytest.raises(UserError, match="not a trained run"):
        load_checkpoint(tmp_path / "nothing")


def test_config_needs_the_contract_keys(tmp_path) -> None:
    with pytest.raises(ValueError, match="classes"):
        save_checkpoint(tmp_path, {"w": torch.ones(1)}, {"architecture": "x", "preprocessing": {}})


def test_find_latest_run(tmp_path) -> None:
    import os
    import time

    assert find_latest_run(tmp_path) is None
    save_checkpoint(tmp_path / "old", {"w": torch.ones(1)}, CONFIG)
    save_checkpoint(tmp_path / "new", {"w": torch.ones(1)}, CONFIG)
    past = time.time() - 100
    os.utime(tmp_path / "old" / WEIGHTS_NAME, (past, past))
    assert find_latest_run(tmp_path).name == "new"


def test_atomic_writes_get_normal_permissions(tmp_path) -> None:
    import os
    import stat

    from posture.io.fileio import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
