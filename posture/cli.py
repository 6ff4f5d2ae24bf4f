"""Shared command-line plumbing: logging set-up and the "one clear line, never a traceback" rule.

Every ``python -m posture.X`` module keeps its ``main(argv)`` thin and raises :class:`UserError`
for anything the user can fix (bad path, unknown model, wrong data); :func:`run_main` turns that
into a single ``error: ...`` line and exit code 2.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

log = logging.getLogger("posture")


class UserError(Exception):
    """A problem with the user's input or environment, reported as one line without a traceback."""


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Configure the root logger once per process for CLI use (tests leave logging alone)."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 0 else logging.INFO)
    logging.basicConfig(level=level, format="%(message)s" if level > logging.DEBUG else
                        "%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)


def add_logging_flags(parser) -> None:  # type: ignore[no-untyped-def]
    """The same ``-v`` / ``-q`` flags on every command."""
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more detail in the log")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")


def run_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run a CLI ``main`` and map user errors and Ctrl-C to exit codes instead of tracebacks."""
    try:
        return int(main(argv) or 0)
    except UserError as exc:
        log.error("error: %s", exc)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
