"""The feature cache and the extraction backends (posture.models.features)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from _finetune_helpers import make_dataset
from posture.models import build_model
from posture.models import features as F
from posture.models.features import ExtractOptions, FeatureCache, FeatureSpec, default_cache_dir, extract_features

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    root = make_dataset(tmp_path_factory.mktemp("feat") / "ds", per_class={"train": 3, "val": 1})
    return root, pd.read_csv(root / "manifest.csv")


@pytest.fixture(scope="module")
def backbone() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("resnet18", 2, pretrained=False).backbone


def _spec(**kw) -> FeatureSpec:
    from posture.models import get_preprocessing

    pre = replace(get_preprocessing("resnet18"), input_size=32)
    return FeatureSpec(**{"arch": "resnet18", "weights_fingerprint": "random:0", "preprocessing": pre, **kw})


def _options(**kw) -> ExtractOptions:
    """Options without a progress bar, which would only clutter the test log."""
    return ExtractOptions(**{"progress": False, **kw})


def test_onnx_runtime_features_match_torch(dataset, backbone, tmp_path: Path) -> None:
    root, frame = dataset
    cache = FeatureCache(tmp_path / "cache")
    onnx = extract_features(backbone, root, frame, _spec(), _options(cache=cache, backend="onnx"))
    ref = extract_features(backbone, root, frame, _spec(), _options(cache=None, backend="torch"))
    assert onnx.stats.backend == "onnx" and ref.stats.backend == "torch"
    assert onnx.stats.parity_max_abs_diff is not None and onnx.stats.parity_max_abs_diff < 1e-3
    assert (onnx.features - ref.features).abs().max() < 1e-3
    assert cache.onnx_path(_spec()).is_file()  # exported once, kept beside the features


def test_a_broken_onnx_export_falls_back_to_torch(
    dataset, backbone, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    root, frame = dataset

    def boom(*args, **kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(F, "export_backbone_onnx", boom)
    with caplog.at_level(logging.WARNING):
        out = extract_features(backbone, root, frame.head(2), _spec(), _options(cache=None, backend="auto"))
    assert out.stats.backend == "torch"
    assert "exporter exploded" in caplog.text and bool(out.ok.all())


def test_cached_views_are_reused_and_a_torn_file_is_recomputed(dataset, backbone, tmp_path: Path) -> None:
    root, frame = dataset
    cache = FeatureCache(tmp_path / "cache")
    spec = _spec(aug_views=2)
    first = extract_features(backbone, root, frame, spec, _options(cache=cache, backend="torch"))
    assert first.stats.computed == len(frame) * 3 and first.features.shape == (len(frame), 3, 512)
    second = extract_features(backbone, root, frame, spec, _options(cache=cache, backend="torch"))
    assert second.stats.computed == 0 and torch.equal(first.features, second.features)
    # the clean view is shared with a run that uses no augmentation
    clean = extract_features(backbone, root, frame, replace(spec, aug_views=0), _options(cache=cache))
    assert clean.stats.computed == 0 and torch.equal(clean.features[:, 0], first.features[:, 0])
    torn = next((cache.key_dir(spec)).rglob("*.safetensors"))
    torn.write_bytes(b"not a safetensors file")
    third = extract_features(backbone, root, frame, spec, _options(cache=cache, backend="torch"))
    assert third.stats.computed == 3 and torch.allclose(third.features, first.features, atol=1e-5)


def test_augmented_views_are_seeded_and_differ_from_the_clean_view(dataset, backbone) -> None:
    root, frame = dataset
    a = extract_features(backbone, root, frame, _spec(aug_views=2, aug_seed=1), _options(backend="torch"))
    b = extract_features(backbone, root, frame, _spec(aug_views=2, aug_seed=1), _options(backend="torch"))
    c = extract_features(backbone, root, frame, _spec(aug_views=2, aug_seed=2), _options(backend="torch"))
    assert torch.equal(a.features, b.features)
    assert not torch.allclose(a.features[:, 1:], c.features[:, 1:])
    assert torch.equal(a.features[:, 0], c.features[:, 0])
    assert not torch.allclose(a.features[:, 0], a.features[:, 1])


def test_decoding_in_worker_processes_gives_the_same_features(dataset, backbone) -> None:
    root, frame = dataset
    spec = _spec(aug_views=1)
    serial = extract_features(backbone, root, frame, spec, _options(backend="torch", workers=0, batch_size=4))
    parallel = extract_features(backbone, root, frame, spec, _options(backend="torch", workers=2, batch_size=4))
    assert torch.allclose(serial.features, parallel.features, atol=1e-6)


def test_the_cache_key_separates_weights_and_preprocessing() -> None:
    base = _spec()
    assert base.key() == _spec().key()
    assert base.key() != _spec(weights_fingerprint="random:1").key()
    assert base.key() != _spec(arch="resnet34").key()
    assert base.key() != replace(base, preprocessing=replace(base.preprocessing, input_size=64)).key()
    assert base.key() == _spec(aug_views=3).key()  # views live inside one key, named by seed and index
    assert _spec(aug_views=1, aug_seed=1).view_names() != _spec(aug_views=1, aug_seed=2).view_names()


def test_unreadable_images_are_marked_not_fatal(tmp_path: Path, backbone) -> None:
    root = make_dataset(tmp_path / "ds", per_class={"train": 2})
    frame = pd.read_csv(root / "manifest.csv")
    (root / frame["path"][1]).write_bytes(b"")
    out = extract_features(backbone, root, frame, _spec(), _options(backend="torch"))
    assert out.ok.tolist() == [True, False, True, True]
    assert out.stats.failed[0]["path"] == frame["path"][1] and "empty_file" in out.stats.failed[0]["reason"]


def test_default_cache_dir_honours_posture_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("POSTURE_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("POSTURE_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "posture" / "features"
