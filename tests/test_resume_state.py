"""Resume state is one unit: a save cut short anywhere leaves the previous epoch or the new one, never a mix."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
import torch

from posture.runs.resume import has_resume_state, load_state, resume_dir, save_state


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (BaseException, so no ``except Exception`` hides it)."""


def _save(run_dir: Path, epoch: int) -> None:
    t = torch.full((3,), float(epoch))
    save_state(
        run_dir,
        model={"w": t},
        best={"w": t.clone()},
        optimizer={"state": {0: {"exp_avg": t.clone(), "step": epoch}}, "param_groups": [{"lr": 0.1, "params": [0]}]},
        scheduler={"last_epoch": epoch},
        meta={"epoch": epoch, "phase": "head"},
    )


def _epochs_in(state: dict) -> set[float]:
    """Every place the epoch number was stored; a torn state has more than one."""
    return {
        float(state["meta"]["epoch"]),
        float(state["scheduler"]["last_epoch"]),
        float(state["optimizer"]["state"][0]["step"]),
        *state["model"]["w"].tolist(),
        *state["best"]["w"].tolist(),
        *state["optimizer"]["state"][0]["exp_avg"].tolist(),
    }


def test_state_round_trips(tmp_path: Path) -> None:
    assert not has_resume_state(tmp_path)
    _save(tmp_path, 3)
    assert has_resume_state(tmp_path)
    state = load_state(tmp_path)
    assert _epochs_in(state) == {3.0} and state["meta"]["phase"] == "head" and state["rng"] is not None


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("nth", [1, 2, 3])
def test_a_save_killed_at_any_rename_leaves_one_whole_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nth: int, when: str
) -> None:
    _save(tmp_path, 1)
    real_replace, calls = os.replace, []

    def replace(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(dst)
        if len(calls) == nth and when == "before":
            raise Killed
        real_replace(src, dst, *args, **kwargs)
        if len(calls) == nth and when == "after":
            raise Killed

    monkeypatch.setattr(os, "replace", replace)
    with contextlib.suppress(Killed):
        _save(tmp_path, 2)
    monkeypatch.undo()
    assert has_resume_state(tmp_path)
    assert _epochs_in(load_state(tmp_path)) in ({1.0}, {2.0})


def test_a_damaged_state_file_is_no_resume_state(tmp_path: Path) -> None:
    _save(tmp_path, 1)
    (state_file,) = [p for p in resume_dir(tmp_path).iterdir() if p.suffix == ".safetensors"]
    state_file.write_bytes(state_file.read_bytes()[:40])  # cut short by a full disk, say
    assert not has_resume_state(tmp_path)
