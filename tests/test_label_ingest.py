"""The labeling tool's CSV is a label CSV that ``python -m posture.ingest`` takes as it is."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from app.label_session import LabelConfig, LabelSession
from posture.io.images import open_rgb
from tests._label_helpers import make_photos, write_exif_rotated_jpeg

pytestmark = pytest.mark.slow

ingest_main = pytest.importorskip("posture.ingest.__main__").main


def _label_folder(tmp_path: Path) -> tuple[Path, Path]:
    photos = make_photos(tmp_path / "photos", ["anna-1.jpg", "anna-2.jpg", "bob-1.jpg", "bob-2.jpg"], size=(160, 120))
    write_exif_rotated_jpeg(photos / "carl-1.jpg", stored_size=(160, 120), orientation=6)
    csv_path = tmp_path / "labels.csv"
    s = LabelSession(LabelConfig(images=photos, out=csv_path, labeler="ann"))
    s.answer_points("anna-1.jpg", (100.0, 20.0), (60.0, 80.0))  # 56.3 degrees: normal
    s.answer_points("anna-2.jpg", (130.0, 50.0), (40.0, 90.0))  # 24.0 degrees: forward head
    s.answer_class("bob-1.jpg", "forward_head")  # quick mode, no points
    s.answer_class("bob-2.jpg", "unusable")  # skip
    # the rotated phone photo: points are in the upright (EXIF-applied) frame, 120 wide x 160 high
    assert open_rgb(photos / "carl-1.jpg").size == (120, 160)
    s.answer_points("carl-1.jpg", (90.0, 20.0), (30.0, 150.0))  # 65.2 degrees: normal
    s.close()
    return photos, csv_path


def test_cli_ingests_the_label_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photos, csv_path = _label_folder(tmp_path)
    out = tmp_path / "dataset"
    code = ingest_main(
        [
            str(photos),
            "--out",
            str(out),
            "--labels",
            str(csv_path),
            "--max-side",
            "0",
            "--subject-pattern",
            r"^(.+?)-\d+",
            "--workers",
            "1",
            "--no-progress",
            "-q",
        ]
    )
    capsys.readouterr()
    assert code == 0
    manifest = pd.read_csv(out / "manifest.csv").set_index("source_path")
    assert manifest["label"].to_dict() == {
        "anna-1.jpg": "normal",
        "anna-2.jpg": "forward_head",
        "bob-1.jpg": "forward_head",
        "carl-1.jpg": "normal",
    }
    labels = pd.read_csv(csv_path).set_index("filename")
    for name in ("anna-1.jpg", "anna-2.jpg", "carl-1.jpg"):
        assert manifest.loc[name, "cva_deg"] == pytest.approx(labels.loc[name, "cva_deg"], abs=0.01)
        # kept at the original size (--max-side 0): the stored points are the manifest's points
        for col in ("ear_x", "ear_y", "c7_x", "c7_y"):
            assert manifest.loc[name, col] == pytest.approx(labels.loc[name, col], abs=0.01)
    assert (manifest.loc["carl-1.jpg", "width"], manifest.loc["carl-1.jpg", "height"]) == (120, 160)
    rejected = pd.read_csv(out / "rejected.csv")
    assert rejected.set_index("path")["reason"].to_dict() == {"bob-2.jpg": "unknown_label"}


def test_a_relabel_is_what_ingest_keeps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """*Previous* + a new answer appends a row; ingest must take the later one."""
    photos = make_photos(tmp_path / "photos", ["a-1.jpg", "b-1.jpg"], size=(100, 100))
    csv_path = tmp_path / "labels.csv"
    s = LabelSession(LabelConfig(images=photos, out=csv_path, labeler="ann"))
    s.answer_class("a-1.jpg", "normal")
    s.answer_class("b-1.jpg", "normal")
    s.answer_class("a-1.jpg", "forward_head")  # *previous*, then a different answer
    s.close()
    out = tmp_path / "dataset"
    ingest_main([str(photos), "--out", str(out), "--labels", str(csv_path), "--workers", "1", "--no-progress", "-q"])
    capsys.readouterr()
    manifest = pd.read_csv(out / "manifest.csv").set_index("source_path")
    assert manifest.loc["a-1.jpg", "label"] == "forward_head"
