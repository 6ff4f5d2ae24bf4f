"""One registry of model names, one ``build_model`` (in the spirit of timm's ``create_model``).

Why a registry: the CLI, the fine-tuner, the evaluator and the app accept any name the zoo
knows, and one parametrised test over :func:`list_models` checks every one of them. Each family
(:class:`ModelFamily`) registers its names once, when its module is imported (``posture.models``
imports them all), and knows how to build each backbone, what preprocessing its weights expect,
where its genuine weights are and how to translate their key names. A family that fails to
import fails ``import posture.models`` loudly instead of quietly leaving its names out.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch

from posture.cli import UserError
from posture.data.transforms import Preprocessing
from posture.models.classifier import Backbone, NoImage, PostureClassifier
from posture.models.heads import HeadSpec, build_head
from posture.models.weights import file_sha256, load_state_file, resolve_pretrained

log = logging.getLogger(__name__)

DEFAULT_INIT_SEED = 0


class ModelFamily(ABC):
    """One family of architectures (torchvision, EfficientNet-Lite, the classic networks): how to build
    each of its names, what preprocessing its weights expect, and where those weights are.

    A family registers itself when its module is imported (:func:`register_family`); every method
    but ``build`` is cheap.
    """

    name: ClassVar[str]

    @abstractmethod
    def names(self) -> Iterable[str]:
        """The zoo names this family answers for."""

    @abstractmethod
    def build(self, name: str, input_size: int | None) -> Backbone:
        """A randomly initialised backbone; ``input_size`` matters to size-dependent architectures only."""

    @abstractmethod
    def preprocessing(self, name: str) -> Preprocessing:
        """Input size, mean/std and interpolation the genuine weights were trained with."""

    def has_weights(self, name: str) -> bool:
        """Whether genuine weights exist for ``name`` at all (not whether they are on this machine)."""
        return True

    @abstractmethod
    def weights_file(self, name: str) -> Path:
        """The genuine weights on this machine; raises ``WeightsUnavailableError`` saying how to get them."""

    @abstractmethod
    def weights_id(self, name: str) -> str:
        """A short stable id of the genuine weights (part of the feature-cache key)."""

    def convert_original(self, name: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The weights' original key names → the names of :meth:`build`'s module (default: the same)."""
        return state


@dataclass(frozen=True)
class ModelEntry:
    """One registered name and the family that builds it."""

    name: str
    family: ModelFamily


_MODELS: dict[str, ModelEntry] = {}
FamilyT = TypeVar("FamilyT", bound=type[ModelFamily])


def register_family(cls: FamilyT) -> FamilyT:
    """Class decorator: register every name of the family ``cls`` (as torchvision and timm register
    their builders at import). A name registered twice is a bug, so it fails loudly."""
    family = cls()
    for name in family.names():
        if name in _MODELS:
            raise ValueError(
                f"model {name!r} of family {family.name!r} is already registered by {_MODELS[name].family.name!r}"
            )
        _MODELS[name] = ModelEntry(name, family)
    return cls


def registered_models() -> dict[str, ModelEntry]:
    """Every network name registered so far (the CNNs; ``pose`` and fusions are composed from them)."""
    return dict(_MODELS)


#: The geometry-only extractor: BlazePose landmarks → posture geometry (:mod:`posture.pose.geometry`).
POSE = "pose"
#: ``<cnn>+pose`` fuses any CNN of the zoo (on the head-and-shoulders crop) with the geometry.
FUSION_SUFFIX = "+pose"
#: Fusions listed by :func:`list_models` (every ``<cnn>+pose`` builds; these are the documented ones).
LISTED_FUSIONS = ("efficientnet_lite0", "resnet18", "resnet50")


@dataclass(frozen=True)
class ExtractorParts:
    """What a zoo name reads: a CNN (by its zoo name) and/or the posture geometry."""

    cnn: str | None
    pose: bool

    @property
    def kind(self) -> str:
        return "fusion" if self.cnn and self.pose else ("pose" if self.pose else "cnn")


def extractor_parts(name: str) -> ExtractorParts:
    """Split a zoo name: ``pose`` → geometry only, ``X+pose`` → CNN X fused with geometry, else a CNN."""
    if name == POSE:
        return ExtractorParts(None, True)
    if name.endswith(FUSION_SUFFIX):
        return ExtractorParts(name[: -len(FUSION_SUFFIX)], True)
    return ExtractorParts(name, False)


def list_models() -> list[str]:
    """Every buildable name: torchvision's classifiers, EfficientNet-Lite, the classic networks,
    the geometry-only ``pose`` extractor and the documented ``<cnn>+pose`` fusions."""
    return sorted([*_MODELS, POSE, *(f"{c}{FUSION_SUFFIX}" for c in LISTED_FUSIONS if c in _MODELS)])


def suggest_models(name: str, n: int = 3) -> list[str]:
    """Close spellings of an unknown name, best first."""
    names = list_models()
    return difflib.get_close_matches(name.lower(), names, n=n, cutoff=0.6)


class UnknownModelError(UserError):
    """A name the zoo does not know (a command-line option, or a run's stored architecture)."""


def _entry(name: str) -> ModelEntry:
    cnn = extractor_parts(name).cnn
    if cnn in _MODELS:
        return _MODELS[cnn]
    hint = suggest_models(name)
    more = f"; did you mean: {', '.join(hint)}?" if hint else " (list them with posture.models.list_models())"
    raise UnknownModelError(f"unknown model {name!r}{more}")  # repr: a stored name may hold a line break


def get_preprocessing(name: str) -> Preprocessing:
    """Input size, mean/std and interpolation that the model's genuine weights were trained with
    (a fusion's CNN sees the head-and-shoulders crop; the geometry-only ``pose`` reads no pixels)."""
    parts = extractor_parts(name)
    if parts.cnn is None:
        return Preprocessing()
    entry = _entry(name)
    pre = entry.family.preprocessing(entry.name)
    return dataclasses.replace(pre, crop="pose") if parts.pose else pre


def has_pretrained(name: str) -> bool:
    """Whether genuine weights exist for ``name`` at all (not whether they are on this machine);
    the geometry-only ``pose`` has no network weights to fetch, so it counts as ready."""
    if extractor_parts(name).cnn is None:
        return True
    entry = _entry(name)
    return entry.family.has_weights(entry.name)


def _no_weights(name: str) -> UserError:
    return UserError(f"'{name}' has no pretrained weights; pass --weights FILE or --weights none")


def _load_original(backbone: Backbone, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a state dict in the original (1000-class) naming, skipping its classifier."""
    if backbone.adapt_state is not None:
        state = backbone.adapt_state(state)
    kept = {backbone.key_prefix + k: v for k, v in state.items() if not k.startswith(backbone.drop_prefixes)}
    own = backbone.module.state_dict()
    missing = [k for k in own if k not in kept]
    unexpected = [k for k in kept if k not in own]
    wrong = [k for k in kept if k in own and tuple(kept[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        detail = (
            f"{len(missing)} missing (e.g. {missing[:2]}), {len(unexpected)} unexpected "
            f"(e.g. {unexpected[:2]}), {len(wrong)} with the wrong shape (e.g. {wrong[:2]})"
        )
        raise UserError(f"weights {source} do not fit this architecture: {detail}")
    backbone.module.load_state_dict(kept, strict=True)


def _load_posture(model: PostureClassifier, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a PostureClassifier state dict; a head for another class count is left fresh."""
    own = model.state_dict()
    back = {k: v for k, v in state.items() if k.startswith("backbone.")}
    missing = [k for k in own if k.startswith("backbone.") and k not in back]
    bad = [k for k in back if k not in own or tuple(back[k].shape) != tuple(own[k].shape)]
    if missing or bad:
        raise UserError(
            f"weights {source} do not fit '{model.arch}': {len(missing)} backbone tensors missing "
            f"(e.g. {missing[:2]}), {len(bad)} unexpected or mis-shaped (e.g. {bad[:2]})"
        )
    head = {k: v for k, v in state.items() if k.startswith("head.")}
    head_fits = set(head) == {k for k in own if k.startswith("head.")} and all(
        tuple(head[k].shape) == tuple(own[k].shape) for k in head
    )
    if not head_fits:
        log.info("weights %s: its head does not fit this head spec / class count; the head starts fresh", source)
        head = {}
    model.load_state_dict({**back, **head}, strict=False)


def build_model(
    name: str,
    num_classes: int,
    pretrained: bool | str | os.PathLike[str] = True,
    head: HeadSpec | dict[str, Any] | None = None,
    *,
    init_seed: int = DEFAULT_INIT_SEED,
    input_size: int | None = None,
    pose_features: Sequence[str] | None = None,
) -> PostureClassifier:
    """A feature extractor from the zoo with a fresh ``num_classes`` head.

    ``pose`` and ``<cnn>+pose`` names read posture geometry; ``pose_features`` names its columns
    (default :data:`posture.pose.geometry.DEFAULT_FEATURES`). The geometry comes from BlazePose outside
    the network (:mod:`posture.pose.landmarks`), so building such a model needs no MediaPipe.

    ``pretrained``: ``True`` the model's genuine weights (torchvision cache / pip package),
    ``False`` or ``"none"`` random init, or a ``.pth`` / ``.safetensors`` state dict in either the
    original 1000-class naming or a PostureClassifier's ``backbone.*``/``head.*`` naming.
    ``input_size`` overrides the weights' input size (ViTs are then built for it, their position
    embeddings resampled); ``None`` keeps the size the weights were trained at.
    Why a fixed ``init_seed`` for the backbone: a random backbone is then a reproducible
    feature extractor (``weights_fingerprint`` says ``random:<seed>``); the head still draws
    from the caller's RNG, so ``--seed`` varies what is trained.
    """
    parts = extractor_parts(name)
    entry = None if parts.cnn is None else _entry(name)  # first: an unknown name is the mistake to report
    spec = HeadSpec.coerce(head)
    features = _pose_feature_names(parts, pose_features)
    if entry is None:
        if input_size is not None:
            log.debug("the geometry-only pose extractor reads no pixels; input size %s ignored", input_size)
        return PostureClassifier(
            NoImage(),
            build_head(spec, len(features), num_classes),
            num_features=0,
            arch=name,
            preprocessing=Preprocessing(),
            blocks=[],
            cam_layer="",
            head_spec=spec,
            pose_features=features,
        )
    family = entry.family
    source = resolve_pretrained(pretrained)
    preprocessing = get_preprocessing(name)
    if input_size is not None and int(input_size) != preprocessing.input_size:
        if int(input_size) < 16:
            raise UserError(f"input size {input_size} is too small")
        preprocessing = dataclasses.replace(preprocessing, input_size=int(input_size))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        backbone = family.build(entry.name, input_size)
    if source is True:
        if not family.has_weights(entry.name):
            raise _no_weights(name)
        path = family.weights_file(entry.name)
        log.info("loading %s weights from %s", name, path)
        _load_original(backbone, family.convert_original(entry.name, load_state_file(path)), str(path))
    model = PostureClassifier(
        backbone.module,
        build_head(spec, backbone.num_features + len(features), num_classes),
        num_features=backbone.num_features,
        arch=name,
        preprocessing=preprocessing,
        blocks=backbone.blocks,
        cam_layer=backbone.cam_layer,
        head_spec=spec,
        pose_features=features,
    )
    if isinstance(source, Path):
        state = load_state_file(source)
        if any(k.startswith("backbone.") for k in state):
            _load_posture(model, state, str(source))
        else:
            _load_original(backbone, family.convert_original(entry.name, state), str(source))
    return model


def _pose_feature_names(parts: ExtractorParts, names: Sequence[str] | None) -> tuple[str, ...]:
    from posture.pose.geometry import DEFAULT_FEATURES, check_feature_names

    if not parts.pose:
        if names:
            raise UserError("pose features are for the 'pose' extractor and '<cnn>+pose' fusions")
        return ()
    try:
        return check_feature_names(list(names) if names else list(DEFAULT_FEATURES))
    except ValueError as exc:
        raise UserError(str(exc)) from None


def model_from_config(config: dict[str, Any]) -> PostureClassifier:
    """Rebuild a trained run's model (random init) ready for ``load_state_dict(model.safetensors)``."""
    for key in ("architecture", "classes"):
        if key not in config:
            raise UserError(f"run config has no {key!r}; is it a posture run's config.json?")
    pre = Preprocessing.from_dict(config["preprocessing"]) if "preprocessing" in config else None
    pose = config.get("pose") or {}
    try:
        model = build_model(
            str(config["architecture"]),
            len(config["classes"]),
            pretrained=False,
            head=HeadSpec.from_dict(config.get("head")),
            input_size=pre.input_size if pre is not None else None,
            pose_features=[f["name"] if isinstance(f, dict) else f for f in pose.get("features", [])] or None,
        )
    except UnknownModelError as exc:  # the user named no model: say where the name came from
        raise UnknownModelError(f"the run's config.json names an architecture the zoo lacks: {exc}") from None
    if pre is not None:
        model.preprocessing = pre
    return model


def weights_fingerprint(
    name: str, pretrained: bool | str | os.PathLike[str] = True, init_seed: int = DEFAULT_INIT_SEED
) -> str:
    """A short stable id of the weights, part of the feature-cache key (no weights are loaded)."""
    if extractor_parts(name).cnn is None:
        return "none"
    entry = _entry(name)
    source = resolve_pretrained(pretrained)
    if source is False:
        return f"random:{init_seed}"
    if isinstance(source, Path):
        return f"file:{file_sha256(source)}"
    if not entry.family.has_weights(entry.name):
        raise _no_weights(name)
    return entry.family.weights_id(entry.name)
