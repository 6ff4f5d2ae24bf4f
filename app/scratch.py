"""A private scratch folder for Gradio's file cache, swept while serving and removed at exit.

Why: Gradio writes a copy of every image it sends to the browser (and every upload) under
``GRADIO_TEMP_DIR``, by default the shared ``/tmp/gradio``: world-readable, never swept, and
kept after the server stops. The photos this project serves are people's photos, so each server
gets a folder of its own (``mkdtemp``: mode 0700), Gradio sweeps it (``delete_cache``) and it
goes when the server stops, also on SIGTERM (``docker stop``, service managers).
The web demo (:mod:`app.demo`) does the same by hand; the labeling tool uses this.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: ``Blocks(delete_cache=...)``: every minute, delete cached files older than five minutes.
CACHE_SWEEP = (60, 300)


@contextmanager
def private_gradio_temp(prefix: str) -> Iterator[Path]:
    """Point Gradio's cache at a new private folder for the duration; build the Blocks inside.

    Gradio reads the variable when a component is created, so the page must be built in here.
    """
    work = Path(tempfile.mkdtemp(prefix=prefix))
    before = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(work / "gradio")
    try:
        yield work
    finally:
        if before is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = before
        shutil.rmtree(work, ignore_errors=True)


def stop_on_sigterm() -> None:
    """Make SIGTERM stop the server like Ctrl-C, so ``finally`` blocks (the folder removal) run."""
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
