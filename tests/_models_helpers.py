"""Shared helpers for the zoo tests: input sizes and which models are too heavy for the fast lane."""

from __future__ import annotations

from torchvision import models as tvm

from posture.models import get_preprocessing
from posture.models.classic import CLASSIC_MODELS

# Forward passes cost in proportion to FLOPs and building costs in proportion to parameters:
# anything above these runs in the slow lane (CI still runs it).
HEAVY_PARAMS = 50e6
FIXED_SIZE_PREFIXES = ("vit_", "maxvit_", "classic_lenet5")


def vit_size(name: str) -> int:
    """A small multiple of a ViT's patch size (ViTs are built for the size they are given)."""
    patch = int(name.rsplit("_", 1)[-1])
    return patch * max(2, 64 // patch)


def input_size_for(name: str) -> int:
    """The smallest square input the architecture accepts, at least 64 px."""
    if name.startswith("vit_"):
        return vit_size(name)
    if name.startswith(FIXED_SIZE_PREFIXES):
        return get_preprocessing(name).input_size
    if name == "inception_v3":
        return 75
    spec = CLASSIC_MODELS.get(name)
    if spec is not None:
        return max(64, spec.min_input_size or 0)
    return 64


def is_heavy(name: str) -> bool:
    if name.startswith(("vit_h", "vit_l", "maxvit_", "swin_v2_")):
        return True
    if name in tvm.list_models(module=tvm) and not name.startswith("vit_"):
        return tvm.get_model_weights(name).DEFAULT.meta["num_params"] > HEAVY_PARAMS
    return name in ("classic_vgg16", "classic_vgg16_bn", "classic_alexnet_2tower")
