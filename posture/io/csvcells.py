"""CSV cells that read back exactly what was written and never run as a spreadsheet formula.

Why: the project's CSVs (``manifest.csv``, ``rejected.csv``, the labeling tool's answers,
evaluation tables) are opened in spreadsheets by people, and their text comes from file and folder
names other people chose. A cell starting with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage
return) is run as a formula by Excel and LibreOffice (CSV injection). The usual defence (OWASP)
is a leading ``'``, which spreadsheets show as text. To keep the round trip exact, a cell that
already starts with ``'`` gets one too, so :func:`restore` knows that a leading ``'`` followed by
one of those characters was ours; the project's readers (:func:`read_csv`, the label store) strip
it. Only text cells are touched: numbers (``-5.0``) are written as numbers.

Line breaks: Python's ``csv`` (and pandas) quote a cell holding ``\\n`` but not one holding only
``\\r``, which readers then take for the end of a row; :func:`write_csv` quotes such cells too.
"""

from __future__ import annotations

import csv
import os
from typing import Any, TextIO

import pandas as pd

#: A text cell starting with one of these is prefixed with ``'`` (``'`` itself: to stay invertible).
RISKY_START = ("=", "+", "-", "@", "\t", "\r", "'")


def neutralise(cell: str) -> str:
    """``cell`` as a spreadsheet shows it but never evaluates it."""
    return "'" + cell if cell.startswith(RISKY_START) else cell


def restore(cell: str) -> str:
    """The text :func:`neutralise` was given; any other cell is returned unchanged."""
    return cell[1:] if len(cell) > 1 and cell[0] == "'" and cell[1] in RISKY_START else cell


def _text_columns(frame: pd.DataFrame) -> list[Any]:
    return [c for c in frame.columns if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c].dtype)]


def _map_text(frame: pd.DataFrame, fn: Any) -> pd.DataFrame:
    out = frame.copy()
    for col in _text_columns(out):
        out[col] = out[col].map(lambda v: fn(v) if isinstance(v, str) else v)
    return out


def neutralise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    return _map_text(frame, neutralise)


def restore_frame(frame: pd.DataFrame) -> pd.DataFrame:
    return _map_text(frame, restore)


def write_csv(frame: pd.DataFrame, path: str | os.PathLike[str] | TextIO, header: bool = True) -> None:
    """``frame`` as CSV (no index), neutralised, with every cell that holds a line break quoted.

    ``path`` may be an open text file, so a long stream of rows is written in chunks as it comes
    (``header`` on the first chunk only) instead of being held whole."""
    safe = neutralise_frame(frame)
    has_cr = any(safe[c].map(lambda v: isinstance(v, str) and "\r" in v).any() for c in _text_columns(safe))
    # QUOTE_NONNUMERIC quotes every text cell, "\r" included; only files that need it pay for it.
    safe.to_csv(path, index=False, header=header, quoting=csv.QUOTE_NONNUMERIC if has_cr else csv.QUOTE_MINIMAL)


def read_csv(path: str | os.PathLike[str], **kwargs: Any) -> pd.DataFrame:
    """``pandas.read_csv`` for a CSV the project wrote: neutralised cells come back as they were."""
    return restore_frame(pd.read_csv(path, **kwargs))
