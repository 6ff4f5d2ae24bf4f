"""posture.evaluation.provenance: which photos are synthetic, and what a run records it was trained on."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from _finetune_helpers import make_dataset as make_photo_dataset
from _finetune_helpers import small_config
from _serving_helpers import REAL_DATA
from posture.evaluation.metrics import split_metrics_from
from posture.evaluation.provenance import describe_rows, describe_words, synthetic_rows, training_record

needs_real = pytest.mark.skipif(not (REAL_DATA / "manifest.csv").is_file(), reason="../shared/data/real is absent")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A ``posture.synth`` drop and the dataset ``posture.ingest`` makes of it (the README's demo path)."""
    from posture.ingest.config import IngestConfig
    from posture.ingest.pipeline import ingest
    from posture.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("synthetic")
    generate(SynthConfig(out=root / "raw", n=20, seed=3, size=(64, 96), workers=1))
    ingest(IngestConfig(src=root / "raw", out=root / "ds", progress=False, workers=1))
    return root / "raw", root / "ds"


def test_a_synth_drop_is_recognised_after_ingest(synthetic: tuple[Path, Path]) -> None:
    _, data = synthetic
    manifest = pd.read_csv(data / "manifest.csv")
    record = training_record(data)
    assert synthetic_rows(manifest).all()
    assert record["kind"] == "synthetic" and record["photos"] == len(manifest)
    assert record["subjects"] == manifest["subject"].nunique()
    assert [s["name"] for s in record["sources"]] == sorted(manifest["source"].unique())
    for split, counts in record["splits"].items():
        part = manifest[manifest["split"] == split]
        assert counts == {
            "photos": len(part),
            "subjects": part["subject"].nunique(),
            "used": len(part),
            "used_subjects": part["subject"].nunique(),
        }
    assert describe_words(record).startswith(f"synthetic pictures (posture.synth): {len(manifest)} pictures of ")


def test_the_raw_synth_folder_is_recognised_as_well(synthetic: tuple[Path, Path]) -> None:
    from posture.data.datasets import image_folder_frame

    raw, _ = synthetic
    assert describe_rows(image_folder_frame(raw), "raw")["kind"] == "synthetic"


def test_photos_and_mixtures_are_told_apart(synthetic: tuple[Path, Path]) -> None:
    _, data = synthetic
    synth = pd.read_csv(data / "manifest.csv")
    photos = synth.head(4).assign(
        source="phone", source_path=[f"normal/IMG_{i:04d}.jpg" for i in range(4)], subject=["ann", "ann", "bob", "bob"]
    )
    assert describe_rows(photos, "phone")["kind"] == "real"
    mixed = describe_rows(pd.concat([synth, photos], ignore_index=True), "both")
    assert mixed["kind"] == "mixed"
    assert {s["name"]: s["synthetic"] for s in mixed["sources"]} == {
        **{n: True for n in synth["source"].unique()},
        "phone": False,
    }
    assert "from phone" in describe_words(mixed)
    # a synth-like name whose keypoints a labeling team never clicked is not synthetic
    unclicked = synth.head(3).assign(ear_x=None)
    assert not synthetic_rows(unclicked).any()


def test_used_photos_leave_out_what_training_could_not_read(synthetic: tuple[Path, Path]) -> None:
    _, data = synthetic
    manifest = pd.read_csv(data / "manifest.csv")
    train = manifest[manifest["split"] == "train"]["path"].tolist()
    metrics = {
        "not_assessed": [{"path": train[0], "split": "train", "reason": "no person found"}],
        "skipped_images": [{"path": train[1], "reason": "corrupt"}],
    }
    record = training_record(data, metrics=metrics)
    kept = manifest[manifest["path"].isin(train[2:])]
    assert record["splits"]["train"]["used"] == len(train) - 2
    assert record["splits"]["train"]["photos"] == len(train)
    assert record["splits"]["train"]["used_subjects"] == kept["subject"].nunique()
    people = kept["subject"].nunique()
    assert describe_words(record, "train") == (
        f"synthetic pictures (posture.synth): {len(kept)} pictures of "
        f"{people} generated {'person' if people == 1 else 'people'}"
    )


@needs_real
def test_the_real_photos_are_real() -> None:
    manifest = pd.read_csv(REAL_DATA / "manifest.csv")
    record = describe_rows(manifest, "real")
    assert record["kind"] == "real" and record["photos"] == len(manifest)
    assert record["subjects"] == manifest["subject"].nunique()
    assert [s["name"] for s in record["sources"]] == sorted(manifest["source"].unique())
    assert not any(s["synthetic"] for s in record["sources"])


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_finetune_records_its_training_data_and_the_metrics_contract(tmp_path: Path) -> None:
    """The run's config.json says what it learnt from, with the splits finetune used (here re-drawn
    by subject), and metrics.json holds one SplitMetrics per split."""
    from posture.training.finetune import run_finetune

    data = make_photo_dataset(tmp_path / "ds")
    metrics = run_finetune(small_config(data, tmp_path / "run", tmp_path / "cache", epochs=2, val_group="subject"))
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    record = config["trained_on"]
    assert record["kind"] == "real" and record["dataset"] == "ds"
    assert record["splits"]["val"]["used"] == metrics["val"]["n"]
    assert record["splits"]["test"]["used"] == metrics["test"]["n"]
    stored = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for split in ("val", "test"):
        assert split_metrics_from(stored[split], f"metrics.json {split}") == stored[split]
