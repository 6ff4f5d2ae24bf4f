"""The record of one watched sitting on disk: ``frames.csv``, ``summary.json``, ``timeline.png``.

Why a module of its own: a video file and the desktop camera write the same record, and it must hold
up over hours. Rows are written to ``frames.csv`` in chunks as they come (the project's spreadsheet-safe
CSV cells, :mod:`posture.io.csvcells`), the timeline keeps a bounded summary
(:class:`~posture.sitting.timeline.Timeline`),
so memory does not grow with the sitting's length. The three files are written into a staging folder
that replaces the output folder only when the record is finished (:func:`posture.io.fileio.staged_folder`):
an interrupted run never leaves half a record where a whole one was. Only numbers and words are
written, never a frame.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

import pandas as pd

from posture.cli import UserError
from posture.io.csvcells import write_csv
from posture.io.fileio import atomic_write_json, check_writable_output, remove_stale_staging, staged_folder
from posture.sitting.session import FrameResult, WatchConfig
from posture.sitting.timeline import Timeline, plot_timeline

FRAMES_NAME, SUMMARY_NAME, TIMELINE_NAME = "frames.csv", "summary.json", "timeline.png"
RECORD_FILES = frozenset({FRAMES_NAME, SUMMARY_NAME, TIMELINE_NAME})
#: ``frames.csv``'s columns, in order: every field of a row.
COLUMNS = [f.name for f in fields(FrameResult)]
#: Rows held before they are appended to ``frames.csv``.
CHUNK_ROWS = 256


def check_record_folder(folder: str | os.PathLike[str], overwrite: bool, what: str) -> None:
    """Refuse at once (one :class:`UserError` line) to write a record into ``folder`` when it cannot be
    written, already holds a record and ``overwrite`` is off, or holds anything else (replacing the
    folder would delete it: a video kept beside its record, someone's other files)."""
    target = Path(folder)
    check_writable_output(target, what)
    remove_stale_staging(target)
    if not target.is_dir():
        return
    names = {p.name for p in target.iterdir()}
    others = sorted(names - RECORD_FILES)
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise UserError(
            f"{what}: {target} holds other files ({shown}), which replacing it would delete; choose another --out"
        )
    if names and not overwrite:
        raise UserError(f"{what}: {target} already holds a watch's record; pass --overwrite to replace it")


class SittingRecord:
    """One record being written into ``folder`` (module docstring); :meth:`finish` completes it."""

    def __init__(self, folder: Path, config: WatchConfig, title: str) -> None:
        self.folder = folder
        self.config = config
        self.title = title
        self.timeline = Timeline()
        self.rows = 0
        self._pending: list[dict[str, Any]] = []
        self._csv = open(folder / FRAMES_NAME, "w", newline="", encoding="utf-8")  # noqa: SIM115 (closed in finish)
        self._header = True
        self.finished = False

    def add(self, row: FrameResult) -> None:
        self._pending.append(row.to_dict())
        self.timeline.add(row)
        self.rows += 1
        if len(self._pending) >= CHUNK_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._pending or self._header:
            write_csv(pd.DataFrame(self._pending, columns=COLUMNS), self._csv, header=self._header)
            self._header = False
            self._pending.clear()

    def finish(self, summary: dict[str, Any]) -> None:
        """Write the last rows, ``summary.json`` and ``timeline.png``."""
        self._flush()
        self._csv.close()
        atomic_write_json(self.folder / SUMMARY_NAME, summary)
        plot_timeline(self.timeline, self.folder / TIMELINE_NAME, self.config, title=self.title)
        self.finished = True

    def close(self) -> None:
        if not self._csv.closed:
            self._csv.close()


@contextmanager
def recording(folder: str | os.PathLike[str], config: WatchConfig, title: str) -> Iterator[SittingRecord]:
    """A :class:`SittingRecord` written into a staging folder that replaces ``folder`` when the block ends
    after :meth:`SittingRecord.finish`; after an error, or without ``finish``, ``folder`` is left as it was."""
    with staged_folder(folder) as staging:
        record = SittingRecord(staging, config, title)
        try:
            yield record
        finally:
            record.close()
        if not record.finished:  # a caller's mistake: never swap half a record in
            raise RuntimeError("a sitting's record was left without SittingRecord.finish()")


__all__ = [
    "COLUMNS",
    "FRAMES_NAME",
    "RECORD_FILES",
    "SUMMARY_NAME",
    "TIMELINE_NAME",
    "SittingRecord",
    "check_record_folder",
    "recording",
]
