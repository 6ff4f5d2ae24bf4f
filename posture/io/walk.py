"""Walk a folder of photos someone handed over, and read its files, without trusting what is in it.

Why a module of its own: a drop is a folder someone else filled. A FIFO blocks the reader
forever, a device node such as ``/dev/zero`` feeds it until memory runs out, a symlink loop makes
``Path.resolve`` raise, and a link can lead out of the folder. ``posture.ingest`` and the labeling
tool (``app.label``) both look for photos in such folders, so both walk them here, and both get
the same answer to "which files are photos we may read": regular files (or links to regular files
inside the folder), read with a byte cap. Everything else is *refused* with a reason from the
ingest vocabulary, never read and never followed.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

#: Files that operating systems and sync tools drop into folders; never photos.
SYSTEM_FILE_NAMES = frozenset({"thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"})
SYSTEM_DIR_NAMES = frozenset({"__macosx", "$recycle.bin", "system volume information"})
#: The largest file read as a photo: far above any camera's JPEG or PNG (a 120-megapixel photo
#: is ~60 MB), far below what a sparse or runaway file could make a reader hold in memory.
DEFAULT_MAX_BYTES = 256 * 2**20


class RefusedFile(OSError):
    """A file we will not read; ``reason`` is a ``rejected.csv`` reason, ``detail`` says why.

    An ``OSError``, so every caller that already handles unreadable files handles these too.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Refusal:
    rel: str  # POSIX path relative to the root, as the file system spells it
    reason: str
    detail: str


@dataclass
class Walk:
    """Every entry under a root: files we may read, refusals, and skipped litter (by kind)."""

    files: list[str] = field(default_factory=list)  # sorted POSIX paths relative to the root
    refused: list[Refusal] = field(default_factory=list)
    #: ``hidden_system`` (dot files, OS litter; a hidden folder is listed once, ending in ``/``)
    #: and ``symlinked_folder`` (links to folders inside the root: their files are reached directly).
    skipped: dict[str, list[str]] = field(default_factory=dict)
    skip_counts: Counter = field(default_factory=Counter)  # files per kind (a hidden folder's files count)
    total: int = 0  # entries counted: files (those in hidden folders too) and folder links

    def skip(self, kind: str, rel: str, count: int = 1) -> None:
        self.skipped.setdefault(kind, []).append(rel)
        self.skip_counts[kind] += count
        self.total += count


def is_hidden_or_system(name: str) -> bool:
    """Dot files (``.DS_Store``, AppleDouble ``._x.jpg``) and Windows/macOS litter."""
    return name.startswith(".") or name.lower() in SYSTEM_FILE_NAMES or name.lower() in SYSTEM_DIR_NAMES


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _oserror_refusal(exc: OSError, link: bool) -> RefusedFile:
    if exc.errno == errno.ELOOP:
        return RefusedFile("symlink_loop", "symbolic link that leads back to itself (directly or through other links)")
    if link and exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return RefusedFile("missing_file", "broken symbolic link")
    if exc.errno == errno.ENOENT:
        return RefusedFile("missing_file", "the file disappeared while being read")
    return RefusedFile("unreadable", f"{type(exc).__name__}: {exc.strerror or exc}")


def check_file(full: str | os.PathLike[str], root: str | os.PathLike[str]) -> RefusedFile | None:
    """Why the entry ``full`` under the resolved ``root`` must not be read as a photo, or ``None``.

    Only ``stat`` calls: nothing is opened, so a FIFO or device is judged without side effects.
    """
    full = os.fspath(full)
    link = os.path.islink(full)
    try:
        st = os.stat(full)  # follows links: ELOOP for loops, ENOENT for broken links
    except OSError as exc:
        return _oserror_refusal(exc, link)
    if link and not _inside(os.path.realpath(full), os.fspath(root)):
        return RefusedFile("outside_root", "symbolic link to a file outside SRC")
    if not stat.S_ISREG(st.st_mode):
        return RefusedFile("not_a_regular_file", f"{_kind(st.st_mode)}; only regular files are read")
    return None


def read_regular_file(path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``max_bytes``; else :class:`RefusedFile`.

    The type is checked before opening (opening some devices has effects) and again on the open
    descriptor (the entry may have been swapped since); ``O_NONBLOCK`` keeps even that open from
    waiting for a FIFO's writer, and at most ``max_bytes + 1`` bytes are ever read.
    """
    try:
        before = os.stat(path)
    except OSError as exc:
        raise _oserror_refusal(exc, os.path.islink(path)) from None
    if not stat.S_ISREG(before.st_mode):
        raise RefusedFile("not_a_regular_file", f"{_kind(before.st_mode)}; only regular files are read")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise _oserror_refusal(exc, os.path.islink(path)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RefusedFile("not_a_regular_file", f"{_kind(st.st_mode)}; only regular files are read")
        if st.st_size > max_bytes:
            raise RefusedFile("too_large", f"{st.st_size} bytes exceeds the limit of {max_bytes} bytes")
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:  # grew while being read
            raise RefusedFile("too_large", f"more than the limit of {max_bytes} bytes")
        return b"".join(chunks)
    except RefusedFile:
        raise
    except OSError as exc:
        raise _oserror_refusal(exc, False) from None
    finally:
        os.close(fd)


def _count_files(top: str) -> int:
    return sum(len(files) for _, _, files in os.walk(top))


def walk_files(root: str | os.PathLike[str]) -> Walk:
    """Walk ``root`` (links to folders are not followed) in sorted order, so results are deterministic.

    Every file ends up in exactly one of ``files``, ``refused`` or ``skipped``; a folder that
    cannot be listed is refused as ``unreadable`` rather than silently missing.
    """
    top = os.path.realpath(root)
    result = Walk()

    def rel_of(path: str) -> str:
        return Path(os.path.relpath(path, top)).as_posix()

    def unreadable(err: OSError) -> None:
        result.total += 1
        where = rel_of(err.filename) if err.filename else "?"
        result.refused.append(Refusal(where, "unreadable", f"{type(err).__name__}: {err.strerror or err}"))

    for dirpath, dirnames, filenames in os.walk(top, onerror=unreadable, followlinks=False):
        keep = []
        for name in sorted(dirnames):
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                if _inside(os.path.realpath(full), top):
                    result.skip("symlinked_folder", rel_of(full))
                else:
                    result.total += 1
                    result.refused.append(
                        Refusal(rel_of(full), "outside_root", "symbolic link to a folder outside SRC")
                    )
            elif is_hidden_or_system(name):
                result.skip("hidden_system", rel_of(full) + "/", _count_files(full))
            else:
                keep.append(name)
        dirnames[:] = keep
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            if is_hidden_or_system(name):
                result.skip("hidden_system", rel_of(full))
                continue
            result.total += 1
            problem = check_file(full, top)
            if problem is None:
                result.files.append(rel_of(full))
            else:
                result.refused.append(Refusal(rel_of(full), problem.reason, problem.detail))
    result.files.sort()
    return result
