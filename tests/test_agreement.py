"""Inter-labeler agreement: kappa, CVA differences and the list of disputed photos."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from posture.cli import UserError, config_from_args, run_main
from posture.data.agreement import AgreementConfig, agreement_from_records, build_parser, labeler_agreement, main
from posture.io.labelstore import LabelRecord, LabelStore

REPO = Path(__file__).resolve().parents[1]


def _write(path: Path, rows: list[tuple[str, str, float | None]], labeler: str = "x") -> Path:
    with LabelStore(path) as store:
        for name, label, cva in rows:
            store.append(LabelRecord(name, label, cva, labeler=labeler))
    return path


A_ROWS = [
    ("1.jpg", "forward_head", 40.0),
    ("2.jpg", "forward_head", 45.0),
    ("3.jpg", "normal", 55.0),
    ("4.jpg", "normal", 60.0),
    ("5.jpg", "normal", 52.0),
    ("6.jpg", "forward_head", None),
    ("only_a.jpg", "normal", 58.0),
]
B_ROWS = [
    ("1.jpg", "forward_head", 42.0),
    ("2.jpg", "normal", 51.0),
    ("3.jpg", "normal", 56.0),
    ("4.jpg", "normal", 61.0),
    ("5.jpg", "forward_head", 47.0),
    ("6.jpg", "forward_head", None),
    ("only_b.jpg", "unusable", None),
]


def test_kappa_cva_difference_and_disagreements(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.csv", A_ROWS)
    b = _write(tmp_path / "b.csv", B_ROWS)
    rep = labeler_agreement(a, b)
    assert (rep.n_a, rep.n_b, rep.n_common) == (7, 7, 6)
    assert rep.only_a == ["only_a.jpg"] and rep.only_b == ["only_b.jpg"]
    # 4 of 6 agree; each labeler says forward head 3 times of 6 -> chance agreement 0.5 -> kappa 1/3.
    assert rep.percent_agreement == pytest.approx(4 / 6)
    assert rep.kappa == pytest.approx(1 / 3)
    assert rep.labels == ["forward_head", "normal"]
    assert rep.confusion == [[2, 1], [1, 2]]
    assert rep.n_cva_common == 5  # 6.jpg has no angles
    assert rep.mean_abs_cva_diff == pytest.approx((2 + 6 + 1 + 1 + 5) / 5)
    assert rep.max_abs_cva_diff == pytest.approx(6.0)
    assert [d.filename for d in rep.disagreements] == ["2.jpg", "5.jpg"]  # largest angle gap first
    assert (rep.disagreements[0].label_a, rep.disagreements[0].label_b) == ("forward_head", "normal")
    text = rep.format_text()
    assert "0.333" in text and "2.jpg: forward_head vs normal" in text


def test_perfect_and_undefined_agreement() -> None:
    recs = {f"{i}.jpg": LabelRecord(f"{i}.jpg", "forward_head" if i % 2 else "normal") for i in range(6)}
    assert agreement_from_records(recs, dict(recs)).kappa == pytest.approx(1.0)
    same = {f: LabelRecord(f, "normal") for f in ("a", "b")}
    rep = agreement_from_records(same, dict(same))
    assert rep.kappa is None and rep.percent_agreement == 1.0  # one label only: kappa undefined
    assert "undefined" in rep.format_text()
    empty = agreement_from_records(same, {})
    assert empty.n_common == 0 and empty.kappa is None and empty.percent_agreement is None


def test_angles_are_derived_from_points_when_missing() -> None:
    a = {"p": LabelRecord("p", "normal", None, 10, 0, 0, 10)}  # 45 degrees from the points
    b = {"p": LabelRecord("p", "normal", 50.0)}
    assert agreement_from_records(a, b).mean_abs_cva_diff == pytest.approx(5.0)


def test_later_rows_supersede_before_comparing(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.csv", [("1.jpg", "normal", None), ("1.jpg", "forward_head", None)])
    b = _write(tmp_path / "b.csv", [("1.jpg", "forward_head", None)])
    rep = labeler_agreement(a, b)
    assert rep.percent_agreement == 1.0 and rep.disagreements == []


def test_two_labelers_in_one_csv(tmp_path: Path) -> None:
    path = tmp_path / "shared.csv"
    _write(path, [("1.jpg", "normal", 55.0), ("2.jpg", "normal", 60.0)], labeler="ann")
    _write(path, [("1.jpg", "forward_head", 45.0), ("2.jpg", "normal", 58.0)], labeler="bob")
    rep = labeler_agreement(path, labeler_a="ann", labeler_b="bob")
    assert (rep.name_a, rep.name_b, rep.n_common) == ("ann", "bob", 2)
    assert [d.filename for d in rep.disagreements] == ["1.jpg"]
    with pytest.raises(UserError, match="name both labelers"):
        labeler_agreement(path)


def test_cli_prints_summary_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _write(tmp_path / "a.csv", A_ROWS)
    b = _write(tmp_path / "b.csv", B_ROWS)
    out = tmp_path / "agreement.json"
    assert run_main(main, [str(a), str(b), "--json", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "Cohen's kappa: 0.333" in printed and "labeled by both: 6" in printed
    saved = json.loads(out.read_text())
    assert saved["kappa"] == pytest.approx(1 / 3) and saved["disagreements"][0]["filename"] == "2.jpg"


def test_cli_missing_file_is_one_error_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "posture.agreement", str(tmp_path / "nope.csv")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope.csv'}: no such file"]


def test_cli_options_come_from_the_config_and_it_checks_them(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.csv", A_ROWS)
    cfg = config_from_args(
        AgreementConfig, build_parser().parse_args([str(a), "--labeler-b", "kim", "--max-listed", "3"])
    )
    assert cfg == AgreementConfig(csv_a=a, labeler_b="kim", max_listed=3)
    with pytest.raises(UserError, match="--max-listed must be >= 0"):
        AgreementConfig(csv_a=a, max_listed=-1)


def test_other_teams_csvs_and_label_spellings(tmp_path: Path) -> None:
    """A ``path,class`` CSV with "Turtle neck" agrees with the tool's ``forward_head``."""
    a = tmp_path / "team.csv"
    a.write_text("path,class\n1.jpg,Turtle neck\n2.jpg,good posture\n3.jpg,unusable\n")
    b = _write(
        tmp_path / "b.csv", [("1.jpg", "forward_head", 40.0), ("2.jpg", "normal", 60.0), ("3.jpg", "unusable", None)]
    )
    rep = labeler_agreement(a, b)
    assert rep.n_common == 3 and rep.percent_agreement == 1.0 and rep.kappa == pytest.approx(1.0)
    assert rep.labels == ["forward_head", "normal", "unusable"]


def test_ingest_given_two_labelers_reports_their_agreement(tmp_path: Path) -> None:
    """Two labelers' CSVs handed to ingest: labels come from the first, kappa lands in the summary."""
    from PIL import Image

    from posture.ingest import IngestConfig, ingest

    src = tmp_path / "photos"
    src.mkdir()
    rng_colours = [(i * 37 % 255, i * 91 % 255, i * 53 % 255) for i in range(6)]
    for i, colour in enumerate(rng_colours, start=1):
        img = Image.new("RGB", (96, 96), colour)
        img.paste((255 - colour[0], 0, 0), (i * 8, i * 5, i * 8 + 30, i * 5 + 40))  # not near-duplicates
        img.save(src / f"{i}.jpg")
    a = _write(tmp_path / "a.csv", A_ROWS[:6], labeler="ann")
    b = _write(tmp_path / "b.csv", B_ROWS[:6], labeler="bob")
    result = ingest(
        IngestConfig(src=src, out=tmp_path / "ds", labels=(a, b), near_dup_threshold=-1, workers=1, progress=False)
    )
    assert any("kappa" in w and "2 disagreement" in w for w in result.warnings)
    labels = dict(zip(result.manifest["source_path"], result.manifest["label"], strict=True))
    assert labels["2.jpg"] == "forward_head" and labels["5.jpg"] == "normal"  # the first labeler's
