"""Grad-CAM overlays: right size, lined up with the photo, harmless to the serving model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _evaluate_helpers import make_run
from posture.inference.cam import content_box, explain, heatmap
from posture.inference.predict import Predictor


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    run = make_run(tmp_path_factory.mktemp("cam") / "run", architecture="classic_lenet5", input_size=32)
    return Predictor.from_run(run)


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    image = np.random.default_rng(seed).integers(0, 200, (h, w, 3), dtype=np.uint8)
    image[0, 0] = 255
    return image


@pytest.mark.parametrize("shape", [(40, 100), (90, 30), (32, 32)])
def test_overlay_has_the_photos_own_size(predictor: Predictor, shape: tuple[int, int]) -> None:
    overlay = explain(predictor, _photo(*shape))
    assert overlay.shape == (*shape, 3) and overlay.dtype == np.uint8


def test_accepts_pil_images_and_paths(predictor: Predictor, tmp_path: Path) -> None:
    photo = _photo(50, 70)
    Image.fromarray(photo).save(tmp_path / "p.png")
    from_path = explain(predictor, tmp_path / "p.png", class_index=1)
    from_pil = explain(predictor, Image.fromarray(photo), class_index=1)
    assert from_path.shape == from_pil.shape == (50, 70, 3)
    np.testing.assert_array_equal(from_path, from_pil)


def test_content_box_matches_the_letterbox(predictor: Predictor) -> None:
    # 40x100 into 32x32: scaled to 13x32 (12.8 rounds up), padded 9 rows above
    assert content_box(predictor, _photo(40, 100)) == (9, 0, 13, 32)
    top, left, h, w = content_box(predictor, _photo(100, 50))
    assert (top, h) == (0, 32) and w == 16 and left == 8


def test_heatmap_is_a_unit_map(predictor: Predictor) -> None:
    cam = heatmap(predictor, _photo(40, 60), class_index=0)
    assert cam.shape == (40, 60) and cam.dtype == np.float32
    assert cam.min() >= 0.0 and cam.max() <= 1.0


def test_leaves_the_serving_model_as_it_was(predictor: Predictor) -> None:
    photo = _photo(40, 60, seed=3)
    before = predictor.predict_proba([photo])
    explain(predictor, photo)
    assert not predictor.model.training
    assert all(p.grad is None for p in predictor.model.parameters())
    np.testing.assert_allclose(predictor.predict_proba([photo]), before, rtol=1e-6)


def test_works_with_a_frozen_backbone(tmp_path: Path) -> None:
    predictor = Predictor.from_run(make_run(tmp_path / "run", architecture="classic_lenet5", input_size=32, seed=1))
    predictor.model.freeze_backbone()
    assert explain(predictor, _photo(40, 60)).shape == (40, 60, 3)


def test_alpha_zero_shows_the_photo(predictor: Predictor) -> None:
    photo = _photo(30, 40)
    np.testing.assert_allclose(explain(predictor, photo, alpha=0.0).astype(int), photo.astype(int), atol=1)


def test_bad_arguments(predictor: Predictor) -> None:
    with pytest.raises(ValueError, match="class_index"):
        explain(predictor, _photo(30, 30), class_index=5)
    with pytest.raises(ValueError, match="alpha"):
        explain(predictor, _photo(30, 30), alpha=1.5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "architecture", ["efficientnet_lite0", "resnet18", "mobilenet_v3_small", "classic_cifar_resnet20"]
)
def test_zoo_models_give_a_finite_overlay(architecture: str) -> None:
    """Every family's ``cam_target_layer()`` works with grad-cam (the app explains with any run)."""
    import torch

    from posture.data.transforms import Preprocessing
    from posture.inference.predict import TorchBackend
    from posture.models import build_model

    torch.manual_seed(0)
    model = build_model(architecture, 2, pretrained=False)
    config = {
        "classes": ["forward_head", "normal"],
        "preprocessing": Preprocessing(
            input_size=64, mean=model.preprocessing.mean, std=model.preprocessing.std
        ).to_dict(),
    }
    predictor = Predictor(config, TorchBackend(model), model=model)
    cam = heatmap(predictor, _photo(50, 80), class_index=0)
    assert cam.shape == (50, 80) and np.isfinite(cam).all()
    assert explain(predictor, _photo(50, 80)).shape == (50, 80, 3)
