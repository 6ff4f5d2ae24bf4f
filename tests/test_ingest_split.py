"""Splits keep each subject in one split, follow the ratios and the seed, and cope with tiny drops."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from _ingest_helpers import photo, run, save
from posture.ingest.split import assign_splits

CLASSES = ("forward_head", "normal")


def _population(seed: int, n_subjects: int = 40) -> tuple[list[str], list[str]]:
    """Subjects with 1-8 images each and a subject-dependent class mix, as in real drops."""
    rng = np.random.default_rng(seed)
    subjects, labels = [], []
    for s in range(n_subjects):
        p_forward = rng.uniform(0.1, 0.9)
        for _ in range(rng.integers(1, 9)):
            subjects.append(f"s{s:02d}")
            labels.append("forward_head" if rng.random() < p_forward else "normal")
    return subjects, labels


@pytest.mark.parametrize("seed", range(6))
def test_no_subject_is_in_two_splits_and_ratios_are_roughly_met(seed):
    subjects, labels = _population(seed)
    splits, warnings = assign_splits(subjects, labels, (0.7, 0.15, 0.15), seed, CLASSES)
    where: dict[str, set[str]] = {}
    for s, sp in zip(subjects, splits, strict=True):
        where.setdefault(s, set()).add(sp)
    assert all(len(v) == 1 for v in where.values())
    share = Counter(splits)
    n = len(splits)
    assert abs(share["train"] / n - 0.7) < 0.08
    assert abs(share["val"] / n - 0.15) < 0.06 and abs(share["test"] / n - 0.15) < 0.06
    for split in ("train", "val", "test"):  # each split sees both classes
        assert {lbl for lbl, sp in zip(labels, splits, strict=True) if sp == split} == set(CLASSES)
    assert warnings == []


def test_split_is_seeded():
    subjects, labels = _population(0, n_subjects=60)
    a, _ = assign_splits(subjects, labels, (0.7, 0.15, 0.15), 1, CLASSES)
    b, _ = assign_splits(subjects, labels, (0.7, 0.15, 0.15), 1, CLASSES)
    c, _ = assign_splits(subjects, labels, (0.7, 0.15, 0.15), 2, CLASSES)
    assert a == b
    assert a != c


def test_tiny_drops_warn_and_do_the_best_possible():
    splits, warnings = assign_splits(
        ["p1"] * 5 + ["p2"] * 5, ["forward_head"] * 5 + ["normal"] * 5, (0.7, 0.15, 0.15), 0, CLASSES
    )
    assert len(set(splits[:5])) == 1 and len(set(splits[5:])) == 1 and splits[0] != splits[5]
    assert any("only 2 subject(s) for 3 splits" in w for w in warnings)

    splits, _ = assign_splits(["a"] * 10 + ["b", "c"], ["normal"] * 12, (0.7, 0.15, 0.15), 0, CLASSES)
    assert sorted(set(splits)) == ["test", "train", "val"]  # enough subjects: no split left empty

    splits, warnings = assign_splits(["solo"] * 3, ["normal"] * 3, (0.8, 0.2, 0.0), 0, CLASSES)
    assert splits == ["train"] * 3 and warnings


def test_ingest_keeps_subjects_apart_over_seeds_and_reports_counts(tmp_path):
    src = tmp_path / "people"
    rows = []
    i = 0
    for person in range(12):
        for k in range(3):
            label = "forward_head" if (person + k) % 3 else "normal"
            name = f"p{person:02d}-{k}.jpg"
            save(photo(1000 + i), src / name)
            rows.append({"filename": name, "label": label})
            i += 1
    pd.DataFrame(rows).to_csv(src / "labels.csv", index=False)
    for seed in (0, 1, 2):
        result = run(src, tmp_path / f"out{seed}", subject_pattern=r"^(p\d+)-", seed=seed)
        assert result.manifest.groupby("subject")["split"].nunique().max() == 1
        table = result.summary["splits"]
        assert sum(table[s]["total"] for s in table) == result.kept == 36
        assert table["train"]["forward_head"] + table["train"]["normal"] == table["train"]["total"]


def test_class_imbalance_is_warned_about(tmp_path):
    src = tmp_path / "skewed"
    for i in range(6):
        save(photo(i), src / "forward_head" / f"f{i}.jpg")
    save(photo(99), src / "normal" / "n0.jpg")
    result = run(src, tmp_path / "out")
    assert any(w.startswith("class imbalance") for w in result.warnings)
