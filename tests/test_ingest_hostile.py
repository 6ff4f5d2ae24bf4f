"""Hostile drops: special files, symlink loops, odd names and concurrent runs never hang, crash or leak."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image, features

from _ingest_helpers import class_tree, photo, run, save, tree_fingerprint
from posture.data.datasets import read_manifest
from posture.io.csvcells import read_csv
from posture.io.filenames import real_name, text_name

REPO = Path(__file__).resolve().parents[1]


def _ingest_cli(src: Path, out: Path, *extra: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``python -m posture.ingest`` as a user runs it; the timeout only turns a hang into a failure."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "posture.ingest",
            str(src),
            "--out",
            str(out),
            "--workers",
            "1",
            "--no-progress",
            *extra,
        ],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        env=env,
        cwd=REPO,
        timeout=timeout,
    )


def _rejected(result) -> dict[str, str]:
    return dict(zip(result.rejected["path"], result.rejected["reason"], strict=True))


def test_fifos_and_device_nodes_are_rejected_without_being_read(tmp_path):
    src = class_tree(tmp_path / "drop", per_class=2)
    os.mkfifo(src / "normal" / "fifo.jpg")  # sorts first: the old code blocked here before reaching zero.jpg
    special = ["normal/fifo.jpg"]
    try:
        os.mknod(src / "normal" / "zero.jpg", stat.S_IFCHR | 0o644, os.makedev(1, 5))  # /dev/zero
        special.append("normal/zero.jpg")
    except OSError:
        pass  # not allowed here (not root): the FIFO still stands for every file that is not a regular file
    proc = _ingest_cli(src, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    rejected = pd.read_csv(tmp_path / "out" / "rejected.csv")
    assert dict(zip(rejected["path"], rejected["reason"], strict=True)) == {p: "not_a_regular_file" for p in special}
    assert len(pd.read_csv(tmp_path / "out" / "manifest.csv")) == 4


def test_files_over_the_byte_cap_are_rejected_unread(tmp_path):
    src = class_tree(tmp_path / "drop", per_class=2)
    with open(src / "normal" / "sparse.jpg", "wb") as fh:
        fh.truncate(8 << 20)  # 8 MiB of nothing, no disk used
    result = run(src, tmp_path / "out", max_bytes=1 << 20)
    assert _rejected(result) == {"normal/sparse.jpg": "too_large"}
    assert "bytes" in result.rejected["detail"][0]
    assert result.kept == 4


def test_symlink_loops_are_rejected_and_the_run_goes_on(tmp_path):
    src = class_tree(tmp_path / "drop", per_class=2)
    nm = src / "normal"
    os.symlink("self.jpg", nm / "self.jpg")  # a file that points at itself
    os.symlink("pong.jpg", nm / "ping.jpg")
    os.symlink("ping.jpg", nm / "pong.jpg")
    os.symlink("loopdir", src / "loopdir")  # a folder that points at itself
    os.symlink("..", nm / "up")  # a folder link back to an ancestor: not followed, so no loop
    result = run(src, tmp_path / "out")
    assert _rejected(result) == {
        "normal/self.jpg": "symlink_loop",
        "normal/ping.jpg": "symlink_loop",
        "normal/pong.jpg": "symlink_loop",
        "loopdir": "symlink_loop",
    }
    assert result.kept == 4
    assert result.summary["skipped"]["symlinked_folder"] == 1


def test_a_symlink_loop_as_src_is_one_clear_error(tmp_path):
    os.symlink("loop", tmp_path / "loop")
    proc = _ingest_cli(tmp_path / "loop", tmp_path / "out")
    assert proc.returncode == 2 and "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_photos_behind_symlinks_inside_src_are_still_read(tmp_path):
    src = class_tree(tmp_path / "drop", per_class=2)
    save(photo(30), src / "extra" / "real.jpg")
    os.symlink("../extra/real.jpg", src / "normal" / "linked.jpg")
    result = run(src, tmp_path / "out")
    assert "normal/linked.jpg" in set(result.manifest["source_path"])


# --------------------------------------------------------------------------- odd file names


def test_a_name_that_is_not_utf8_is_kept_and_recorded_losslessly(tmp_path):
    src = class_tree(tmp_path / "drop", per_class=2)
    latin1 = os.fsdecode(b"caf\xe9.jpg")  # Latin-1 "café.jpg" from a Windows zip
    save(photo(40), src / "normal" / latin1)
    proc = _ingest_cli(src, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv")  # plain UTF-8 text
    (row,) = manifest[manifest["source_path"].str.startswith("normal/caf")].itertuples()
    assert row.source_path == "normal/caf\\xe9.jpg"
    assert real_name(row.source_path) == "normal/" + latin1  # the original name, byte for byte
    assert row.path.isascii() and (tmp_path / "out" / row.path).is_file()


def test_line_breaks_in_names_do_not_corrupt_the_manifest(tmp_path):
    src = tmp_path / "drop"
    save(photo(1), src / "normal" / "a\rb.jpg")
    save(photo(2), src / "forward_head" / "c\nd.jpg")
    save(photo(3), src / "forward_head" / "e\r\nf.jpg")
    result = run(src, tmp_path / "out")
    assert result.kept == 3
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv", dtype=str)
    assert len(manifest) == 3
    assert sorted(manifest["source_path"]) == [
        "forward_head/c\\x0ad.jpg",
        "forward_head/e\\x0d\\x0af.jpg",
        "normal/a\\x0db.jpg",
    ]
    assert all((tmp_path / "out" / p).is_file() for p in manifest["path"])
    assert sorted(real_name(p) for p in manifest["source_path"]) == [
        "forward_head/c\nd.jpg",
        "forward_head/e\r\nf.jpg",
        "normal/a\rb.jpg",
    ]


def test_name_escapes_round_trip():
    for name in [
        "plain.jpg",
        "ünïcode/ß.jpg",
        "back\\slash.jpg",
        "lit\\xe9.jpg",
        os.fsdecode(b"caf\xe9\xff.jpg"),
        "tab\there\r\n.jpg",
        "\x7f",
    ]:
        shown = text_name(name)
        assert shown.isprintable() and real_name(shown) == name
        shown.encode("utf-8")  # never raises
    assert text_name("normal/ok.jpg") == "normal/ok.jpg"


# --------------------------------------------------------------------------- formula injection

FORMULA_STARTS = ("=", "+", "-", "@")


def _cells(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [cell for row in csv.reader(fh) for cell in row]


def test_formula_cells_are_neutralised_and_read_back_exactly(tmp_path):
    src = class_tree(tmp_path / "=cmd", per_class=2)  # the source name, too, comes from a folder name
    save(photo(20), src / "normal" / "=HYPERLINK(x).jpg")
    save(photo(21), src / "normal" / "@sum.jpg")
    save(photo(22), src / "forward_head" / "-2+3.jpg")
    save(photo(23), src / "normal" / "=anna" / "x.jpg")  # subject from a folder name
    (src / "normal" / "+bad.jpg").write_bytes(b"not an image")
    save(photo(24), src / "@top.jpg")  # no class folder: rejected, its path starts the cell
    result = run(src, tmp_path / "out")
    assert result.kept == 8
    for name in ("manifest.csv", "rejected.csv"):
        risky = [c for c in _cells(tmp_path / "out" / name) if c.startswith(FORMULA_STARTS)]
        assert risky == [], name
    manifest = read_manifest(tmp_path / "out")  # how every stage reads it
    assert {"normal/=HYPERLINK(x).jpg", "normal/@sum.jpg", "forward_head/-2+3.jpg"} <= set(manifest["source_path"])
    assert set(manifest["source"]) == {"=cmd"} and "=anna" in set(manifest["subject"])
    assert all((tmp_path / "out" / p).is_file() for p in manifest["path"])
    assert list(read_csv(tmp_path / "out" / "rejected.csv")["path"]) == ["@top.jpg", "normal/+bad.jpg"]


# --------------------------------------------------------------------------- concurrent runs


def test_a_second_ingest_into_the_same_out_is_refused_while_the_first_runs(tmp_path, monkeypatch):
    import posture.ingest.pipeline as pipeline

    src = class_tree(tmp_path / "drop", per_class=2)
    out = tmp_path / "out"
    real_decode, seen = pipeline.decode_all, {}

    def decode_while_another_user_starts(*args, **kwargs):
        seen["second"] = _ingest_cli(src, out)  # the second ingest, while the first is decoding
        seen["staging"] = sorted(tmp_path.glob(".out.partial-*"))
        yield from real_decode(*args, **kwargs)

    monkeypatch.setattr(pipeline, "decode_all", decode_while_another_user_starts)
    result = run(src, out)  # the first one finishes as if alone
    assert result.kept == 4 and len(pd.read_csv(out / "manifest.csv")) == 4
    second = seen["second"]
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert len(lines) == 1 and lines[0].startswith("error:") and "another ingest" in lines[0]
    assert len(seen["staging"]) == 1  # the first run's staging folder was left alone
    assert not list(tmp_path.glob(".out.*"))  # and nothing is left beside the dataset afterwards


def test_a_lock_file_left_by_a_killed_run_does_not_block_the_next(tmp_path):
    src = class_tree(tmp_path / "drop", per_class=2)
    (tmp_path / ".out.lock").write_text("12345\n")  # its holder died: the kernel dropped the lock
    assert run(src, tmp_path / "out").kept == 4
    assert not (tmp_path / ".out.lock").exists()


# --------------------------------------------------------------------------- validation


def test_min_side_holds_for_the_stored_image_not_just_the_original(tmp_path):
    src = class_tree(tmp_path / "drop", per_class=2)
    save(photo(60, (20000, 64)), src / "normal" / "strip.jpg")  # would be stored as 1024x3
    result = run(src, tmp_path / "out")  # --max-side 1024, --min-side 64
    assert _rejected(result) == {"normal/strip.jpg": "too_small"}
    assert "1024x3" in result.rejected["detail"][0]
    assert (result.manifest[["width", "height"]].min(axis=1) >= 64).all()


def test_angles_and_keypoints_outside_a_physical_range_are_rejected(tmp_path):
    src = tmp_path / "angles"
    names = [f"p{i}.png" for i in range(7)]
    for i, name in enumerate(names):
        save(photo(70 + i), src / name)  # 120x90
    pd.DataFrame({"filename": names[:4], "cva_deg": [48.0, -5.0, 1000.0, 90.5]}).to_csv(
        tmp_path / "cva.csv", index=False
    )
    pd.DataFrame(
        {
            "filename": names[4:],
            "ear_x": [60, 1e308, 500],
            "ear_y": [20, 20, 20],
            "c7_x": [40, 40, 40],
            "c7_y": [60, 60, 60],
        }
    ).to_csv(tmp_path / "kp.csv", index=False)
    by_cva = run(src, tmp_path / "out1", labels=(tmp_path / "cva.csv",))
    reasons = _rejected(by_cva)
    assert {k: reasons[k] for k in names[1:4]} == {n: "implausible_label" for n in names[1:4]}
    assert list(by_cva.manifest["source_path"]) == ["p0.png"]
    by_points = run(src, tmp_path / "out2", labels=(tmp_path / "kp.csv",))
    reasons = _rejected(by_points)
    assert {k: reasons[k] for k in names[5:]} == {"p5.png": "implausible_label", "p6.png": "implausible_label"}
    assert list(by_points.manifest["source_path"]) == ["p4.png"]
    detail = dict(zip(by_points.rejected["path"], by_points.rejected["detail"], strict=True))
    assert "outside the 120x90 image" in detail["p6.png"]


def test_flat_images_of_different_colours_are_not_near_duplicates(tmp_path):
    src = class_tree(tmp_path / "drop", per_class=2)
    for i, colour in enumerate([(255, 0, 0), (0, 0, 255), (128, 128, 128), (20, 20, 20)]):
        save(Image.new("RGB", (120, 90), colour), src / "normal" / f"flat-{i}.png")
    result = run(src, tmp_path / "out")
    assert result.summary["counts"]["duplicates"] == 0 and result.kept == 8
    (src / "normal" / "flat-copy.png").write_bytes((src / "normal" / "flat-0.png").read_bytes())
    assert run(src, tmp_path / "out2").summary["duplicates"]["exact"] == 1  # byte copies are still found


def test_other_image_formats_are_accepted_or_rejected_by_name_and_skips_are_listed(tmp_path):
    src = class_tree(tmp_path / "drop", per_class=2)
    nm = src / "normal"
    save(photo(80), nm / "old-camera.jfif", format="JPEG")
    (nm / "iphone.heic").write_bytes(b"\0\0\0\x18ftypheic" + bytes(64))
    save(photo(81, (64, 64)), nm / "favicon.ico", format="ICO")
    (nm / "notes.txt").write_text("taken on Tuesday\n")
    (src / ".DS_Store").write_bytes(b"\0")
    save(photo(82), src / ".trash" / "old.jpg")
    proc = _ingest_cli(src, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    rejected = pd.read_csv(tmp_path / "out" / "rejected.csv")
    assert dict(zip(rejected["path"], rejected["reason"], strict=True)) == {
        "normal/iphone.heic": "unsupported_format",
        "normal/favicon.ico": "unsupported_format",
    }
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv")
    assert "normal/old-camera.jfif" in set(manifest["source_path"])
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["skipped_files"] == {"hidden_system": [".DS_Store", ".trash/"], "non_image": ["normal/notes.txt"]}
    for name in (".DS_Store", ".trash/", "normal/notes.txt"):
        assert name in proc.stdout  # the printed report names them too


def test_avif_is_read_when_pillow_can(tmp_path):
    src = class_tree(tmp_path / "drop", per_class=2)
    if features.check("avif"):
        save(photo(83), src / "normal" / "new-phone.avif", quality=90)
        assert "normal/new-phone.avif" in set(run(src, tmp_path / "out").manifest["source_path"])
    else:
        (src / "normal" / "new-phone.avif").write_bytes(b"\0\0\0\x1cftypavif" + bytes(64))
        assert _rejected(run(src, tmp_path / "out")) == {"normal/new-phone.avif": "unsupported_format"}


# --------------------------------------------------------------------------- all of it at once


def test_a_hostile_drop_is_ingested_completely_within_bounded_time(tmp_path):
    src = class_tree(tmp_path / "drop", per_class=3)  # 6 ordinary photos
    nm, fh = src / "normal", src / "forward_head"
    os.mkfifo(nm / "fifo.jpg")
    with contextlib.suppress(OSError):
        os.mknod(nm / "zero.jpg", stat.S_IFCHR | 0o644, os.makedev(1, 5))
    os.symlink("self.jpg", nm / "self.jpg")
    os.symlink("loopdir", src / "loopdir")
    good = [
        nm / os.fsdecode(b"caf\xe9.jpg"),
        fh / "a\rb.jpg",
        fh / "c\nd.jpg",
        nm / "e\r\nf.jpg",
        nm / "=cmd|' /C calc'!A0.jpg",
        fh / "+x.jpg",
        nm / "-y.jpg",
        nm / "@z.jpg",
    ]
    for i, path in enumerate(good):
        save(photo(100 + i), path)
    (nm / "=broken.jpg").write_bytes(b"=1+1")
    save(photo(120), src / "@evil\n.jpg")  # no class folder: rejected, with a name as bad as it gets
    entries = sorted(os.path.relpath(os.path.join(d, n), src) for d, _, files in os.walk(src) for n in files)
    before = tree_fingerprint(src)

    proc = _ingest_cli(src, tmp_path / "out", timeout=300)  # the timeout only turns a hang into a failure
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    out = tmp_path / "out"
    raw_manifest = pd.read_csv(out / "manifest.csv")  # plain pandas: one row per kept image
    assert len(raw_manifest) == 6 + len(good)
    manifest, rejected = read_csv(out / "manifest.csv"), read_csv(out / "rejected.csv")
    assert all((out / p).is_file() for p in manifest["path"])
    traced = [real_name(p) for p in [*manifest["source_path"], *rejected["path"]]]
    assert sorted(traced) == entries  # every input file is a manifest row or a rejection, exactly once
    assert json.loads((out / "summary.json").read_text())["counts"]["files_found"] == len(entries)
    assert tree_fingerprint(src) == before  # SRC untouched


@pytest.mark.timeout(60)  # a hang is the failure
def test_every_stage_that_opens_a_photo_by_path_refuses_a_fifo(tmp_path):
    from posture.io.images import open_rgb

    os.mkfifo(tmp_path / "photo.jpg")  # prediction, training and the apps all decode through open_rgb
    with pytest.raises(OSError, match="not_a_regular_file"):
        open_rgb(tmp_path / "photo.jpg")
