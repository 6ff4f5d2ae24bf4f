"""The eval pipeline must keep the whole figure and its angles; augmentation must stay gentle."""

from __future__ import annotations

import numpy as np
import pytest

from posture.data.transforms import Preprocessing, build_eval_transform, build_train_transform


def test_letterbox_keeps_aspect_and_pads_with_zero_after_normalisation() -> None:
    pre = Preprocessing(input_size=64)
    tall = np.full((200, 100, 3), 255, np.uint8)  # a white portrait photo
    out = build_eval_transform(pre)(image=tall)["image"]
    assert tuple(out.shape) == (3, 64, 64)
    # left and right bands are padding (≈ 0 after normalisation), the centre is the white image
    assert abs(float(out[:, :, :10].mean())) < 0.05
    assert float(out[:, :, 30:34].mean()) > 1.0


def test_eval_transform_is_deterministic() -> None:
    pre = Preprocessing(input_size=48, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bicubic")
    img = np.random.default_rng(0).integers(0, 255, (90, 70, 3), dtype=np.uint8)
    t = build_eval_transform(pre)
    assert np.array_equal(t(image=img)["image"].numpy(), t(image=img)["image"].numpy())


@pytest.mark.parametrize("strength", [0.0, 1.0])
def test_train_transform_shape(strength: float) -> None:
    pre = Preprocessing(input_size=32)
    img = np.random.default_rng(1).integers(0, 255, (50, 60, 3), dtype=np.uint8)
    assert tuple(build_train_transform(pre, strength)(image=img)["image"].shape) == (3, 32, 32)


def test_preprocessing_round_trips_through_json_dict() -> None:
    pre = Preprocessing(input_size=240, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic")
    assert Preprocessing.from_dict(pre.to_dict()) == pre
