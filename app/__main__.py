"""``python -m app --run models/RUN``: the posture web demo on http://127.0.0.1:7860."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from app.config import AppConfig
from posture.cli import add_logging_flags, add_options, config_from_args, run_main, setup_logging


def build_parser() -> argparse.ArgumentParser:
    """The options are generated from :class:`~app.config.AppConfig`, so each is defined once, beside its field."""
    parser = argparse.ArgumentParser(
        prog="python -m app",
        description="Serve the posture web demo: upload or webcam photo → label, confidences and where the "
        "model looked (the body landmarks a pose-based run read, a Grad-CAM overlay for a CNN); for "
        "pose-based runs an optional calibration with an upright photo of yourself; a batch tab with "
        "CSV download. Uploads are deleted a few minutes after their last use (--keep-uploads) and "
        "overlays seconds after they were shown (--keep-outputs); nothing is stored unless --flagging "
        "is given.",
    )
    add_options(parser, AppConfig)
    add_logging_flags(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up probes, one line each
    config = config_from_args(AppConfig, args)  # a bad value stops here, before torch and Gradio load
    from app.demo import launch
    from app.scratch import stop_on_sigterm

    # `docker stop` and service managers send SIGTERM: shut down like Ctrl-C, so Gradio closes
    # its server and the private upload folder is removed.
    stop_on_sigterm()
    launch(config)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
