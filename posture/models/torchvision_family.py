"""Every torchvision classification model as a backbone: final classifier swapped for Identity.

Why load weights ourselves: torchvision's builders unpickle with ``weights_only=False``; here
the architecture is built empty (with the constructor arguments its weights imply) and the cached
file is read with ``weights_only=True``. Why find the head generically: the 1000-way layer is the
last ``Linear`` (or, for SqueezeNet, ``Conv2d``) with 1000 outputs in every family, so one rule
covers ``fc``, ``classifier[-1]``, ``heads.head``, ``head`` and SqueezeNet's final conv, and
keeps hidden layers such as MobileNetV3's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision import models as tvm

from posture.data.transforms import Preprocessing
from posture.models.classifier import Backbone, BlockPath
from posture.models.registry import ModelFamily, register_family
from posture.models.weights import require_torchvision_file

IMAGENET_CLASSES = 1000
_AUX_PREFIXES = ("AuxLogits.", "aux1.", "aux2.")


def torchvision_names() -> list[str]:
    return sorted(tvm.list_models(module=tvm))


def default_weights(name: str) -> Any:
    """The ``DEFAULT`` member of the model's weights enum (what ``weights="DEFAULT"`` means)."""
    return tvm.get_model_weights(name).DEFAULT


def _arch_kwargs(name: str, input_size: int | None) -> dict[str, Any]:
    """Constructor arguments the DEFAULT weights imply, so random and pretrained nets are alike."""
    kwargs: dict[str, Any] = {"weights": None, "num_classes": IMAGENET_CLASSES}
    if name in ("inception_v3", "googlenet"):
        kwargs.update(aux_logits=False, transform_input=True, init_weights=True)
    if name.startswith("vit_"):
        kwargs["image_size"] = int(input_size or default_weights(name).meta["min_size"][0])
    return kwargs


def _vit_adapter(model: Any) -> Any:
    """Resample a ViT's position embeddings when weights come from another image size.

    ``model`` is a torchvision ``VisionTransformer`` (torchvision ships no type information)."""
    from torchvision.models.vision_transformer import interpolate_embeddings

    def adapt(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        key = "encoder.pos_embedding"
        if key in state and state[key].shape != model.encoder.pos_embedding.shape:
            state = dict(interpolate_embeddings(model.image_size, model.patch_size, state))
        return state

    return adapt


def _find_head(model: nn.Module) -> tuple[str, int]:
    found: tuple[str, int] | None = None
    for path, m in model.named_modules():
        if isinstance(m, nn.Linear) and m.out_features == IMAGENET_CLASSES:
            found = (path, m.in_features)
        elif isinstance(m, nn.Conv2d) and m.out_channels == IMAGENET_CLASSES:
            found = (path, m.in_channels)
    if found is None:
        raise RuntimeError(f"no {IMAGENET_CLASSES}-way classifier found in {type(model).__name__}")
    return found


def _set(model: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def _with_params(model: nn.Module, path: str) -> list[str]:
    """Children of ``path`` that hold parameters, as dotted paths (Identity leftovers skipped)."""
    container = model.get_submodule(path)
    prefix = f"{path}." if path else ""
    return [prefix + n for n, c in container.named_children() if any(True for _ in c.parameters())]


def _layout(model: nn.Module) -> tuple[Sequence[BlockPath], str]:
    """Stages (forward order) and the Grad-CAM layer for each family."""
    if isinstance(model, tvm.ResNet):
        return [("conv1", "bn1"), "layer1", "layer2", "layer3", "layer4"], "layer4"
    if isinstance(model, tvm.RegNet):
        return ["stem", *_with_params(model, "trunk_output")], "trunk_output"
    if isinstance(model, tvm.ShuffleNetV2):
        return ["conv1", "stage2", "stage3", "stage4", "conv5"], "conv5"
    if isinstance(model, tvm.Inception3):
        return _with_params(model, ""), "Mixed_7c"
    if isinstance(model, tvm.GoogLeNet):
        return _with_params(model, ""), "inception5b"
    if isinstance(model, tvm.VisionTransformer):
        return ["conv_proj", *_with_params(model, "encoder.layers"), "encoder.ln"], _with_params(
            model, "encoder.layers"
        )[-1] + ".ln_1"
    if isinstance(model, tvm.SwinTransformer):
        return [*_with_params(model, "features"), "norm"], "norm"
    if isinstance(model, tvm.MaxVit):
        return ["stem", *_with_params(model, "blocks"), *_with_params(model, "classifier")], _with_params(
            model, "blocks"
        )[-1]
    if isinstance(model, tvm.MNASNet):
        return [*_with_params(model, "layers"), *_with_params(model, "classifier")], "layers"
    if hasattr(model, "features") and isinstance(model.features, nn.Sequential):
        # AlexNet, VGG, SqueezeNet, DenseNet, MobileNet v2/v3, EfficientNet v1/v2, ConvNeXt.
        blocks = _with_params(model, "features")
        if isinstance(getattr(model, "classifier", None), nn.Sequential):
            blocks += _with_params(model, "classifier")
        return blocks, "features"
    return _with_params(model, ""), ""


_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _rgb(values: Sequence[float]) -> tuple[float, float, float]:
    """A per-channel mean or std of an RGB transform."""
    r, g, b = (float(v) for v in values)
    return r, g, b


@register_family
class TorchvisionFamily(ModelFamily):
    """Every classifier ``torchvision.models`` lists, with its DEFAULT weights from torchvision's cache."""

    name = "torchvision"

    def names(self) -> list[str]:
        return torchvision_names()

    def preprocessing(self, name: str) -> Preprocessing:
        """Input size, mean/std and interpolation from the weights' own ``transforms()``."""
        t = default_weights(name).transforms()
        crop = t.crop_size[0] if isinstance(t.crop_size, (list, tuple)) else int(t.crop_size)
        interp = getattr(t.interpolation, "value", str(t.interpolation))
        return Preprocessing(
            input_size=int(crop),
            mean=_rgb(t.mean),
            std=_rgb(t.std),
            interpolation=str(interp),
        )

    def weights_file(self, name: str) -> Path:
        return require_torchvision_file(name, default_weights(name).url)

    def weights_id(self, name: str) -> str:
        """torchvision's file names carry the sha256 prefix (``resnet18-f37072fd.pth``): stable, free."""
        return "torchvision:" + default_weights(name).url.rsplit("/", 1)[-1]

    def build(self, name: str, input_size: int | None = None) -> Backbone:
        """A randomly initialised backbone whose output is the pooled feature vector.

        ``input_size`` only changes the architecture of size-dependent models (ViT's position
        embeddings); every other model takes any size anyway.
        """
        model = tvm.get_model(name, **_arch_kwargs(name, input_size))
        head_path, num_features = _find_head(model)
        _set(model, head_path, nn.Identity())
        blocks, cam = _layout(model)
        return Backbone(
            module=model,
            num_features=num_features,
            blocks=list(blocks),
            cam_layer=cam,
            drop_prefixes=(head_path + ".", *_AUX_PREFIXES),
            adapt_state=_vit_adapter(model) if isinstance(model, tvm.VisionTransformer) else None,
        )

    def convert_original(self, name: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Undo old key spellings in torchvision's own files (DenseNet's ``norm.1`` → ``norm1``)."""
        if not name.startswith("densenet"):
            return state
        out = {}
        for key, value in state.items():
            m = _DENSENET_OLD_KEY.match(key)
            out[m.group(1) + m.group(2) if m else key] = value
        return out
