"""A private scratch folder for Gradio's file cache, swept while serving and removed at exit.

Why: Gradio writes a copy of every image it sends to the browser (and every upload) under
``GRADIO_TEMP_DIR``, by default the shared ``/tmp/gradio``: world-readable, never swept, and
kept after the server stops. The photos this project serves are people's photos, so each server
gets a folder of its own (``mkdtemp``: mode 0700), it is swept while serving (Gradio's
``delete_cache`` for the labeling tool, :mod:`app.janitor` for the web demo) and it goes when the
server stops, also on SIGTERM (``docker stop``, service managers).

SIGKILL (the OOM killer, ``kill -9``, a crashed container runtime) skips every clean-up, and the
folder with its photos and overlays would stay forever. So each folder records its owner
(``owner.json``: process id and the process's start time, which tells a recycled PID from the
owner) and every start removes the folders of the same kind whose owner is gone
(:func:`remove_stale_dirs`). Folders without that record (another user's, another program's) are
left alone.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from posture.io.fileio import atomic_write_json

log = logging.getLogger(__name__)

#: Inside each private folder: who made it (``{"pid": ..., "started": ...}``).
OWNER_NAME = "owner.json"

#: ``Blocks(delete_cache=...)``: every minute, delete cached files older than five minutes.
CACHE_SWEEP = (60, 300)


@contextmanager
def private_gradio_temp(prefix: str) -> Iterator[Path]:
    """Point Gradio's cache at a new private folder for the duration; build the Blocks inside.

    Gradio reads the variable when a component is created, so the page must be built in here.
    """
    removed = remove_stale_dirs(prefix)
    if removed:
        log.info("removed %d private folder(s) left by app processes that no longer run", len(removed))
    work = make_private_dir(prefix)
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


def make_private_dir(prefix: str, parent: str | os.PathLike[str] | None = None) -> Path:
    """A new folder only this user can read (``mkdtemp``), recording this process as its owner."""
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    atomic_write_json(work / OWNER_NAME, {"pid": os.getpid(), "started": process_start_time(os.getpid())})
    return work


def remove_stale_dirs(prefix: str, parent: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove this user's ``prefix*`` folders under ``parent`` (the temp folder) whose owner is dead."""
    removed = []
    for folder, alive in owned_dirs(prefix, parent):
        if not alive:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def owned_dirs(prefix: str, parent: str | os.PathLike[str] | None = None) -> Iterator[tuple[Path, bool]]:
    """This user's ``prefix*`` folders under ``parent`` (the temp folder) that record an owner, each
    with whether that owner still runs; folders without a readable record are not ours to judge."""
    for folder in sorted(Path(parent or tempfile.gettempdir()).glob(prefix + "*")):
        try:
            if folder.is_symlink() or not folder.is_dir() or folder.stat().st_uid != os.getuid():
                continue
            owner = json.loads((folder / OWNER_NAME).read_text(encoding="utf-8"))
            pid, started = int(owner["pid"]), owner.get("started")
        except (OSError, ValueError, KeyError, TypeError):
            continue
        yield folder, process_alive(pid, started)


def _stat_fields(pid: int) -> list[str] | None:
    """``/proc/PID/stat`` after the process name (which may hold spaces), or ``None`` without ``/proc``."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def process_start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot), or ``None`` where unknown."""
    fields = _stat_fields(pid)
    return fields[19] if fields else None  # field 22 of stat(5)


def process_alive(pid: int, started: str | None = None) -> bool:
    """Whether ``pid`` runs and, when its start time is known, is still the process that started then."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process; the start time below still tells whether it is the owner
    fields = _stat_fields(pid)
    if fields is None:
        return True  # no /proc here: the signal test is all there is
    return fields[0] != "Z" and (started is None or fields[19] == started)  # Z: killed, not yet reaped


def stop_on_sigterm() -> None:
    """Make SIGTERM stop the server like Ctrl-C, so ``finally`` blocks (the folder removal) run."""
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
