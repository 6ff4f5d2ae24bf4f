"""The labeling tool's CSV: append, resume, supersede, and no lost or half rows after a kill."""

from __future__ import annotations

import csv
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from posture.cli import UserError
from posture.io.labelstore import (
    COLUMNS,
    UNUSABLE,
    LabelRecord,
    LabelStore,
    encode_row,
    read_labels,
    read_records,
    repair_torn_tail,
)

REPO = Path(__file__).resolve().parents[1]


def _rec(name: str, label: str = "normal", labeler: str = "ann", **kw: object) -> LabelRecord:
    return LabelRecord(name, label, labeler=labeler, **kw)  # type: ignore[arg-type]


def test_columns_match_the_record_fields() -> None:
    assert [f.name for f in dataclasses.fields(LabelRecord)] == list(COLUMNS)
    assert COLUMNS == ("filename", "label", "cva_deg", "ear_x", "ear_y", "c7_x", "c7_y", "labeler", "timestamp")


def test_new_file_gets_header_and_rows_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "labels.csv"
    with LabelStore(path) as store:
        saved = store.append(LabelRecord("a/b.jpg", "forward_head", 31.234, 10.04, 20.0, 5.0, 40.0, "ann"))
        store.append(_rec("c.jpg", UNUSABLE))
    assert saved.timestamp.endswith("Z")
    rows = list(csv.reader(path.open(newline="")))
    assert rows[0] == list(COLUMNS)
    assert rows[1][:8] == ["a/b.jpg", "forward_head", "31.23", "10.0", "20.0", "5.0", "40.0", "ann"]
    assert rows[2][:8] == ["c.jpg", "unusable", "", "", "", "", "", "ann"]
    records = read_records(path)
    assert [r.filename for r in records] == ["a/b.jpg", "c.jpg"]
    assert records[0].cva_deg == pytest.approx(31.23) and records[0].has_points
    assert records[1].cva_deg is None and not records[1].has_points


def test_awkward_file_names_survive_csv_quoting(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    names = ["comma, in name.jpg", 'quote "x".png', "ünïcode/ß.jpg"]
    with LabelStore(path) as store:
        for n in names:
            store.append(_rec(n))
    assert list(read_labels(path)) == names


def test_line_breaks_in_cells_are_refused() -> None:
    with pytest.raises(ValueError, match="line breaks"):
        encode_row(_rec("bad\nname.jpg"))


def test_reopening_resumes_and_later_rows_supersede(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    with LabelStore(path) as store:
        store.append(_rec("1.jpg", "normal"))
        store.append(_rec("2.jpg", "forward_head"))
    with LabelStore(path) as store:  # a second session appends; the header is not repeated
        store.append(_rec("1.jpg", "forward_head"))  # *previous* + relabel
        store.append(_rec("3.jpg", "normal"))
        latest = store.latest()
    assert path.read_text().count("filename,label") == 1
    assert len(read_records(path)) == 4  # history kept for audits
    assert {k: v.label for k, v in latest.items()} == {
        "2.jpg": "forward_head",
        "1.jpg": "forward_head",
        "3.jpg": "normal",
    }
    assert list(latest) == ["2.jpg", "1.jpg", "3.jpg"]  # in the order the answers in force were given


def test_latest_per_labeler(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    with LabelStore(path) as store:
        store.append(_rec("1.jpg", "normal", labeler="ann"))
        store.append(_rec("1.jpg", "forward_head", labeler="bob"))
    assert read_labels(path, labeler="ann")["1.jpg"].label == "normal"
    assert read_labels(path, labeler="bob")["1.jpg"].label == "forward_head"
    assert read_labels(path)["1.jpg"].label == "forward_head"


def test_torn_last_line_is_ignored_on_read_and_cut_on_open(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    with LabelStore(path) as store:
        store.append(_rec("1.jpg"))
    whole = path.read_bytes()
    torn = encode_row(_rec("2.jpg", "forward_head"))[:9]  # a kill in the middle of a write
    path.write_bytes(whole + torn)
    assert [r.filename for r in read_records(path)] == ["1.jpg"]  # reading never fails on it
    assert path.read_bytes().endswith(torn)  # ... and does not modify the file
    with LabelStore(path) as store:  # opening for writing repairs it
        store.append(_rec("3.jpg"))
    assert path.read_bytes().startswith(whole)
    assert [r.filename for r in read_records(path)] == ["1.jpg", "3.jpg"]


def test_torn_header_is_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_bytes(b"filename,la")
    assert repair_torn_tail(path) == len(b"filename,la")
    with LabelStore(path) as store:
        store.append(_rec("1.jpg"))
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)


def test_foreign_csv_is_not_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("path,label\nx.jpg,normal\n")
    with pytest.raises(UserError, match="not a labeling-tool CSV"):
        LabelStore(path)
    assert path.read_text() == "path,label\nx.jpg,normal\n"


def test_plain_filename_label_csv_is_readable(tmp_path: Path) -> None:
    """Agreement works on other teams' CSVs too: only filename and label are required."""
    path = tmp_path / "plain.csv"
    path.write_text("filename,label,cva_deg\nx.jpg,normal,55.5\ny.jpg,forward_head,\n")
    labels = read_labels(path)
    assert labels["x.jpg"].cva_deg == 55.5 and labels["y.jpg"].cva_deg is None
    (tmp_path / "bad.csv").write_text("image,klass\nx.jpg,normal\n")
    with pytest.raises(UserError, match="filename and label"):
        read_labels(tmp_path / "bad.csv")


_WRITER = r"""
import sys
from posture.io.labelstore import LabelRecord, LabelStore
store = LabelStore(sys.argv[1])
i = 0
while True:
    # a long, distinctive row: every field can be checked after the kill
    store.append(LabelRecord(f"img_{i:07d}_" + "x" * 150 + ".jpg", "forward_head" if i % 2 else "normal",
                             float(i % 90), float(i), float(2 * i), float(3 * i), float(4 * i), f"w{i}"))
    i += 1
"""


@pytest.mark.slow
def test_sigkill_during_appends_leaves_only_whole_rows(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for round_ in range(2):  # the second round appends after a repair, to the same file
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], env=env, cwd=tmp_path)
        try:
            want = 200 * (round_ + 1)
            give_up = time.monotonic() + 120  # a hang guard, not a speed check
            while time.monotonic() < give_up:
                if path.exists() and path.read_bytes().count(b"\n") > want:
                    break
                time.sleep(0.02)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        records = read_records(path)
        assert len(records) >= want
        LabelStore(path).close()  # open for writing: repairs any torn tail
        data = path.read_bytes()
        assert data.endswith(b"\n")
        lines = data.decode().splitlines()
        assert lines[0] == ",".join(COLUMNS)
        for line in lines[1:]:
            assert len(next(csv.reader([line]))) == len(COLUMNS), line
    records = read_records(path)
    seen: dict[int, int] = {}
    for r in records:
        i = int(r.filename[4:11])
        seen[i] = seen.get(i, 0) + 1
        assert r.filename == f"img_{i:07d}_" + "x" * 150 + ".jpg"
        assert r.label == ("forward_head" if i % 2 else "normal")
        assert (r.cva_deg, r.ear_x, r.ear_y, r.c7_x, r.c7_y) == (i % 90, i, 2 * i, 3 * i, 4 * i)
        assert r.labeler == f"w{i}"
    # each writer numbered from 0, so indices repeat across rounds but are consecutive within one
    assert max(seen.values()) <= 2 and min(seen) == 0
