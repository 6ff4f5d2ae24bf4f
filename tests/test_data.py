"""The Dataset over an ingested folder: stable class indices, split filtering, plain folders too."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from posture.cli import UserError
from posture.data.datasets import ManifestDataset, open_dataset, read_class_names
from posture.data.transforms import Preprocessing, build_eval_transform


def _make_dataset(root, labels_splits):
    rows = []
    for i, (label, split) in enumerate(labels_splits):
        rel = f"images/{label}/{i}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20 + i, 30), (i * 10, 0, 0)).save(root / rel)
        rows.append({"path": rel, "label": label, "split": split, "subject": f"s{i}"})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


def test_split_filter_and_fixed_class_order(tmp_path) -> None:
    root = _make_dataset(tmp_path, [("normal", "train"), ("normal", "train"), ("normal", "test")])
    (root / "classes.json").write_text(json.dumps(["forward_head", "normal"]))
    ds = ManifestDataset(root, "train", build_eval_transform(Preprocessing(input_size=16)))
    assert len(ds) == 2 and ds.class_names == ["forward_head", "normal"]
    image, target = ds[0]
    assert tuple(image.shape) == (3, 16, 16) and target == 1


def test_class_order_without_classes_json_is_the_projects(tmp_path) -> None:
    frame = pd.DataFrame({"label": ["normal", "forward_head"]})
    assert read_class_names(tmp_path, frame) == ["forward_head", "normal"]


def test_unknown_label_is_a_user_error(tmp_path) -> None:
    root = _make_dataset(tmp_path, [("sideways", "train")])
    (root / "classes.json").write_text(json.dumps(["forward_head", "normal"]))
    with pytest.raises(UserError, match="sideways"):
        ManifestDataset(root)


def test_plain_class_folders_work_without_a_manifest(tmp_path) -> None:
    for folder in ("Turtle_Neck", "good"):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (10, 10)).save(tmp_path / folder / "a.jpg")
    (tmp_path / "good" / ".DS_Store").write_bytes(b"junk")
    ds = open_dataset(tmp_path)
    assert sorted(ds.frame["label"]) == ["forward_head", "normal"]
    assert isinstance(ds[0][0], np.ndarray)


def test_missing_folder_and_missing_manifest_are_clear(tmp_path) -> None:
    with pytest.raises(UserError, match="no such dataset"):
        open_dataset(tmp_path / "nope")
    with pytest.raises(UserError, match="no images"):
        open_dataset(tmp_path)


def test_a_labelled_manifest_without_splits_is_one_test_split(tmp_path) -> None:
    root = _make_dataset(tmp_path, [("normal", "x"), ("forward_head", "x")])
    frame = pd.read_csv(root / "manifest.csv").drop(columns="split")
    frame.to_csv(root / "manifest.csv", index=False)
    ds = open_dataset(root, "test")
    assert len(ds) == 2 and set(ds.frame["split"]) == {"test"}
