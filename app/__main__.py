"""``python -m app --run models/RUN``: the posture web demo on http://127.0.0.1:7860."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from posture.cli import UserError, add_logging_flags, run_main, setup_logging
from posture.formats import BACKENDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app",
        description="Serve the posture web demo: upload or webcam photo → label, confidences and where the "
        "model looked (the body landmarks a pose-based run read, a Grad-CAM overlay for a CNN); for "
        "pose-based runs an optional calibration with an upright photo of yourself; a batch tab with "
        "CSV download. Uploads are deleted a few minutes after their last use (--keep-uploads) and "
        "overlays seconds after they were shown (--keep-outputs); nothing is stored unless --flagging "
        "is given.",
    )
    parser.add_argument(
        "--run", type=Path, default=None, help="trained run folder (default: the newest run under models/)"
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1, this machine only; 0.0.0.0 in a container)",
    )
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="auto (default): ONNX Runtime when the run has an up-to-date model.onnx",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="inference threads per request (default: physical cores / --concurrency, so "
        "that concurrent requests do not oversubscribe the CPU)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=2,
        help="requests processed at the same time; the rest wait in the queue (default 2)",
    )
    parser.add_argument("--max-file-size", default="15mb", help="largest upload, e.g. 15mb (default)")
    parser.add_argument("--max-megapixels", type=float, default=50.0, help="largest photo in megapixels (default 50)")
    parser.add_argument(
        "--flagging",
        type=Path,
        default=None,
        metavar="DIR",
        help="turn on the 'flag as wrong' button, saving flagged photos and answers in DIR",
    )
    parser.add_argument("--examples", type=int, default=4, help="synthetic example photos to show (default 4)")
    parser.add_argument("--no-cam", action="store_true", help="skip the Grad-CAM overlay (faster)")
    parser.add_argument(
        "--keep-uploads",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="delete an uploaded photo (and a batch CSV) this long after its last use; the page "
        "sends the same upload again when a visitor checks it again (default 300)",
    )
    parser.add_argument(
        "--keep-outputs",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="delete an overlay shown in the page this long after it was made; the browser "
        "fetches it at once (default 30)",
    )
    add_logging_flags(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up probes, one line each
    if not 1 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: choose 1-65535")
    if args.concurrency < 1:
        raise UserError("--concurrency must be at least 1")
    if args.max_megapixels <= 0:
        raise UserError("--max-megapixels must be positive")
    if args.keep_uploads <= 0 or args.keep_outputs <= 0:
        raise UserError("--keep-uploads and --keep-outputs must be positive (seconds)")
    from app.limits import parse_size

    try:
        parse_size(args.max_file_size)
    except ValueError as exc:
        raise UserError(f"--max-file-size: {exc}") from None
    from app.demo import AppConfig, launch
    from app.scratch import stop_on_sigterm
    from posture.device import physical_cores

    config = AppConfig(
        run_dir=args.run,
        host=args.host,
        port=args.port,
        backend=args.backend,
        threads=args.threads or max(1, physical_cores() // args.concurrency),
        concurrency=args.concurrency,
        max_file_size=args.max_file_size,
        max_pixels=int(args.max_megapixels * 1e6),
        flagging_dir=args.flagging,
        n_examples=max(0, args.examples),
        cam=not args.no_cam,
        upload_max_age_s=args.keep_uploads,
        output_max_age_s=args.keep_outputs,
    )
    # `docker stop` and service managers send SIGTERM: shut down like Ctrl-C, so Gradio closes
    # its server and the private upload folder is removed.
    stop_on_sigterm()
    launch(config)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
