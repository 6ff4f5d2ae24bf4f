"""Every CSV the project writes reads back to exactly what was meant, and none runs as a formula."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from posture.io.csvcells import neutralise, read_csv, restore
from posture.io.fileio import atomic_write_csv
from posture.io.labelstore import LabelRecord, LabelStore, read_records

AWKWARD = [
    "plain",
    "=1+1",
    "+SUM(A1)",
    "-2",
    "@cmd",
    "'quoted",
    "'=already",
    "''",
    "'",
    "\tTAB",
    "a\rb",
    "c\nd",
    "e\r\nf",
    "\r",
    'quote "x"',
    "comma, here",
    "ünïcode",
    "",
]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _risky_text_cells(path: Path) -> list[str]:
    """Cells a spreadsheet would run as a formula (numbers such as -5.0 are just numbers)."""

    def number(cell: str) -> bool:
        try:
            float(cell)
        except ValueError:
            return False
        return True

    with open(path, newline="", encoding="utf-8") as fh:
        return [c for row in csv.reader(fh) for c in row if c.startswith(FORMULA_STARTS) and not number(c)]


def test_neutralise_and_restore_are_inverse_and_leave_plain_cells_alone():
    for cell in AWKWARD:
        assert restore(neutralise(cell)) == cell
        assert not neutralise(cell).startswith(FORMULA_STARTS)
    assert neutralise("images/a.jpg") == "images/a.jpg" and restore("'plain") == "'plain"


def test_atomic_write_csv_round_trips_awkward_text_and_keeps_numbers(tmp_path):
    frame = pd.DataFrame({"text": AWKWARD, "number": [-5.0 + i for i in range(len(AWKWARD))]})
    atomic_write_csv(tmp_path / "t.csv", frame)
    back = read_csv(tmp_path / "t.csv", dtype={"text": str}, keep_default_na=False)
    assert list(back["text"]) == AWKWARD
    assert list(back["number"]) == list(frame["number"])  # -5.0 stays a number, not '-5.0
    assert not _risky_text_cells(tmp_path / "t.csv")


@pytest.mark.parametrize("name", ['=HYPERLINK("http://x").jpg', "+1.jpg", "-a.jpg", "@b.jpg", "'c.jpg", "'=d.jpg"])
def test_label_csv_neutralises_formula_names_and_reads_them_back(tmp_path, name):
    path = tmp_path / "labels.csv"
    with LabelStore(path) as store:
        store.append(LabelRecord(name, "normal", labeler="=boss"))
    assert not _risky_text_cells(path)
    (rec,) = read_records(path)
    assert (rec.filename, rec.labeler) == (name, "=boss")


def test_ingest_reads_formula_names_from_the_labeling_tools_csv(tmp_path):
    from _ingest_helpers import photo, run, save

    src = tmp_path / "drop"
    for i, name in enumerate(["=a.jpg", "-b.jpg", "c.jpg"]):
        save(photo(i), src / name)
    with LabelStore(tmp_path / "labels.csv") as store:
        for name in ["=a.jpg", "-b.jpg", "c.jpg"]:
            store.append(LabelRecord(name, "normal", labeler="ann"))
    result = run(src, tmp_path / "out", labels=(tmp_path / "labels.csv",))
    assert sorted(result.manifest["source_path"]) == ["-b.jpg", "=a.jpg", "c.jpg"]
