"""The four input shapes a labeling team hands over, and where labels and subjects come from."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest

from _ingest_helpers import class_tree, photo, run, save
from posture.cli import UserError
from posture.data.cva import craniovertebral_angle
from posture.ingest.config import parse_label_map


def test_class_folders_with_alias_names_become_the_two_classes(tmp_path):
    src = class_tree(tmp_path / "drop", per_class=2, classes=("Turtle-Neck", "GOOD"))
    result = run(src, tmp_path / "out")
    assert sorted(result.manifest["label"]) == ["forward_head"] * 2 + ["normal"] * 2
    for row in result.manifest.itertuples():
        assert row.path.startswith(f"images/{row.label}/") and row.path.endswith(".jpg")
        assert (tmp_path / "out" / row.path).is_file()
    assert json.loads((tmp_path / "out" / "classes.json").read_text()) == ["forward_head", "normal"]
    assert set(result.manifest["source"]) == {"drop"}


def test_label_map_string_and_json_override_folder_names(tmp_path):
    src = class_tree(tmp_path / "drop", per_class=2, classes=("fwd", "ok"))
    result = run(src, tmp_path / "a", label_map=parse_label_map("fwd=forward_head,ok=normal"))
    assert sorted(set(result.manifest["label"])) == ["forward_head", "normal"]

    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"fwd": "forward_head", "ok": "normal"}))
    result = run(src, tmp_path / "b", label_map=parse_label_map(str(mapping)))
    assert sorted(set(result.manifest["label"])) == ["forward_head", "normal"]


def test_label_map_rejects_a_target_that_is_not_a_class():
    with pytest.raises(UserError, match="not one of"):
        parse_label_map("fwd=sideways")


def test_auto_detected_labels_csv_with_filename_and_label(tmp_path):
    src = tmp_path / "flat"
    for i in range(4):
        save(photo(i), src / f"img{i}.jpg")
    pd.DataFrame(
        {"filename": [f"img{i}.jpg" for i in range(4)], "label": ["turtle neck", "normal", "FHP", "good"]}
    ).to_csv(src / "labels.csv", index=False)
    result = run(src, tmp_path / "out")
    labels = dict(zip(result.manifest["source_path"], result.manifest["label"], strict=True))
    assert labels == {
        "img0.jpg": "forward_head",
        "img1.jpg": "normal",
        "img2.jpg": "forward_head",
        "img3.jpg": "normal",
    }
    assert "cva_deg" not in result.manifest.columns
    assert result.summary["skipped"]["non_image"] == 1  # the labels.csv itself


def test_cva_csv_labels_by_threshold_and_keeps_the_angle(tmp_path):
    src = tmp_path / "angles"
    for i in range(3):
        save(photo(i), src / f"p{i}.png")
    csv = tmp_path / "cva.csv"
    pd.DataFrame({"filename": ["p0.png", "p1.png", "p2.png"], "cva_deg": [44.5, 50.0, 58.25]}).to_csv(csv, index=False)
    result = run(src, tmp_path / "out", labels=(csv,))
    got = result.manifest.set_index("source_path")
    assert got.loc["p0.png", "label"] == "forward_head"
    assert got.loc["p1.png", "label"] == "normal"  # at the threshold is normal
    assert got.loc["p2.png", "cva_deg"] == pytest.approx(58.25)

    stricter = run(src, tmp_path / "out2", labels=(csv,), cva_threshold=55)
    assert stricter.manifest.set_index("source_path").loc["p1.png", "label"] == "forward_head"


def test_keypoint_csv_computes_cva_and_scales_points_with_the_image(tmp_path):
    src = tmp_path / "kp"
    save(photo(1, size=(400, 200)), src / "side.jpg")
    save(photo(2, size=(400, 200)), src / "upright.jpg")
    csv = src / "labels.csv"
    pd.DataFrame(
        {
            "filename": ["side.jpg", "upright.jpg"],
            "ear_x": [300, 210],
            "ear_y": [60, 40],
            "c7_x": [200, 200],
            "c7_y": [120, 140],
        }
    ).to_csv(csv, index=False)
    result = run(src, tmp_path / "out", max_side=200)  # halves the images
    got = result.manifest.set_index("source_path")
    assert got.loc["side.jpg", "cva_deg"] == pytest.approx(craniovertebral_angle(300, 60, 200, 120), abs=1e-3)
    assert got.loc["side.jpg", "label"] == "forward_head"  # about 31 degrees
    assert got.loc["upright.jpg", "label"] == "normal"  # about 84 degrees
    assert (got.loc["side.jpg", "width"], got.loc["side.jpg", "height"]) == (200, 100)
    assert got.loc["side.jpg", ["ear_x", "ear_y", "c7_x", "c7_y"]].tolist() == [150, 30, 100, 60]


def test_keypoints_beat_cva_beats_label(tmp_path):
    src = tmp_path / "mixed"
    for i in range(3):
        save(photo(i), src / f"m{i}.jpg")
    nan = float("nan")
    pd.DataFrame(
        {
            "filename": ["m0.jpg", "m1.jpg", "m2.jpg"],
            "label": ["normal", "normal", "forward_head"],
            "cva_deg": [70.0, 30.0, nan],
            "ear_x": [110, nan, nan],
            "ear_y": [80, nan, nan],
            "c7_x": [100, nan, nan],
            "c7_y": [81, nan, nan],
        }
    ).to_csv(src / "labels.csv", index=False)
    result = run(src, tmp_path / "out")
    got = result.manifest.set_index("source_path")["label"].to_dict()
    # m0: keypoints give ~6 degrees although cva says 70 and label says normal
    assert got == {"m0.jpg": "forward_head", "m1.jpg": "forward_head", "m2.jpg": "forward_head"}
    assert any("disagree" in w for w in result.warnings)


def test_keypoints_of_a_frontal_view_do_not_override_the_angle(tmp_path):
    src = tmp_path / "views"
    save(photo(0), src / "front.jpg")
    save(photo(1), src / "side.jpg")
    pd.DataFrame(
        {
            "filename": ["front.jpg", "side.jpg"],
            "label": ["normal", "normal"],
            "cva_deg": [56.0, 56.0],
            "ear_x": [110, 110],
            "ear_y": [80, 80],
            "c7_x": [100, 100],
            "c7_y": [81, 81],
            "view": ["front", "side"],
        }
    ).to_csv(src / "labels.csv", index=False)
    got = run(src, tmp_path / "out").manifest.set_index("source_path")
    assert got.loc["front.jpg", "label"] == "normal" and got.loc["front.jpg", "cva_deg"] == 56.0
    assert got.loc["side.jpg", "label"] == "forward_head"  # a side view: the keypoints measure the angle
    assert got.loc["front.jpg", "ear_x"] == 110  # the points themselves are kept


def test_keypoints_of_an_oblique_view_do_not_override_the_angle(tmp_path, caplog):
    """Foreshortening inflates the 2-D angle of a three-quarter view: posture.synth's oblique
    pictures of a 35° forward head read 60-90°, and were relabelled upright."""
    src = tmp_path / "views"
    for k, name in enumerate(("oblique.jpg", "side.jpg", "unnamed.jpg")):
        save(photo(k), src / name)
    pd.DataFrame(
        {
            "filename": ["oblique.jpg", "side.jpg", "unnamed.jpg"],
            "label": ["forward_head"] * 3,
            "cva_deg": [35.0] * 3,
            "ear_x": [102, 102, 102],  # ear almost straight above C7: 2-D angle ~84°
            "ear_y": [60, 60, 60],
            "c7_x": [100, 100, 100],
            "c7_y": [80, 80, 80],
            "view": ["oblique", "Lateral", None],
        }
    ).to_csv(src / "labels.csv", index=False)
    with caplog.at_level(logging.INFO, logger="posture.ingest.sources"):
        result = run(src, tmp_path / "out")
    got = result.manifest.set_index("source_path")
    assert got.loc["oblique.jpg", "label"] == "forward_head" and got.loc["oblique.jpg", "cva_deg"] == 35.0
    # the labeling team is told which rows' keypoints were not used for the angle, and why
    assert "1 row(s) have ear/C7 keypoints on a view that is not a profile (oblique 1)" in caplog.text
    for measured in ("side.jpg", "unnamed.jpg"):  # a profile, or no view named: the keypoints measure it
        assert got.loc[measured, "label"] == "normal" and got.loc[measured, "cva_deg"] > 80
    assert any("2 CSV label(s) disagree" in w for w in result.warnings)


def test_an_oblique_row_with_only_keypoints_is_rejected_with_the_reason(tmp_path):
    src = tmp_path / "views"
    save(photo(0), src / "oblique.jpg")
    row = {"filename": ["oblique.jpg"], "ear_x": [102], "ear_y": [60], "c7_x": [100], "c7_y": [80], "view": ["oblique"]}
    pd.DataFrame(row).to_csv(src / "labels.csv", index=False)
    result = run(src, tmp_path / "out")
    assert result.manifest.empty
    (rejected,) = result.rejected.to_dict("records")
    assert rejected["path"] == "oblique.jpg" and rejected["reason"] == "unknown_label"
    assert "only on a side view" in rejected["detail"] and "'oblique'" in rejected["detail"]


def test_subjects_from_csv_column_pattern_folder_and_fallback(tmp_path):
    src = tmp_path / "subj"
    save(photo(0), src / "forward_head" / "anna" / "a.jpg")
    save(photo(1), src / "normal" / "anna" / "b.jpg")
    save(photo(2), src / "normal" / "cam-bob-001.jpg")
    save(photo(3), src / "normal" / "loose.jpg")
    result = run(src, tmp_path / "out", subject_pattern=r"^cam-(?P<subject>[a-z]+)-\d+")
    subjects = result.manifest.set_index("source_path")["subject"].to_dict()
    assert subjects == {
        "forward_head/anna/a.jpg": "anna",
        "normal/anna/b.jpg": "anna",
        "normal/cam-bob-001.jpg": "bob",
        "normal/loose.jpg": "normal/loose",
    }
    assert any("have no subject" in w for w in result.warnings)
    assert any("did not match" in w for w in result.warnings)

    pd.DataFrame({"path": ["normal/loose.jpg"], "label": ["normal"], "subject": ["carl"]}).to_csv(
        tmp_path / "subjects.csv", index=False
    )
    with_csv = run(src, tmp_path / "out2", labels=(tmp_path / "subjects.csv",))
    assert with_csv.manifest.set_index("source_path").loc["normal/loose.jpg", "subject"] == "carl"


@pytest.mark.parametrize(
    "header, message",
    [
        ("name,label", "file-name column"),
        ("filename,comment", "needs a label column"),
        ("filename,ear_x,ear_y", "keypoint columns incomplete"),
    ],
)
def test_unusable_csv_is_one_clear_user_error(tmp_path, header, message):
    src = class_tree(tmp_path / "drop", per_class=1)
    csv = tmp_path / "bad.csv"
    csv.write_text(header + "\nx.jpg,1,2\n")
    with pytest.raises(UserError, match=message):
        run(src, tmp_path / "out", labels=(csv,))


def test_same_file_names_in_different_folders_get_distinct_deterministic_names(tmp_path):
    src = tmp_path / "clash"
    save(photo(0), src / "forward_head" / "anna" / "img.jpg")
    save(photo(1), src / "forward_head" / "bob" / "img.jpg")
    save(photo(2), src / "forward_head" / "bob" / "img.png")
    first = run(src, tmp_path / "a").manifest
    again = run(src, tmp_path / "b").manifest
    assert first["path"].nunique() == 3
    assert list(first["path"]) == list(again["path"])
    assert "images/forward_head/img.jpg" in set(first["path"])


def test_a_file_listed_twice_takes_its_last_row(tmp_path):
    src = tmp_path / "relabel"
    save(photo(0), src / "a.jpg")
    save(photo(1), src / "b.jpg")
    (src / "labels.csv").write_text("filename,label\na.jpg,normal\nb.jpg,normal\na.jpg,forward_head\n")
    result = run(src, tmp_path / "out")
    assert result.manifest.set_index("source_path")["label"].to_dict() == {"a.jpg": "forward_head", "b.jpg": "normal"}
    assert any("last row wins" in w for w in result.warnings)
