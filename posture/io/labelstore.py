"""The labeling tool's answer file: an append-only CSV that survives being killed at any moment.

Why append-only instead of rewriting the file per answer: a labeling session is hours of human
work, and the only thing worse than a crash is a crash that takes earlier answers with it. Each
answer is one ``os.write`` of the whole encoded row on an ``O_APPEND`` descriptor followed by
``fsync``, so after a kill the file holds whole rows plus, at worst, one torn last line without
its newline; :class:`LabelStore` cuts that torn tail off when it opens the file.

Why later rows win: *previous* + relabel simply appends a new row; reading keeps the last row per
filename (per labeler, when asked), so history stays in the file for audits while the answer is
unambiguous.

Columns (``COLUMNS``): ``filename`` (relative to the labeled folder, ``/``-separated), ``label``
(``forward_head``, ``normal`` or :data:`UNUSABLE`), ``cva_deg`` and ``ear_x, ear_y, c7_x, c7_y``
(original-image pixels after EXIF orientation, empty for class-only answers), ``labeler``,
``timestamp`` (UTC, ISO 8601). ``posture.ingest`` reads this file as a label CSV; rows labeled
``unusable`` are rejected there with reason ``unknown_label`` on purpose: the labeler said the
photo cannot be used.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from posture.cli import UserError
from posture.io.csvcells import neutralise, restore

log = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = ("filename", "label", "cva_deg", "ear_x", "ear_y", "c7_x", "c7_y", "labeler", "timestamp")
#: The label a *skip (unusable)* answer writes; not a class, so ingest rejects the file.
UNUSABLE = "unusable"
_HEADER = (",".join(COLUMNS) + "\n").encode("utf-8")
#: Column spellings accepted when *reading* someone else's label CSV (the tool always writes COLUMNS).
_COLUMN_ALIASES = {
    "filename": ("file_name", "file", "path", "image", "image_path", "filepath"),
    "label": ("class", "category"),
}


def utc_timestamp() -> str:
    """Seconds-resolution UTC time; sortable as text and unambiguous across labelers' time zones."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class LabelRecord:
    """One answer for one image; keypoints and angle are ``None`` for class-only answers."""

    filename: str
    label: str
    cva_deg: float | None = None
    ear_x: float | None = None
    ear_y: float | None = None
    c7_x: float | None = None
    c7_y: float | None = None
    labeler: str = ""
    timestamp: str = ""

    @property
    def has_points(self) -> bool:
        return None not in (self.ear_x, self.ear_y, self.c7_x, self.c7_y)

    def to_row(self) -> list[str]:
        """Text cells in :data:`COLUMNS` order; floats rounded to what a click can resolve.

        Names are neutralised against spreadsheet formulas (:mod:`posture.io.csvcells`);
        :meth:`from_row` restores them, so ingest and the tool read back the real file name.
        """

        def num(v: float | None, digits: int) -> str:
            return "" if v is None else f"{float(v):.{digits}f}"

        return [
            neutralise(self.filename),
            self.label,
            num(self.cva_deg, 2),
            num(self.ear_x, 1),
            num(self.ear_y, 1),
            num(self.c7_x, 1),
            num(self.c7_y, 1),
            neutralise(self.labeler),
            self.timestamp,
        ]

    @classmethod
    def from_row(cls, row: dict[str, str]) -> LabelRecord:
        """Parse a CSV row (missing optional columns allowed, so plain ``filename,label`` files work)."""

        def num(key: str) -> float | None:
            text = (row.get(key) or "").strip()
            if not text:
                return None
            value = float(text)
            return value if math.isfinite(value) else None

        return cls(
            filename=restore((row.get("filename") or "").strip()),
            label=(row.get("label") or "").strip(),
            cva_deg=num("cva_deg"),
            ear_x=num("ear_x"),
            ear_y=num("ear_y"),
            c7_x=num("c7_x"),
            c7_y=num("c7_y"),
            labeler=restore((row.get("labeler") or "").strip()),
            timestamp=(row.get("timestamp") or "").strip(),
        )

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def encode_row(record: LabelRecord) -> bytes:
    """The exact bytes of one CSV line, newline included (so one write appends one whole row)."""
    for cell in (record.filename, record.label, record.labeler):
        if "\n" in cell or "\r" in cell:
            raise ValueError(f"line breaks are not allowed in label CSV cells: {cell!r}")
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(record.to_row())
    return buf.getvalue().encode("utf-8")


def repair_torn_tail(path: str | os.PathLike[str]) -> int:
    """Cut an unterminated last line (a write interrupted by a kill); returns the bytes removed.

    Every complete row ends in ``\\n`` because it was written together with it, so anything after
    the last newline is a partial row and carries no answer worth keeping.
    """
    p = Path(path)
    size = p.stat().st_size
    if size == 0:
        return 0
    with open(p, "rb+") as fh:
        # Scan backwards in blocks for the last newline; rows are short, so this reads little.
        pos, block = size, 4096
        keep = 0
        while pos > 0:
            start = max(0, pos - block)
            fh.seek(start)
            chunk = fh.read(pos - start)
            idx = chunk.rfind(b"\n")
            if idx >= 0:
                keep = start + idx + 1
                break
            pos = start
        removed = size - keep
        if removed:
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())
    if removed:
        log.warning("%s: removed a torn last line (%d bytes) left by an interrupted write", p, removed)
    return removed


def read_records(path: str | os.PathLike[str]) -> list[LabelRecord]:
    """Every complete row in file order (history included); a torn last line is ignored, not fatal."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{path}: no such label file")
    data = p.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]  # ignore the torn tail without modifying the file
    text = data.decode("utf-8-sig", errors="replace")
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None:
        return []
    names = [n.strip().lower() for n in reader.fieldnames]
    for column, aliases in _COLUMN_ALIASES.items():  # other teams' CSVs: path,label or image,class
        if column not in names:
            alias = next((a for a in aliases if a in names), None)
            if alias is not None:
                names[names.index(alias)] = column
    if "filename" not in names or "label" not in names:
        raise UserError(f"{path}: a label CSV needs the columns filename and label (found {', '.join(names)})")
    reader.fieldnames = names
    records = []
    for lineno, row in enumerate(reader, start=2):
        try:
            rec = LabelRecord.from_row(row)
        except ValueError as exc:
            log.warning("%s:%d: skipping a malformed row (%s)", path, lineno, exc)
            continue
        if rec.filename and not (rec.filename == "filename" and rec.label == "label"):  # a racing 2nd header
            records.append(rec)
    return records


def latest_by_file(records: Iterable[LabelRecord], labeler: str | None = None) -> dict[str, LabelRecord]:
    """The answer in force per filename: the last row wins (optionally only one labeler's rows).

    The dict's order is the order in which the answers in force were given, which is what
    *previous* walks back through.
    """
    latest: dict[str, LabelRecord] = {}
    for rec in records:
        if labeler is not None and rec.labeler != labeler:
            continue
        latest.pop(rec.filename, None)  # re-insert so the order follows the newest answer
        latest[rec.filename] = rec
    return latest


def read_labels(path: str | os.PathLike[str], labeler: str | None = None) -> dict[str, LabelRecord]:
    """The answers in force in a label CSV: ``filename -> LabelRecord``."""
    return latest_by_file(read_records(path), labeler=labeler)


class LabelStore:
    """An append-only label CSV opened for one labeling session (resumable, kill-safe).

    Opening repairs a torn tail, checks the header and writes it to a new file. Several labelers
    may append to the same file: ``O_APPEND`` writes of a single short row do not interleave on
    a local file system.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            repair_torn_tail(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            self._ensure_header()
        except BaseException:
            os.close(self._fd)
            raise

    def _ensure_header(self) -> None:
        if self.path.stat().st_size == 0:
            self._write(_HEADER)
            return
        with open(self.path, "rb") as fh:
            first = fh.readline().decode("utf-8-sig", errors="replace").strip()
        found = [c.strip() for c in first.split(",")]
        if found != list(COLUMNS):
            raise UserError(
                f"{self.path}: not a labeling-tool CSV (header {first!r}; expected {','.join(COLUMNS)}); "
                "choose another --out file"
            )

    def _write(self, data: bytes) -> None:
        written = os.write(self._fd, data)
        if written != len(data):  # disk full: say so rather than leave a row half on disk silently
            raise OSError(f"{self.path}: short write ({written} of {len(data)} bytes)")
        os.fsync(self._fd)

    def append(self, record: LabelRecord) -> LabelRecord:
        """Durably add one answer (it is on disk when this returns); the timestamp is filled in if empty."""
        if not record.timestamp:
            record = replace(record, timestamp=utc_timestamp())
        self._write(encode_row(record))
        return record

    def records(self) -> list[LabelRecord]:
        return read_records(self.path)

    def latest(self, labeler: str | None = None) -> dict[str, LabelRecord]:
        return read_labels(self.path, labeler=labeler)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a forgotten close must not leak descriptors in long test runs
        with contextlib.suppress(Exception):
            self.close()
