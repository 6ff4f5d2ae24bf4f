"""Running ingest: the source is untouched, reruns are identical, the output folder is guarded, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from _ingest_helpers import class_tree, photo, run, save, tree_fingerprint
from posture.cli import UserError
from posture.ingest import SUMMARY_NAME
from posture.ingest.__main__ import main

REPO = Path(__file__).resolve().parents[1]
REAL = REPO / ".." / "shared" / "data" / "real"


@pytest.fixture()
def drop(tmp_path):
    src = class_tree(tmp_path / "drop", per_class=4)
    (src / "normal" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (src / ".DS_Store").write_bytes(b"\0")
    (src / "normal" / "copy.jpg").write_bytes((src / "normal" / "normal-0.jpg").read_bytes())
    return src


def test_source_tree_is_not_modified(drop, tmp_path):
    os.symlink(drop / "normal" / "normal-1.jpg", drop / "normal" / "inside-link.jpg")
    before = tree_fingerprint(drop)
    run(drop, tmp_path / "out")
    run(drop, tmp_path / "out")  # and a rerun over the first output
    assert tree_fingerprint(drop) == before


def test_two_runs_write_byte_identical_files(drop, tmp_path):
    run(drop, tmp_path / "a")
    run(drop, tmp_path / "b", workers=2)  # the process pool gives the same result as one process
    for name in ("manifest.csv", "rejected.csv", "classes.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    manifest = pd.read_csv(tmp_path / "a" / "manifest.csv")
    for row in manifest.itertuples():
        assert (tmp_path / "a" / row.path).read_bytes() == (tmp_path / "b" / row.path).read_bytes()


def test_manifest_and_summary_follow_the_documented_format(drop, tmp_path):
    result = run(drop, tmp_path / "out", source_name="team-a")
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv", dtype={"subject": str})
    for col in ("path", "label", "split", "subject", "sha256", "width", "height", "source_path", "source"):
        assert col in manifest.columns
    assert set(manifest["source"]) == {"team-a"}
    assert set(manifest["split"]) <= {"train", "val", "test"}
    summary = json.loads((tmp_path / "out" / SUMMARY_NAME).read_text())
    assert summary == json.loads(json.dumps(result.summary))
    assert summary["counts"] == {
        "files_found": 11,
        "kept": 8,
        "rejected": 1,
        "duplicates": 1,
        "skipped": 1,
        "csv_rows_rejected": 0,
    }
    assert summary["rejected_by_reason"]["not_an_image"] + summary["rejected_by_reason"]["corrupt"] == 1
    assert not list((tmp_path).glob(".out.*")), "no staging folder is left behind"


def test_output_folder_is_guarded(drop, tmp_path):
    run(drop, tmp_path / "out")
    other = class_tree(tmp_path / "other", per_class=2, seed0=100)
    with pytest.raises(UserError, match="--overwrite"):
        run(other, tmp_path / "out")
    assert run(other, tmp_path / "out", overwrite=True).kept == 4

    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "thesis.docx").write_text("precious")
    with pytest.raises(UserError, match="not empty"):
        run(drop, stranger, overwrite=True)
    assert (stranger / "thesis.docx").read_text() == "precious"
    with pytest.raises(UserError, match="inside the source"):
        run(drop, drop / "out")
    with pytest.raises(UserError, match="contains the source"):
        run(drop, tmp_path)


def test_an_interrupted_run_can_be_rerun(drop, tmp_path):
    stale = tmp_path / ".out.partial-crashed"
    save(photo(1), stale / "images" / "normal" / "half.jpg")
    result = run(drop, tmp_path / "out")
    assert not stale.exists()
    assert result.kept == 8
    assert set(p.name for p in (tmp_path / "out").iterdir()) == {
        "images",
        "manifest.csv",
        "rejected.csv",
        "classes.json",
        "summary.json",
    }


def test_cli_prints_a_summary_table_and_returns_zero(drop, tmp_path, capsys):
    code = main(
        [
            str(drop),
            "--out",
            str(tmp_path / "out"),
            "--workers",
            "1",
            "--no-progress",
            "-q",
            "--ratios",
            "0.6,0.2,0.2",
            "--seed",
            "3",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "kept" in out and "duplicates" in out and "train" in out and "forward_head" in out
    assert json.loads((tmp_path / "out" / SUMMARY_NAME).read_text())["config"]["seed"] == 3


@pytest.mark.parametrize(
    "argv, message",
    [
        (["{missing}", "--out", "{out}"], "no such folder"),
        (["{src}", "--out", "{out}", "--ratios", "0.5,0.1"], "ratios"),
        (["{src}", "--out", "{out}", "--label-map", "x=y"], "not one of"),
        (["{src}", "--out", "{out}", "--subject-pattern", "no-group"], "needs a group"),
    ],
)
def test_cli_user_mistakes_are_one_error_line(drop, tmp_path, argv, message):
    args = [a.format(missing=tmp_path / "nope", out=tmp_path / "out", src=drop) for a in argv]
    proc = subprocess.run(
        [sys.executable, "-m", "posture.ingest", *args, "--no-progress", "--workers", "1"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], proc.stderr


def test_cli_help_explains_inputs(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--subject-pattern" in text and "cva_deg" in text and "manifest.csv" in text


@pytest.mark.slow
@pytest.mark.real_data
def test_real_photos_ingest(tmp_path):
    before = tree_fingerprint(REAL)
    result = run(REAL, tmp_path / "real", labels=(REAL / "manifest.csv",), workers=2)
    assert tree_fingerprint(REAL) == before
    c = result.summary["counts"]
    assert c["files_found"] == c["kept"] + c["rejected"] + c["duplicates"] + c["skipped"]
    # Nothing pinned to today's set (it grows): the folder's own manifest is the truth.
    listed = pd.read_csv(REAL / "manifest.csv")
    assert c["rejected"] == 0 and c["skipped"] == 2  # SOURCES.md and manifest.csv
    # video frames are near-identical bursts, so some collapse; the people stay apart across splits
    assert 0 < c["kept"] < len(listed) and c["duplicates"] > 0
    assert result.summary["duplicates"]["label_conflicts"] == 0
    assert result.manifest.groupby("subject")["split"].nunique().max() == 1
    assert set(result.manifest["source"]) == set(listed["source"])


def test_an_interrupted_rerun_leaves_the_previous_dataset_intact(drop, tmp_path, monkeypatch):
    run(drop, tmp_path / "out")
    before = (tmp_path / "out" / "manifest.csv").read_bytes()
    import posture.ingest.decode as decode

    real, calls = decode.decode_one, []

    def interrupted(task, settings):
        calls.append(task)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(task, settings)

    monkeypatch.setattr(decode, "decode_one", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(drop, tmp_path / "out")
    assert (tmp_path / "out" / "manifest.csv").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drop", "out"]  # no staging folder left


def test_the_dataset_opens_with_posture_data(drop, tmp_path):
    from posture.data.datasets import open_dataset

    result = run(drop, tmp_path / "out", ratios=(0.5, 0.25, 0.25))
    total = 0
    for split in ("train", "val", "test"):
        ds = open_dataset(tmp_path / "out", split)
        total += len(ds)
        if len(ds):
            image, target = ds[0]
            assert image.ndim == 3 and image.shape[2] == 3 and target in (0, 1)
    assert total == result.kept


def test_the_pool_also_works_when_the_caller_runs_threads(drop, tmp_path):
    """A web app or a training loop has threads; then workers come from a forkserver, same result."""
    import threading

    from posture.ingest.decode import pool_context

    stop = threading.Event()
    helper = threading.Thread(target=stop.wait, name="caller-thread", daemon=True)
    helper.start()
    try:
        assert pool_context().get_start_method() != "fork"
        threaded = run(drop, tmp_path / "threaded", workers=2)
    finally:
        stop.set()
        helper.join()
    single = run(drop, tmp_path / "single", workers=1)
    assert threaded.manifest.equals(single.manifest)
