"""``PostureClassifier``: any zoo feature extractor plus a small head, with freezing done right.

Why the wrapper: fine-tuning, the feature cache, Grad-CAM and export all need the same three
things from very different architectures: pooled features, the stages in order, and the last
convolutional layer. Each family describes those once (as dotted module paths, so that
``copy.deepcopy`` and ``load_state_dict`` keep working) and everything downstream stays generic.

The head's input is ``[CNN features ‖ posture geometry]``: either part may be absent. A CNN run
has no geometry (and its head sees the raw CNN features, as it always did); the zoo's ``pose``
extractor has no CNN (its "backbone" is an empty module and the geometry comes from BlazePose,
outside the network); a fusion such as ``efficientnet_lite0+pose`` has both. Pose and fusion runs
standardise the head's input with statistics stored in the run (:class:`FeatureNorm`), because
geometry in degrees and face heights and CNN activations live on very different scales.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from posture.data.transforms import Preprocessing
from posture.models.heads import HeadSpec

BlockPath = str | tuple[str, ...]


@dataclass
class Backbone:
    """What a family builder hands over: a feature extractor and where its parts are.

    ``blocks`` are dotted paths inside ``module`` in forward order; a tuple groups several
    modules into one stage (a ResNet stem is ``("conv1", "bn1")``). ``cam_layer`` is a dotted
    path. The rest says how the original 1000-class state dict loads into ``module``:
    ``drop_prefixes`` are its key prefixes that do not belong to the backbone (the replaced
    classifier, auxiliary heads) and are skipped; ``key_prefix`` goes in front of every other key
    (a wrapper's attribute name); ``adapt_state`` rewrites the dict first (a ViT built for another
    image size resamples its position embeddings).
    """

    module: nn.Module
    num_features: int
    blocks: list[BlockPath]
    cam_layer: str
    drop_prefixes: tuple[str, ...] = ()
    key_prefix: str = ""
    adapt_state: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None


class NoImage(nn.Module):
    """The "backbone" of a geometry-only run: no parameters, no pixels, an empty feature vector."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros((x.shape[0], 0))


class FeatureNorm(nn.Module):
    """``(x - mean) / std`` with statistics fitted on the training features and stored in the run."""

    mean: torch.Tensor  # buffers (register_buffer)
    std: torch.Tensor

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("std", torch.ones(num_features))

    @torch.no_grad()
    def fit(self, features: torch.Tensor) -> FeatureNorm:
        """Statistics of ``features`` ``[N, F]``; constant columns keep a unit scale."""
        flat = features.reshape(-1, features.shape[-1]).double()
        std = flat.std(dim=0, unbiased=False) if len(flat) > 1 else torch.ones(flat.shape[1], dtype=torch.float64)
        self.mean.copy_(flat.mean(dim=0).float())
        self.std.copy_(torch.where(std > 1e-8, std, torch.ones_like(std)).float())
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _get(module: nn.Module, path: str) -> nn.Module:
    return module if path == "" else module.get_submodule(path)


class PostureClassifier(nn.Module):
    """``forward(x, geometry) = head(norm([backbone(x) ‖ geometry]))``.

    State-dict keys are ``backbone.*``, ``head.*`` and, for pose and fusion runs, ``norm.*``.
    ``num_features`` counts the CNN features only (0 for a geometry-only run); ``pose_features``
    names the geometry columns (:mod:`posture.pose.geometry`), empty for a CNN run.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        num_features: int,
        arch: str,
        preprocessing: Preprocessing,
        blocks: list[BlockPath] | None = None,
        cam_layer: str | None = None,
        head_spec: HeadSpec | None = None,
        pose_features: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.num_features = int(num_features)
        self.arch = arch
        self.preprocessing = preprocessing
        self.head_spec = head_spec if head_spec is not None else HeadSpec()
        self.pose_features = tuple(pose_features)
        self.norm: nn.Module = FeatureNorm(self.head_inputs) if self.pose_features else nn.Identity()
        self._block_paths: list[BlockPath] = list(blocks) if blocks else _default_blocks(backbone)
        self._cam_path = cam_layer if cam_layer is not None else _last_conv_path(backbone)

    @property
    def uses_image(self) -> bool:
        """Whether the network reads pixels (False for the geometry-only ``pose`` extractor)."""
        return self.num_features > 0

    @property
    def uses_pose(self) -> bool:
        """Whether the head reads posture geometry (the ``pose`` extractor and its fusions)."""
        return bool(self.pose_features)

    @property
    def feature_norm(self) -> FeatureNorm:
        """The standardisation of the head's input (pose and fusion runs only)."""
        if not isinstance(self.norm, FeatureNorm):
            raise ValueError(f"{self.arch} reads no posture geometry: its head input is not standardised")
        return self.norm

    @property
    def head_inputs(self) -> int:
        return self.num_features + len(self.pose_features)

    def forward(self, x: torch.Tensor | None = None, geometry: torch.Tensor | None = None) -> torch.Tensor:
        return self.classify_features(self.combine(self.backbone(x) if self.uses_image else None, geometry))

    def combine(self, cnn: torch.Tensor | None, geometry: torch.Tensor | None) -> torch.Tensor:
        """The head's raw input ``[N, head_inputs]`` from its parts (what the feature cache holds)."""
        parts = []
        if self.uses_image:
            if cnn is None:
                raise ValueError(f"{self.arch} reads images: pass the image batch")
            parts.append(cnn)
        if self.uses_pose:
            if geometry is None:
                raise ValueError(f"{self.arch} reads posture geometry: pass geometry [N, {len(self.pose_features)}]")
            parts.append(geometry.to(parts[0].dtype if parts else torch.float32))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def classify_features(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from the combined raw features (standardised first in pose and fusion runs)."""
        return self.head(self.norm(features))

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
