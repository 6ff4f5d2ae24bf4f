"""What ``python -m app`` can be told: :class:`AppConfig`, whose fields are also the command's options.

Why a module of its own, apart from :mod:`app.demo`: the command builds its parser and checks the
user's values from this class before anything heavy is imported, so ``--help`` and a mistyped
``--port`` answer at once instead of after the seconds PyTorch and Gradio take to load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.limits import DEFAULT_MAX_FILE_SIZE, parse_size
from posture.cli import UserError, option
from posture.io.formats import BACKENDS

if TYPE_CHECKING:
    from posture.sitting.session import WatchConfig

DEFAULT_MAX_PIXELS = 50_000_000
#: More frames a second than a webcam delivers only costs bandwidth.
MAX_LIVE_FPS = 30.0


def megapixels(text: str) -> int:
    """``--max-megapixels`` as typed (``"2"``, ``"0.5"``) → whole pixels, the unit the decoder checks."""
    value = float(text)
    if not math.isfinite(value):  # int() of inf or nan would be a traceback, not a usage error
        raise ValueError(text)
    return int(value * 1e6)


@dataclass
class AppConfig:
    """Everything ``python -m app`` can be told; the defaults are safe for a laptop.

    Each field with an :func:`~posture.cli.option` is also the command's option; the others
    (``models_dir``, ``max_queue``, ...) are for tests and code. Values are checked when built.
    """

    run_dir: Path | None = field(
        default=None,
        metadata=option("trained run folder", flag="--run", default_text="the newest run under models/"),
    )
    models_dir: Path = Path("models")
    host: str = field(
        default="127.0.0.1",
        metadata=option("address to bind: 127.0.0.1 is this machine only; use 0.0.0.0 in a container"),
    )
    port: int = field(default=7860, metadata=option("port"))
    backend: str = field(
        default="auto",
        metadata=option("auto: ONNX Runtime when the run has an up-to-date model.onnx, else torch", choices=BACKENDS),
    )
    threads: int | None = field(
        default=None,
        metadata=option(
            "inference threads per request",
            default_text="physical cores / --concurrency, so that concurrent requests do not oversubscribe the CPU",
        ),
    )
    concurrency: int = field(
        default=2, metadata=option("requests processed at the same time; the rest wait in the queue")
    )
    max_queue: int = 64
    max_file_size: str = field(default=DEFAULT_MAX_FILE_SIZE, metadata=option("largest upload, e.g. 500kb or 2gb"))
    max_pixels: int = field(
        default=DEFAULT_MAX_PIXELS,
        metadata=option(
            "largest photo in megapixels",
            flag="--max-megapixels",
            parse=megapixels,
            default_text=f"{DEFAULT_MAX_PIXELS / 1e6:g}",
        ),
    )
    max_batch_files: int = 100
    flagging_dir: Path | None = field(
        default=None,
        metadata=option(
            "turn on the 'flag as wrong' button, saving flagged photos and answers in DIR",
            flag="--flagging",
            metavar="DIR",
        ),
    )
    n_examples: int = field(default=4, metadata=option("synthetic example photos to show", flag="--examples"))
    cam: bool = field(default=True, metadata=option("skip the Grad-CAM overlay (faster)"))
    # Uploads (and the batch CSV) this long after their last use, overlays this long after they
    # were made (app.janitor).
    upload_max_age_s: float = field(
        default=300.0,
        metadata=option(
            "delete an uploaded photo (and a batch CSV) this long after its last use; the page sends the "
            "same upload again when a visitor checks it again",
            flag="--keep-uploads",
            metavar="SECONDS",
        ),
    )
    output_max_age_s: float = field(
        default=30.0,
        metadata=option(
            "delete an overlay shown in the page this long after it was made; the browser fetches it at once",
            flag="--keep-outputs",
            metavar="SECONDS",
        ),
    )
    live_alert_after: float = field(
        default=30.0,
        metadata=option(
            "Live tab: alert once a forward head has lasted this long (the sitting's smoothed state, not one frame)",
            metavar="SECONDS",
        ),
    )
    live_fps: float = field(
        default=5.0,
        metadata=option(
            "Live tab: webcam frames the page sends per second; a frame the server cannot analyse in time is "
            "dropped, never queued",
            metavar="FPS",
        ),
    )
    live_sessions: int = field(
        default=2,
        metadata=option(
            "Live tab: webcams analysed at the same time; further tabs wait their turn (turns of a minute)",
            metavar="N",
        ),
    )
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse values no server can use, in one line naming the option (``python -m app`` exits 2)."""
        if not 1 <= self.port <= 65535:
            raise UserError(f"--port {self.port}: choose 1-65535")
        if self.backend not in BACKENDS:  # the command's choices already say so; this is for code
            raise UserError(f"--backend {self.backend}: choose one of {', '.join(BACKENDS)}")
        if self.concurrency < 1:
            raise UserError("--concurrency must be at least 1")
        if self.threads is not None and self.threads < 1:
            raise UserError("--threads must be at least 1")
        if self.max_pixels <= 0:
            raise UserError("--max-megapixels must be positive")
        if not (self.upload_max_age_s > 0 and self.output_max_age_s > 0):  # also refuses nan
            raise UserError("--keep-uploads and --keep-outputs must be positive (seconds)")
        if not self.live_alert_after >= 0:  # also refuses nan
            raise UserError("--live-alert-after must be 0 or more seconds")
        if not 0 < self.live_fps <= MAX_LIVE_FPS:
            raise UserError(f"--live-fps must be above 0 and at most {MAX_LIVE_FPS:g}")
        if self.live_sessions < 1:
            raise UserError("--live-sessions must be at least 1")
        try:
            parse_size(self.max_file_size)
        except ValueError as exc:
            raise UserError(f"--max-file-size: {exc}") from None

    @property
    def watch_config(self) -> WatchConfig:
        """How the Live tab watches a sitting: the session object's defaults, with ``--live-alert-after``."""
        from posture.sitting.session import WatchConfig

        return WatchConfig(alert_after=self.live_alert_after)

    @property
    def max_file_bytes(self) -> int:
        """``max_file_size`` in bytes: the one cap for uploads, inline images and request bodies."""
        return parse_size(self.max_file_size)

    @property
    def request_threads(self) -> int:
        """``threads``, else the physical cores shared among the ``concurrency`` requests served at
        once, so that a burst of visitors does not oversubscribe the CPU."""
        if self.threads is not None:
            return self.threads
        from posture.runtime.device import physical_cores  # imports torch: only when serving

        return max(1, physical_cores() // self.concurrency)
