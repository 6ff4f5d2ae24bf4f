"""The command lines of ``python -m app`` and ``python -m app.label``, generated from their config
dataclasses: the flags users and the README know stay as they were, each lands in its field, and a
bad value is one ``error:`` line with exit code 2. Nothing here starts a server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import app.__main__ as app_cli
import app.label as label_cli
from app.config import AppConfig
from app.label_session import LabelConfig
from posture.cli import UserError, config_from_args

REPO = Path(__file__).resolve().parents[1]

# The usage lines as they were before the options were generated from the dataclasses (recorded
# from the hand-written parsers): same flags, same value names, same order, same required ones; the
# Live tab's options came later, after them.
APP_USAGE = (
    "usage: python -m app [-h] [--run RUN] [--host HOST] [--port PORT] [--backend {auto,torch,onnx}] "
    "[--threads THREADS] [--concurrency CONCURRENCY] [--max-file-size MAX_FILE_SIZE] "
    "[--max-megapixels MAX_MEGAPIXELS] [--flagging DIR] [--examples EXAMPLES] [--no-cam] "
    "[--keep-uploads SECONDS] [--keep-outputs SECONDS] "
    "[--live-alert-after SECONDS] [--live-fps FPS] [--live-sessions N] [-v] [-q]"
)
LABEL_USAGE = (
    "usage: python -m app.label [-h] --images IMAGES --out OUT [--threshold THRESHOLD] [--labeler LABELER] "
    "[--run RUN] [--order {name,uncertainty}] [--display-max DISPLAY_MAX] [--host HOST] [--port PORT] [-v] [-q]"
)


def _words(text: str) -> str:
    return " ".join(text.split())


def _app(*argv: str) -> AppConfig:
    return config_from_args(AppConfig, app_cli.build_parser().parse_args(argv))


def _label(*argv: str) -> LabelConfig:
    return config_from_args(
        LabelConfig, label_cli.build_parser().parse_args(["--images", "p", "--out", "l.csv", *argv])
    )


def _one_error_line(module: str, *argv: str) -> str:
    """Run ``python -m module argv`` as a user does; it must stop with exit 2 and one line."""
    proc = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True, cwd=REPO, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_app_flags_are_the_ones_users_know() -> None:
    parser = app_cli.build_parser()
    assert _words(parser.format_usage()) == APP_USAGE
    text = _words(parser.format_help())
    for words in ("newest run under models/", "0.0.0.0 in a container", "physical cores / --concurrency", "DIR"):
        assert words in text


def test_app_flags_land_in_their_fields() -> None:
    assert _app() == AppConfig()  # the command's defaults are the dataclass's
    cfg = _app(
        *("--run", "models/x", "--max-megapixels", "2", "--flagging", "flags", "--examples", "0", "--no-cam"),
        *("--keep-uploads", "60", "--keep-outputs", "5", "--max-file-size", "300kb", "--backend", "onnx"),
        *("--host", "0.0.0.0", "--port", "8000", "--threads", "3", "--concurrency", "4"),
        *("--live-alert-after", "5", "--live-fps", "2.5", "--live-sessions", "3"),
    )
    assert cfg == AppConfig(
        run_dir=Path("models/x"),
        max_pixels=2_000_000,  # typed in megapixels, held in the pixels the decoder checks
        flagging_dir=Path("flags"),
        n_examples=0,
        cam=False,
        upload_max_age_s=60.0,
        output_max_age_s=5.0,
        max_file_size="300kb",
        backend="onnx",
        host="0.0.0.0",
        port=8000,
        threads=3,
        concurrency=4,
        live_alert_after=5.0,
        live_fps=2.5,
        live_sessions=3,
    )
    assert _app("--max-megapixels", "0.5").max_pixels == 500_000
    assert _app("--live-alert-after", "5").watch_config.alert_after == 5.0  # the Live tab's session object


def test_app_threads_default_to_the_cores_shared_by_concurrent_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    import posture.runtime.device

    monkeypatch.setattr(posture.runtime.device, "physical_cores", lambda: 8)
    assert AppConfig(concurrency=2).request_threads == 4
    assert AppConfig(concurrency=16).request_threads == 1
    assert AppConfig(threads=3, concurrency=2).request_threads == 3


@pytest.mark.parametrize(
    ("command", "argv", "message"),
    [
        ("app", ["--port", "0"], "--port 0: choose 1-65535"),
        ("app", ["--port", "70000"], "--port 70000"),
        ("app", ["--concurrency", "0"], "--concurrency must be at least 1"),
        ("app", ["--threads", "0"], "--threads must be at least 1"),
        ("app", ["--max-file-size", "15 parsecs"], "--max-file-size"),
        ("app", ["--max-megapixels", "0"], "--max-megapixels must be positive"),
        ("app", ["--keep-uploads", "0"], "--keep-uploads and --keep-outputs must be positive"),
        ("app", ["--keep-outputs", "nan"], "--keep-uploads and --keep-outputs must be positive"),
        ("app.label", ["--threshold", "95"], "between 0 and 90"),
        ("app.label", ["--labeler", "a,b"], "plain name"),
        ("app.label", ["--order", "uncertainty"], "needs a model"),
        ("app.label", ["--display-max", "10"], "too small to click on"),
        ("app.label", ["--port", "0"], "--port 0: choose 1-65535"),
    ],
)
def test_bad_values_are_user_errors(command: str, argv: list[str], message: str) -> None:
    """Checked by the config when it is built, so the command (and any caller) gets one clear line."""
    with pytest.raises(UserError, match=message):
        {"app": _app, "app.label": _label}[command](*argv)


def test_an_app_config_made_in_code_is_checked_like_the_command_line() -> None:
    with pytest.raises(UserError, match="--backend tensorflow: choose one of auto, torch, onnx"):
        AppConfig(backend="tensorflow")  # argparse's choices never see it


def test_app_unreadable_numbers_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for value in ("inf", "nan", "lots"):  # argparse's own exit 2 with usage, not an overflow traceback
        with pytest.raises(SystemExit) as exc:
            _app("--max-megapixels", value)
        assert exc.value.code == 2 and "--max-megapixels" in capsys.readouterr().err


def test_app_bad_value_stops_the_command_in_one_line_without_loading_the_model(tmp_path: Path) -> None:
    # --run names no run: were the port accepted, the command would fail there, not start a server.
    line = _one_error_line("app", "--port", "0", "--run", str(tmp_path / "none"))
    assert line == "error: --port 0: choose 1-65535"


def test_app_help_does_not_import_torch() -> None:
    """Why AppConfig lives in app.config: ``--help`` and a mistyped value answer at once."""
    code = "import sys, app.__main__ as m; m.build_parser(); print(sorted({'torch', 'gradio'} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr


def test_label_flags_are_the_ones_users_know() -> None:
    parser = label_cli.build_parser()
    assert _words(parser.format_usage()) == LABEL_USAGE
    assert "(default: login name)" in _words(parser.format_help())


def test_label_flags_land_in_their_fields() -> None:
    cfg = _label(
        *("--threshold", "48", "--labeler", "ann", "--run", "models/x", "--order", "uncertainty"),
        *("--display-max", "500", "--host", "0.0.0.0", "--port", "7999"),
    )
    assert cfg == LabelConfig(
        images=Path("p"),
        out=Path("l.csv"),
        threshold=48.0,
        labeler="ann",
        run=Path("models/x"),
        order="uncertainty",
        display_max=500,
        host="0.0.0.0",
        port=7999,
    )
    assert _label() == LabelConfig(images=Path("p"), out=Path("l.csv"))  # the command's defaults are the dataclass's


def test_label_bad_value_stops_the_command_in_one_line(tmp_path: Path) -> None:
    line = _one_error_line(
        "app.label", "--images", str(tmp_path), "--out", str(tmp_path / "l.csv"), "--threshold", "95"
    )
    assert line == "error: --threshold 95.0: the CVA threshold must be between 0 and 90 degrees"
