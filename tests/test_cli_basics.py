"""User mistakes become one line and exit code 2; devices resolve sensibly; labels alias."""

from __future__ import annotations

import argparse
import importlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from posture.cli import UserError, add_options, cli_fields, config_from_args, option, run_main
from posture.data.labels import resolve_label
from posture.runtime.device import resolve_device


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


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Turtle-Neck", "forward_head"),
        ("FHP", "forward_head"),
        ("good posture", "normal"),
        ("Upright", "normal"),
        ("cat", None),
    ],
)
def test_label_aliases(text, expected) -> None:
    assert resolve_label(text) == expected


@dataclass(frozen=True)
class _Example:
    """A config as the commands write them: options beside their fields, validation in __post_init__."""

    src: Path = field(metadata=option("where to read", positional=True))
    out: Path = field(metadata=option("where to write", aliases=("-o",)))
    n: int = field(default=3, metadata=option("how many"))
    scale: float | None = field(default=None, metadata=option("a factor", default_text="the model's"))
    size: tuple[int, int] = field(default=(4, 8), metadata=option("MIN MAX"))
    tags: tuple[str, ...] = field(default=(), metadata=option("a tag; repeat for more", repeat=True))
    mode: str = field(default="a", metadata=option("which way", choices=("a", "b")))
    force: bool = field(default=False, metadata=option("do it anyway"))
    progress: bool = field(default=True, metadata=option("no progress bar"))
    internal: int = 7  # no option(): not on the command line

    def __post_init__(self) -> None:
        if self.n < 1:
            raise UserError(f"--n must be at least 1, got {self.n}")


def _parser() -> argparse.ArgumentParser:
    return add_options(argparse.ArgumentParser(prog="example"), _Example)


def test_options_come_from_the_dataclass_fields_with_their_help_and_defaults() -> None:
    text = _parser().format_help()
    for flag, help_text in (
        ("--out", "where to write"),
        ("-o", "where to write"),
        ("--n", "how many (default: 3)"),
        ("--scale", "a factor (default: the model's)"),
        ("--size", "MIN MAX (default: 4 8)"),
        ("--tags", "a tag"),
        ("--mode {a,b}", "which way (default: a)"),
        ("--force", "do it anyway"),
        ("--no-progress", "no progress bar"),
        ("src", "where to read"),
    ):
        assert flag in text and help_text in " ".join(text.split()), flag
    assert "--internal" not in text


def test_parsed_options_make_the_config_and_its_validation_is_one_error_line(caplog) -> None:
    args = _parser().parse_args(
        [
            "in",
            "-o",
            "out",
            "--size",
            "5",
            "6",
            "--tags",
            "x",
            "--tags",
            "y",
            "--force",
            "--no-progress",
            "--scale",
            "0.5",
        ]
    )
    cfg = config_from_args(_Example, args)
    assert cfg == _Example(
        src=Path("in"), out=Path("out"), size=(5, 6), tags=("x", "y"), force=True, progress=False, scale=0.5
    )
    assert config_from_args(_Example, _parser().parse_args(["in", "-o", "o"]), n=2).n == 2

    def main(argv):
        config_from_args(_Example, _parser().parse_args(argv))

    with caplog.at_level(logging.ERROR):
        assert run_main(main, ["in", "-o", "o", "--n", "0"]) == 2
    assert caplog.messages == ["error: --n must be at least 1, got 0"]
    with pytest.raises(SystemExit) as exc:  # argparse's own usage errors keep exit code 2
        _parser().parse_args(["in"])
    assert exc.value.code == 2


@pytest.mark.parametrize(
    "module, config",
    [
        ("posture.training.finetune", "FinetuneConfig"),
        ("posture.ingest.__main__", "IngestConfig"),
        ("posture.inference.predict", "PredictConfig"),
        ("posture.inference.export", "ExportConfig"),
        ("app.__main__", "AppConfig"),
        ("app.label", "LabelConfig"),
    ],
)
def test_every_command_documents_every_option_of_its_config(module: str, config: str) -> None:
    mod = importlib.import_module(module)
    text = " ".join(mod.build_parser().format_help().split())
    for f, opt in cli_fields(getattr(mod, config)):
        words = " ".join(opt.help.split())
        assert words[:40] in text, f"{module}: {f.name} has no help"


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path: Path) -> None:
    """``posture.predict ... | head``: when the pipe closes under a command writing its answers, it
    stops with the shell's code for it (141) and no traceback on the terminal."""
    import subprocess
    import sys

    script = tmp_path / "writer.py"
    script.write_text(
        "import sys\n"
        "from posture.cli import run_main\n"
        "def main(argv):\n"
        "    for _ in range(200000):\n"
        "        print('an answer line ' * 8)\n"
        "    return 0\n"
        "sys.exit(run_main(main))\n"
    )
    writer = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert writer.stdout is not None and writer.stderr is not None
    writer.stdout.readline()
    writer.stdout.close()  # the reader goes away, as `head -1` does
    err = writer.stderr.read().decode()
    assert writer.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
