"""``PostureClassifier``: any zoo backbone plus a small head, with freezing done right.

Why the wrapper: fine-tuning, the feature cache, Grad-CAM and export all need the same three
things from very different architectures: pooled features, the stages in order, and the last
convolutional layer. Each family describes those once (as dotted module paths, so that
``copy.deepcopy`` and ``load_state_dict`` keep working) and everything downstream stays generic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from posture.models.heads import HeadSpec
from posture.transforms import Preprocessing

BlockPath = str | tuple[str, ...]


@dataclass
class Backbone:
    """What a family builder hands over: a feature extractor and where its parts are.

    ``blocks`` are dotted paths inside ``module`` in forward order; a tuple groups several
    modules into one stage (a ResNet stem is ``("conv1", "bn1")``). ``cam_layer`` is a dotted
    path. ``drop_prefixes`` are key prefixes of the original 1000-class state dict that do not
    belong to the backbone (the replaced classifier, auxiliary heads) and are skipped on load.
    """

    module: nn.Module
    num_features: int
    blocks: list[BlockPath]
    cam_layer: str
    drop_prefixes: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)


def _get(module: nn.Module, path: str) -> nn.Module:
    return module if path == "" else module.get_submodule(path)


class PostureClassifier(nn.Module):
    """``forward(x) = head(backbone(x))``; state-dict keys are ``backbone.*`` and ``head.*``."""

    def __init__(self, backbone: nn.Module, head: nn.Module, num_features: int, arch: str,
                 preprocessing: Preprocessing, blocks: list[BlockPath] | None = None,
                 cam_layer: str | None = None, head_spec: HeadSpec | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.num_features = int(num_features)
        self.arch = arch
        self.preprocessing = preprocessing
        self.head_spec = head_spec if head_spec is not None else HeadSpec()
        self._block_paths: list[BlockPath] = list(blocks) if blocks else _default_blocks(backbone)
        self._cam_path = cam_layer if cam_layer is not None else _last_conv_path(backbone)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features ``[N, num_features]`` (what the feature cache stores)."""
        return self.backbone(x)

    # -- structure ---------------------------------------------------------------------------
    def backbone_blocks(self) -> list[nn.Module]:
        """Stages from input to output, for discriminative learning rates and partial unfreezing.

        A grouped stage comes back as an unregistered ``nn.Sequential`` over the real modules, so
        its ``parameters()`` are the model's own tensors. Parameters that belong to no stage
        (a ViT's class token, say) are in :meth:`block_parameters` with the first stage.
        """
        out: list[nn.Module] = []
        for entry in self._block_paths:
            if isinstance(entry, str):
                out.append(_get(self.backbone, entry))
            else:
                out.append(nn.Sequential(*[_get(self.backbone, p) for p in entry]))
        return out

    def block_parameters(self) -> list[list[nn.Parameter]]:
        """Every backbone parameter exactly once, grouped by stage in forward order."""
        seen: set[int] = set()
        groups: list[list[nn.Parameter]] = []
        for block in self.backbone_blocks():
            group = [p for p in block.parameters() if id(p) not in seen]
            seen.update(id(p) for p in group)
            groups.append(group)
        loose = [p for p in self.backbone.parameters() if id(p) not in seen]
        if not groups:
            groups = [[]]
        groups[0] = loose + groups[0]
        return groups

    def cam_target_layer(self) -> nn.Module:
        """The last convolution-like layer, the usual Grad-CAM target for this family."""
        return _get(self.backbone, self._cam_path)

    # -- freezing ------------------------------------------------------------------------------
    def freeze_backbone(self) -> PostureClassifier:
        """Train the head only: backbone weights fixed and its BatchNorm statistics kept.

        Why the statistics matter: a training-mode forward over a few posture photos would
        overwrite ImageNet running means, silently changing the features the head learns on (and
        making cached features stale). The frozen part stays in eval mode even after ``.train()``.
        """
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        return self.train(self.training)

    def unfreeze(self, n_blocks: int | str = "all") -> PostureClassifier:
        """Make the last ``n_blocks`` stages trainable (``"all"``: the whole backbone); freeze the rest."""
        groups = self.block_parameters()
        if n_blocks == "all":
            n = len(groups)
        else:
            try:
                n = int(n_blocks)
            except (TypeError, ValueError):
                raise ValueError(f"n_blocks must be an int >= 0 or 'all', not {n_blocks!r}") from None
            if n < 0:
                raise ValueError(f"n_blocks must be >= 0, got {n}")
        n = min(n, len(groups))
        for i, group in enumerate(groups):
            for p in group:
                p.requires_grad_(i >= len(groups) - n)
        for p in self.head.parameters():
            p.requires_grad_(True)
        return self.train(self.training)

    def train(self, mode: bool = True) -> PostureClassifier:
        super().train(mode)
        if mode:
            if not any(p.requires_grad for p in self.backbone.parameters()):
                # Wholly frozen: a fixed feature extractor, identical to what the cache computed.
                self.backbone.eval()
            else:
                for m in self.backbone.modules():
                    if isinstance(m, _BatchNorm) and _is_frozen(m):
                        m.eval()
        return self

    @property
    def backbone_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.backbone.parameters())

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, num_features={self.num_features}"


def _is_frozen(m: nn.Module) -> bool:
    params = list(m.parameters(recurse=False))
    return bool(params) and not any(p.requires_grad for p in params)


def _default_blocks(backbone: nn.Module) -> list[BlockPath]:
    """Fallback stages: the backbone's children that hold parameters, in registration order."""
    return [name for name, child in backbone.named_children() if any(True for _ in child.parameters())]


def _last_conv_path(backbone: nn.Module) -> str:
    """Fallback CAM target: the last ``Conv2d`` registered in the backbone."""
    last = ""
    for name, m in backbone.named_modules():
        if isinstance(m, nn.Conv2d):
            last = name
    return last
