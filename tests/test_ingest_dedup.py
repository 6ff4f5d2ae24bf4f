"""Duplicates: byte copies, re-saved JPEGs and resized copies are found; the best copy is kept."""

from __future__ import annotations

from PIL import Image

from _ingest_helpers import class_tree, jpeg_bytes, photo, run, save
from posture.ingest.dedup import HashedImage, find_duplicates


def _dups(result) -> dict[str, tuple[str, str]]:
    frame = result.rejected[result.rejected["reason"].str.startswith("duplicate_of:")]
    return {p: (r.split(":", 1)[1], d) for p, r, d in zip(frame["path"], frame["reason"], frame["detail"], strict=True)}


def test_copies_are_reported_and_the_largest_copy_is_kept(tmp_path):
    src = class_tree(tmp_path / "drop", per_class=4)
    original = photo(0)  # forward_head/forward_head-0.jpg, 120x90
    fh = src / "forward_head"
    (fh / "a-exact-copy.jpg").write_bytes((fh / "forward_head-0.jpg").read_bytes())
    (fh / "b-resaved.jpg").write_bytes(jpeg_bytes(original, quality=60))
    save(original.resize((240, 180), Image.Resampling.LANCZOS), fh / "c-bigger.png")
    save(original.resize((90, 68), Image.Resampling.LANCZOS), fh / "d-smaller.jpg")

    result = run(src, tmp_path / "out")
    dups = _dups(result)
    kept = "forward_head/c-bigger.png"  # the largest resolution wins
    assert set(dups) == {
        "forward_head/forward_head-0.jpg",
        "forward_head/a-exact-copy.jpg",
        "forward_head/b-resaved.jpg",
        "forward_head/d-smaller.jpg",
    }
    assert all(target == kept for target, _ in dups.values())
    assert kept in set(result.manifest["source_path"])
    assert result.kept == 8  # 8 distinct pictures; the original's place is taken by its bigger copy
    assert result.summary["counts"]["duplicates"] == 4
    assert result.summary["duplicates"]["label_conflicts"] == 0


def test_exact_duplicates_tie_break_by_path(tmp_path):
    src = class_tree(tmp_path / "drop", per_class=2)
    data = (src / "normal" / "normal-1.jpg").read_bytes()
    (src / "normal" / "a-first.jpg").write_bytes(data)
    result = run(src, tmp_path / "out")
    assert _dups(result) == {"normal/normal-1.jpg": ("normal/a-first.jpg", "exact copy (same file bytes)")}


def test_duplicates_with_different_labels_are_flagged(tmp_path):
    src = class_tree(tmp_path / "drop", per_class=3)
    (src / "normal" / "zz-also-here.jpg").write_bytes((src / "forward_head" / "forward_head-1.jpg").read_bytes())
    result = run(src, tmp_path / "out")
    dups = _dups(result)
    target, detail = dups["normal/zz-also-here.jpg"]
    assert target == "forward_head/forward_head-1.jpg"
    assert "LABEL CONFLICT" in detail
    assert result.summary["duplicates"]["label_conflicts"] == 1
    assert any("different label" in w for w in result.warnings)


def test_distinct_pictures_are_not_duplicates_and_threshold_minus_one_means_exact_only(tmp_path):
    src = class_tree(tmp_path / "drop", per_class=10)
    assert run(src, tmp_path / "out").summary["counts"]["duplicates"] == 0
    (src / "normal" / "resaved.jpg").write_bytes(jpeg_bytes(photo(10), quality=50))
    assert run(src, tmp_path / "out2").summary["duplicates"]["near"] == 1
    assert run(src, tmp_path / "out3", near_dup_threshold=-1).summary["counts"]["duplicates"] == 0


def test_find_duplicates_points_every_copy_at_a_kept_image_without_chains():
    # 0 -- 3 bits -- 1 -- 3 bits -- 2: with threshold 4, 2 is 6 bits from 0 and so is not its copy.
    images = [
        HashedImage(0, "a", "normal", 100, "s0", 0b000000, 0),
        HashedImage(1, "b", "normal", 50, "s1", 0b000111, 0),
        HashedImage(2, "c", "normal", 50, "s2", 0b111111, 0),
    ]
    dups = find_duplicates(images, threshold=4)
    assert set(dups) == {1}
    assert dups[1].kept_key == 0 and dups[1].kind == "near" and dups[1].phash_distance == 3
    assert find_duplicates(images, threshold=-1) == {}
