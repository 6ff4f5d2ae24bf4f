"""Shared by the benchmarks: where results go, what machine produced them, and the command-line
plumbing of the benchmarks over the real photos."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
#: The real photos, relative to the repository root (never copied into the project).
DEFAULT_REAL = Path("..") / "shared" / "data" / "real"
#: Loggers whose per-run notices would drown a benchmark's progress lines.
NOISY = (
    "posture",
    "posture.training.finetune",
    "posture.training.selection",
    "posture.pose.landmarks",
    "posture.models.features",
)


def machine() -> dict[str, Any]:
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg(),
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def write_results(name: str, payload: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    jpath, mpath = RESULTS / f"{name}.json", RESULTS / f"{name}.md"
    jpath.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    mpath.write_text(markdown.rstrip() + "\n")
    return jpath, mpath


def real_photos_parser(description: str, work_default: Path, work_help: str) -> argparse.ArgumentParser:
    """The options every benchmark over the real photos has: where they are, a scratch folder, --no-write."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", type=Path, default=DEFAULT_REAL, help="the real photo folder (default %(default)s)")
    parser.add_argument("--work", type=Path, default=work_default, help=f"{work_help} (default %(default)s)")
    parser.add_argument("--no-write", action="store_true", help="print the markdown, write nothing to bench/results")
    return parser


def real_folder(
    real: Path, logger: logging.Logger, noisy: Iterable[str] = NOISY, noisy_level: int = logging.ERROR
) -> Path | None:
    """The real photo folder, resolved from the repository root; ``None`` (after one error line) without a
    manifest. Sets up the benchmark's logging first (``noisy`` loggers at ``noisy_level``), so that line
    is printed."""
    from posture.io.formats import MANIFEST_NAME

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in noisy:
        logging.getLogger(name).setLevel(noisy_level)
    folder = real if real.is_absolute() else (ROOT / real)
    if not (folder / MANIFEST_NAME).is_file():
        logger.error("error: %s has no manifest.csv (the real photos live in ../shared/data/real)", folder)
        return None
    return folder.resolve()


def finish(name: str, payload: dict[str, Any], markdown: str, no_write: bool, logger: logging.Logger) -> int:
    """Print the report (``--no-write``) or write ``bench/results/NAME.json|md``."""
    if no_write:
        print(markdown)
    else:
        paths = write_results(name, payload, markdown)
        logger.info("wrote %s", ", ".join(map(str, paths)))
    return 0
