"""Atomic file writes: a reader (or a rerun after a crash) sees the old file or the new one, never half.

Every stage writes through these so that an interrupted ingest, training run or labeling session
can simply be rerun. The readers here (:func:`read_json`, :func:`read_tensors`) are the other half:
a file that was damaged anyway (a partial copy, a full disk, a hand edit) becomes one
:class:`DamagedFileError` naming the file, never a decoder's traceback.
"""

from __future__ import annotations

import codecs
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pandas as pd

from posture.cli import UserError
from posture.io.csvcells import write_csv
from posture.runtime.processes import process_alive

log = logging.getLogger(__name__)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_current_umask())  # mkstemp makes 0600; outputs are shared files
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_text(obj: Any, indent: int | None = 2) -> str:
    """``obj`` as JSON text, numpy values and paths included (how every project JSON is written)."""
    return json.dumps(obj, indent=indent, sort_keys=False, default=_json_default)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json_text(obj) + "\n")


def atomic_write_csv(path: str | os.PathLike[str], frame: pd.DataFrame) -> None:
    """Write ``frame`` (no index) spreadsheet-safe and quoted so that it reads back exactly.

    Read it back with :func:`posture.io.csvcells.read_csv` (see that module for why).
    """
    with atomic_path(path) as tmp:
        write_csv(frame, tmp)


def swap_into_place(staging: str | os.PathLike[str], out: str | os.PathLike[str]) -> None:
    """Replace the folder ``out`` (if any) with the finished folder ``staging``, by renames.

    Why: a run is several files; writing them into ``staging`` first and renaming it over ``out``
    means an interrupted write never leaves a half run where a finished one used to be. The
    previous ``out`` is set aside under a name that carries this process's id, so that a rerun
    can tell it from another live writer's and put it back (:func:`remove_stale_staging`).
    """
    staging, out = Path(staging), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        trash = out.parent / f".{out.name}{TRASH_TAG}{os.getpid()}-{uuid.uuid4().hex[:8]}"  # never another run's
        out.rename(trash)
        staging.rename(out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        staging.rename(out)


def check_writable_folder(folder: str | os.PathLike[str], what: str) -> None:
    """Create ``folder`` (and its parents) if need be and prove a new file can be written in it, or
    raise a :class:`UserError` that names ``what`` (the option and value the user gave).

    Why before the work starts: an output folder under a file, under ``/proc`` or without write
    permission used to surface as a ``mkdir`` traceback at the end, after minutes of decoding or
    training. A test file, not ``os.access``: root passes every permission check, yet still cannot
    write on a read-only or virtual file system.
    """
    target = Path(folder)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{what}: {_why_unwritable(target, f'cannot create {exc.filename or target}', exc)}") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=target)
    except OSError as exc:
        raise UserError(f"{what}: {_why_unwritable(target, f'cannot create files in {target}', exc)}") from None
    os.close(fd)
    os.unlink(probe)


def check_writable_output(out: str | os.PathLike[str], what: str) -> None:
    """A command will create or replace the folder ``out``: refuse at once, with one line naming
    ``what``, when it cannot (``out`` is a file, or its parent or ``out`` itself takes no new files).
    """
    target = Path(out)
    if os.path.lexists(target) and not target.is_dir():
        raise UserError(f"{what} is a file, not a folder")
    for folder in (target.parent, target) if target.is_dir() else (target.parent,):
        check_writable_folder(folder, what)


def check_writable_file(path: str | os.PathLike[str], what: str) -> None:
    """A command will write the file ``path`` (:func:`atomic_path`): refuse at once when it cannot."""
    target = Path(path)
    if target.is_dir():
        raise UserError(f"{what} is a folder, not a file")
    check_writable_folder(target.parent, what)


def _why_unwritable(folder: Path, failed: str, exc: OSError) -> str:
    """A file where a folder must be, said as such; else what ``failed`` and the system's reason."""
    for parent in (folder, *folder.parents):
        if os.path.lexists(parent):
            if not parent.is_dir():
                return f"{parent} is a file, not a folder"
            break
    return f"{failed} ({exc.strerror or exc})"


#: How a staging folder beside ``out`` is named: ``.<out name>.partial-<pid>-<random>``.
STAGING_TAG = ".partial-"
#: How the previous ``out`` is named while it is being replaced: ``.<out name>.old-<pid>-<random>``.
TRASH_TAG = ".old-"


@contextmanager
def staged_folder(out: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a new hidden folder beside ``out`` to write a whole result into; when the block ends
    normally the folder replaces ``out`` (:func:`swap_into_place`), otherwise it is deleted.

    Why one helper: a dataset, a run and anything else made of several files must appear whole or
    not at all, and every stage that writes one had grown its own variant of this dance (names,
    permissions, clean-up on failure). A process killed mid-way leaves its folder behind; its
    name carries the process id, so a later run removes it once that process is gone, and never
    the folder of a writer that still runs (:func:`remove_stale_staging`).
    """
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}{STAGING_TAG}{os.getpid()}-", dir=target.parent))
    staging.chmod(0o777 & ~_current_umask())  # mkdtemp's 0700 would make the result private to this user
    try:
        yield staging
        swap_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already after a successful swap


def stale_staging(out: str | os.PathLike[str]) -> list[Path]:
    """What an interrupted :func:`staged_folder` or :func:`swap_into_place` left beside ``out``:
    the leftovers whose writer no longer runs (or that carry no process id: older versions')."""
    target = Path(out)
    prefixes = tuple(f".{target.name}{tag}" for tag in (STAGING_TAG, TRASH_TAG))
    try:
        entries = list(target.parent.iterdir())  # not glob(): a name holding [ or * is no pattern
    except OSError:
        return []
    stale = []
    for entry in entries:
        prefix = next((p for p in prefixes if entry.name.startswith(p)), None)
        if prefix is None:
            continue
        owner = entry.name[len(prefix) :].split("-", 1)[0]
        if not owner.isdigit() or (int(owner) != os.getpid() and not process_alive(int(owner))):
            stale.append(entry)
    return sorted(stale)


def remove_stale_staging(out: str | os.PathLike[str]) -> list[Path]:
    """Remove the leftovers of killed writers beside ``out`` (:func:`stale_staging`); returns them.

    A writer killed between the two renames of :func:`swap_into_place` left no ``out`` at all,
    and the previous one set aside: that is put back first, as if the kill had come a moment
    earlier, so a ``--resume`` still finds the interrupted run it holds.
    """
    target = Path(out)
    stale = stale_staging(target)
    set_aside = [p for p in stale if p.name.startswith(f".{target.name}{TRASH_TAG}") and p.is_dir()]
    if set_aside and not os.path.lexists(target):
        newest = max(set_aside, key=lambda p: p.lstat().st_ctime)  # a rename updates the ctime
        with suppress(OSError):
            newest.rename(target)
            stale.remove(newest)
            log.info("put back %s, which an interrupted run had set aside as %s", target, newest.name)
    for path in stale:
        log.info("removing %s left by an interrupted run", path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with suppress(OSError):
                path.unlink()
    return stale


class LockHeld(Exception):
    """Another process holds the lock; ``holder`` is what it wrote into the lock file (its pid)."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path} is held by process {holder or '?'}")
        self.path = path
        self.holder = holder


@contextmanager
def exclusive_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` for the block, or raise :class:`LockHeld` at once.

    Why a lock and not only unique names: two runs writing the same output folder each clean up
    what looks like an interrupted run's leftovers, which is the other's live work. Why a POSIX
    record lock (``lockf``) and not ``flock``: an ``flock`` belongs to the open file, which the
    decoding workers forked while it is held share, so workers orphaned by a killed ingest kept
    it and blocked every rerun; a record lock belongs to this process alone, and the kernel
    drops it when the process dies, even by SIGKILL, so a stale lock file never blocks a rerun.
    It keeps other processes out, not other threads of this one. The file is removed on release;
    a waiter that opened it just before checks it still holds the file at ``path`` and otherwise
    tries again.
    """
    target = Path(path)
    while True:
        fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                os.close(fd)
                raise
            holder = os.read(fd, 64).decode("ascii", "replace").strip()
            os.close(fd)
            raise LockHeld(target, holder) from None
        try:
            live = os.fstat(fd).st_ino == os.stat(target).st_ino
        except FileNotFoundError:
            live = False
        if live:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with suppress(FileNotFoundError):
            target.unlink()
        os.close(fd)


class DamagedFileError(UserError, ValueError):
    """A file we wrote (or a stranger handed over) that no longer decodes.

    A :class:`UserError`, so commands print one line; a ``ValueError``, so callers that already
    treat an undecodable file as "not there" (``except ValueError``) keep doing so.
    """


def read_json(path: str | os.PathLike[str]) -> Any:
    """Parse a JSON file; a damaged one is a :class:`DamagedFileError` saying where it broke."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DamagedFileError(
            f"{path} is damaged or incomplete (not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    except UnicodeDecodeError:
        raise DamagedFileError(f"{path} is damaged (not UTF-8 text, so not JSON)") from None


#: Control characters no text file holds (tab, line and page breaks are text).
_BINARY_CHARS = re.compile("[\x00-\x08\x0e-\x1f]")


def check_text_file(path: str | os.PathLike[str], what: str) -> None:
    """Refuse a file that is not UTF-8 text with one :class:`DamagedFileError` naming it as ``what``.

    Why: a label CSV is read leniently (a torn last row, odd columns), and binary data given in its
    place (an image renamed ``.csv``, a NUL-filled or random blob) then read as a CSV with no
    rows, so a command reported "no answers" and succeeded. Read in blocks, so a huge blob
    costs no memory; a UTF-16 export fails too (its NUL bytes), with the same advice.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0  # of the block's first byte
    with open(path, "rb") as fh:
        while True:
            block = fh.read(1 << 20)
            carried = len(decoder.getstate()[0])  # a character's first bytes, from the block before
            try:
                text = decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                if not block:  # only a character cut off at the end: a torn last row, which readers drop
                    return
                raise DamagedFileError(
                    f"{path}: not {what}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                    f"{offset - carried + exc.start}); save it as UTF-8 text"
                ) from None
            found = _BINARY_CHARS.search(text)
            if found:
                raise DamagedFileError(
                    f"{path}: not {what}: binary data, not text (byte 0x{ord(found.group()):02x}); "
                    "save it as UTF-8 text"
                )
            if not block:
                return
            offset += len(block)


def read_tensors(path: str | os.PathLike[str], device: str = "cpu") -> dict[str, Any]:
    """Load a safetensors file; a truncated or foreign one is a :class:`DamagedFileError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=device)
    except SafetensorError as exc:
        raise DamagedFileError(f"{path} is damaged or incomplete (not a readable safetensors file: {exc})") from None


def _json_default(obj: Any) -> Any:
    """numpy scalars/arrays and paths appear in metrics; JSON has no type for them."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
