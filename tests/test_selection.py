"""The procedure behind the defaults (posture.training.selection) and the nested protocol that scores it
(bench/real_photos.py): choices are made from training sources alone, and no photo of an outer fold
ever reaches the choosing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from _pose_helpers import FakeDetector, make_pose_dataset
from posture.data.datasets import read_manifest
from posture.training.selection import (
    GEOMETRY,
    NOT_ASSESSED,
    Candidate,
    SelectionConfig,
    balanced_accuracy,
    person_weights,
    score,
    select,
)


def test_not_assessed_counts_as_wrong_and_every_person_weighs_the_same() -> None:
    y = np.array([0, 0, 1, 1])
    assert balanced_accuracy(y, np.array([0, NOT_ASSESSED, 1, 1])) == pytest.approx(0.75)
    # one person with three photos, another with one: weighted, each person counts once
    np.testing.assert_allclose(person_weights(["a", "a", "a", "b"]), [1 / 3, 1 / 3, 1 / 3, 1.0])
    y, pred = np.array([0, 0, 0, 0, 1]), np.array([0, 0, 0, 1, 1])
    assert balanced_accuracy(y, pred, person_weights(["a", "a", "a", "b", "c"])) == pytest.approx(0.75)
    assert balanced_accuracy(np.array([1, 1]), np.array([1, 1])) is None  # one class: no balanced accuracy


def test_the_score_weighs_sources_and_people() -> None:
    frame = pd.DataFrame(
        {
            "label": ["forward_head", "normal"] * 2 + ["forward_head", "normal"],
            "source": ["big"] * 4 + ["small"] * 2,
            "subject": ["p1", "p1", "p1", "p1", "p2", "p3"],
        }
    )
    pred = np.array([0, 1, 0, 1, 1, 0])  # the big source all right, the small one all wrong
    assert score(frame, pred, "sources") == pytest.approx(0.5)
    assert score(frame, pred, "people") == pytest.approx(1 / 3)
    assert score(frame, pred, "both") == pytest.approx((0.5 + 1 / 3) / 2)


@pytest.fixture
def three_sources(tmp_path: Path) -> tuple[pd.DataFrame, Path]:
    root = make_pose_dataset(tmp_path / "data", per_class={"train": 9, "val": 0, "test": 0}, sources=3)
    return read_manifest(root), root


def test_the_procedure_trains_through_the_product_and_picks_the_best_on_held_out_sources(
    three_sources, tmp_path, fake_blazepose, one_torch_thread
) -> None:
    frame, root = three_sources
    candidates = (
        Candidate("head", {"model": "pose", "pose_features": "head", "epochs": 15}, "head"),
        Candidate("nothing", {"model": "pose", "pose_features": "shoulders_over_face", "epochs": 15}, "no posture"),
    )
    cfg = SelectionConfig(work=tmp_path / "work", cache_dir=str(tmp_path / "cache"))
    chosen = select(frame, root, candidates, cfg, FakeDetector())
    assert chosen.pick.name == "head"  # the fake person's head drop tells the classes apart; shoulder width does not
    assert chosen.scores["head"] > chosen.scores["nothing"]
    assert chosen.folds == ["session0", "session1", "session2"]


def test_candidates_that_need_synthetic_pictures_are_skipped_without_them(three_sources, tmp_path) -> None:
    frame, root = three_sources
    calls: list[str] = []

    def trainer(candidate: Candidate, fold_dir: Path, run: Path, rows: pd.DataFrame, cfg: Any, det: Any) -> np.ndarray:
        calls.append(candidate.name)
        return np.zeros(len(rows), int)

    synthetic = [c for c in GEOMETRY if c.needs_synthetic]
    chosen = select(frame, root, (GEOMETRY[0], *synthetic), SelectionConfig(work=tmp_path / "w"), trainer=trainer)
    assert synthetic and set(calls) == {GEOMETRY[0].name} and chosen.pick.name == GEOMETRY[0].name


def test_no_photo_of_the_outer_fold_reaches_the_selection(three_sources, tmp_path) -> None:
    """The nested protocol's isolation: every run the choosing trains, and every photo it answers, comes
    from the outer fold's training sources; the held-out source is only ever answered by the final run."""
    from bench.real_photos import BenchConfig, nested, outer_folds

    frame, root = three_sources
    seen: list[dict[str, Any]] = []

    def spy(candidate: Candidate, fold_dir: Path, run: Path, rows: pd.DataFrame, cfg: Any, det: Any) -> np.ndarray:
        fold = pd.read_csv(fold_dir / "manifest.csv")
        seen.append(
            {"run": run, "trained": set(fold.loc[fold["split"] != "test", "path"]), "answered": set(rows["path"])}
        )
        return np.where(rows["label"].to_numpy() == "forward_head", 0, 1)

    bench = BenchConfig(real=root, work=tmp_path / "bench", grids=["geometry"], bootstrap=10)
    sel = SelectionConfig(work=tmp_path / "bench" / "all")
    folds = outer_folds(bench, frame, root, GEOMETRY[:2], sel, None, trainer=spy)
    pred, records = nested(frame, folds, GEOMETRY[:2], sel, None, trainer=spy)
    assert [r["held_out"] for r in records] == ["session0", "session1", "session2"]
    for source in ("session0", "session1", "session2"):
        outer = set(frame.loc[frame["source"] == source, "path"])
        inner = [s for s in seen if f"outer_{source}{Path('/inner')}" in str(s["run"])]
        final = [s for s in seen if f"outer_{source}{Path('/runs')}" in str(s["run"])]
        assert len(inner) == 2 * 2  # two candidates, two inner folds (the other two sources)
        for call in inner:
            assert not call["trained"] & outer and not call["answered"] & outer
        assert len(final) == 1 and final[0]["answered"] == outer and not final[0]["trained"] & outer
    assert (pred == np.where(frame["label"] == "forward_head", 0, 1)).all()
