"""bench/evaluate_real.py on a tiny stand-in for ../shared/data/real: per source, intervals by person."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from _evaluate_helpers import CLASSES, draw, make_run


def _load_bench():  # type: ignore[no-untyped-def]
    import bench.evaluate_real

    return bench.evaluate_real


def _real_like(root: Path) -> Path:
    """Laid out as ../shared/data/real is: class folders + manifest.csv (path,label,source,subject), no split.
    Source ``desk`` holds one person, source ``web`` three."""
    rng = np.random.default_rng(1)
    rows = []
    for source, people in (("desk", ["d1"]), ("web", ["w1", "w2", "w3"])):
        for k in range(8):
            label = CLASSES[k % 2]
            path = f"{label}/{source}-{k:02d}.jpg"
            (root / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(draw(k % 2, rng)).save(root / path)
            rows.append({"path": path, "label": label, "source": source, "subject": people[k % len(people)]})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


def test_subject_bootstrap_resamples_people_not_photos() -> None:
    bench = _load_bench()
    one = pd.DataFrame({"path": list("abcd"), "subject": "p", "label": ["x", "y"] * 2, "predicted": ["x"] * 4})
    assert bench.subject_bootstrap(one, 100) == {"accuracy": None, "balanced_accuracy": None, "subjects": 1}
    # one person always right, one always wrong: resampling people swings accuracy from 0 to 1
    two = pd.DataFrame(
        {
            "path": list("abcd"),
            "subject": ["r", "r", "w", "w"],
            "label": ["x", "y"] * 2,
            "predicted": ["x", "y", "y", "x"],
        }
    )
    boot = bench.subject_bootstrap(two, 400)
    assert boot["subjects"] == 2 and boot["accuracy"] == [0.0, 1.0]
    assert bench.balanced_accuracy(two) == 0.5


def _scored(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"path": f"{k}.jpg", "source": src, "label": label, "p_forward_head": p}
            for k, (src, label, p) in enumerate(rows)
        ]
    )


def test_the_target_window_bounds_the_thresholds_every_source_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = _load_bench()
    # the band's mechanics, at a target whose per-source floor one miss in four still meets
    monkeypatch.setattr(bench, "TARGET_OVERALL", 0.80)
    monkeypatch.setattr(bench, "TARGET_PER_SOURCE", 0.70)
    fh, ok = "forward_head", "normal"
    # source a separates anywhere in 0.25-0.8, source b only in 0.65-0.9
    frame = _scored(
        [("a", fh, 0.8), ("a", fh, 0.9), ("a", ok, 0.2), ("a", ok, 0.25)]
        + [("b", fh, 0.95), ("b", fh, 0.9), ("b", ok, 0.6), ("b", ok, 0.65)]
    )
    # bands are cut at midpoints between scores; one miss in four still leaves a source at 0.75
    window = bench.target_window(frame, fh, 0.7)
    assert window == {"threshold": 0.7, "low": pytest.approx(0.625), "high": pytest.approx(0.9), "holds": True}
    assert "0.625\u20130.900" in bench.window_sentence(window, fh)
    # argmax (0.5) calls b's upright photos forward: the band is still reported, the run is outside it
    argmax = bench.target_window(frame, fh, None)
    assert argmax["threshold"] == 0.5 and not argmax["holds"] and argmax["low"] == pytest.approx(0.625)
    assert "would hold" in bench.window_sentence(argmax, fh)
    # sources that need opposite thresholds: no band at all
    frame = _scored([("a", fh, 0.9), ("a", ok, 0.1), ("b", fh, 0.1), ("b", ok, 0.9)])
    none = bench.target_window(frame, fh, 0.5)
    assert none["low"] is None and not none["holds"]
    assert "No decision threshold" in bench.window_sentence(none, fh)


@pytest.mark.slow
def test_the_bench_scores_each_source_and_leaves_the_evaluation_in_the_run(tmp_path: Path, monkeypatch) -> None:
    import bench.common as bench_common

    monkeypatch.setattr(bench_common, "RESULTS", tmp_path / "results")
    bench = _load_bench()
    monkeypatch.setattr(bench, "RESULTS", tmp_path / "results")
    real = _real_like(tmp_path / "real")
    run = make_run(tmp_path / "run", architecture="classic_lenet5", input_size=32)
    assert bench.main(["--run", str(run), "--real", str(real), "--bootstrap", "50", "--top-k", "0"]) == 0
    payload = json.loads((tmp_path / "results" / "eval_real.json").read_text())
    (variant,) = payload["variants"]
    sources = {s["source"]: s for s in variant["by_source"]}
    assert set(sources) == {"desk", "web"} and sources["desk"]["subjects"] == 1 and sources["web"]["subjects"] == 3
    assert sources["desk"]["interval"] is None and len(sources["web"]["interval"]) == 2
    assert sum(s["n"] for s in sources.values()) == variant["n"] == 16
    md = (tmp_path / "results" / "eval_real.md").read_text()
    assert "decision threshold" in md or "thresholds" in md
    assert "| desk | 8 | 0 | 1 |" in md and "1 person: no interval by person" in md and "ROC AUC" in md
    assert "real photos: 16 photos of 4 people from desk, web" in md
    report = json.loads((run / "eval_real" / "report.json").read_text())
    assert report["data_provenance"]["kind"] == "real"  # the model card will headline it
