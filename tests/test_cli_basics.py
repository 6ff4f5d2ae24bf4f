"""User mistakes become one line and exit code 2; devices resolve sensibly; labels alias."""

from __future__ import annotations

import logging

import pytest
import torch

from posture.cli import UserError, run_main
from posture.device import resolve_device
from posture.labels import resolve_label


def test_user_error_is_one_line_exit_2(caplog) -> None:
    def main(argv):
        raise UserError("the folder does not exist")

    with caplog.at_level(logging.ERROR):
        assert run_main(main, []) == 2
    assert caplog.messages == ["error: the folder does not exist"]


def test_device_auto_and_errors(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "mps")
    with pytest.raises(UserError, match="CUDA is not available"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"


@pytest.mark.parametrize("text, expected", [("Turtle-Neck", "forward_head"), ("FHP", "forward_head"),
                                             ("good posture", "normal"), ("Upright", "normal"), ("cat", None)])
def test_label_aliases(text, expected) -> None:
    assert resolve_label(text) == expected
