"""One registry of model names, one ``build_model`` (in the spirit of timm's ``create_model``).

Why a registry: the CLI, the fine-tuner, the evaluator and the app accept any name the zoo
knows, and one parametrised test over :func:`list_models` checks every one of them. Each entry
knows how to build its backbone, what preprocessing its weights expect, where its genuine
weights are and how to translate their key names.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from posture.cli import UserError
from posture.models import classic_family, efficientnet_lite, torchvision_family
from posture.models.classifier import Backbone, PostureClassifier
from posture.models.heads import HeadSpec, build_head
from posture.models.weights import file_sha256, load_state_file, resolve_pretrained
from posture.transforms import Preprocessing

log = logging.getLogger(__name__)

DEFAULT_INIT_SEED = 0


@dataclass(frozen=True)
class ModelEntry:
    """How to make one named model; every callable is cheap except ``build``."""

    name: str
    family: str
    build: Callable[[int | None], Backbone]  # argument: input size for size-dependent architectures
    preprocessing: Callable[[], Preprocessing]
    weights_file: Callable[[], Path] | None  # None: no genuine weights exist
    weights_id: Callable[[], str] | None
    convert_original: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def _identity(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return state


def _registry() -> dict[str, ModelEntry]:
    """Built on each call (cheap), so nothing is cached at import and classic models appear once written."""
    reg: dict[str, ModelEntry] = {}
    tv = torchvision_family
    for name in tv.torchvision_names():
        reg[name] = ModelEntry(name, "torchvision", lambda size, n=name: tv.build(n, size),
                               lambda n=name: tv.preprocessing(n), lambda n=name: tv.weights_file(n),
                               lambda n=name: tv.weights_id(n), lambda s, n=name: tv.convert_original(n, s))
    el = efficientnet_lite
    for name in el.VARIANTS:
        reg[name] = ModelEntry(name, "efficientnet_lite", lambda size, n=name: el.build(n),
                               lambda n=name: el.preprocessing(n), lambda n=name: el.weights_file(n),
                               lambda n=name: el.weights_id(n), lambda s, n=name: el.convert_original(n, s))
    for name, spec in classic_family.specs().items():
        tv_name = classic_family.torchvision_equivalent(spec)
        has_weights = tv_name is not None and tv_name in reg
        reg[name] = ModelEntry(
            name, "classic", lambda size, s=spec: classic_family.build(s),
            lambda s=spec: classic_family.preprocessing(s),
            (lambda t=tv_name: tv.weights_file(t)) if has_weights else None,
            (lambda t=tv_name: tv.weights_id(t)) if has_weights else None,
            (lambda s, t=tv_name: tv.convert_original(t, s)) if has_weights else _identity)
    return reg


def list_models() -> list[str]:
    """Every buildable name: torchvision's classifiers, EfficientNet-Lite, the classic networks."""
    return sorted(_registry())


def suggest_models(name: str, n: int = 3) -> list[str]:
    """Close spellings of an unknown name, best first."""
    names = list_models()
    return difflib.get_close_matches(name.lower(), names, n=n, cutoff=0.6)


def _entry(name: str) -> ModelEntry:
    reg = _registry()
    if name in reg:
        return reg[name]
    hint = suggest_models(name)
    more = f"; did you mean: {', '.join(hint)}?" if hint else " (list them with posture.models.list_models())"
    raise UserError(f"unknown model '{name}'{more}")


def get_preprocessing(name: str) -> Preprocessing:
    """Input size, mean/std and interpolation that the model's genuine weights were trained with."""
    return _entry(name).preprocessing()


def has_pretrained(name: str) -> bool:
    """Whether genuine weights exist for ``name`` at all (not whether they are on this machine)."""
    return _entry(name).weights_file is not None


def _no_weights(name: str) -> UserError:
    return UserError(f"'{name}' has no pretrained weights; pass --weights FILE or --weights none")


def _load_original(backbone: Backbone, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a state dict in the original (1000-class) naming, skipping its classifier."""
    prefix = backbone.extra.get("key_prefix", "")
    drops = backbone.drop_prefixes + tuple(backbone.extra.get("aux_prefixes", ()))
    if "adapt_state" in backbone.extra:
        state = backbone.extra["adapt_state"](state)
    kept = {prefix + k: v for k, v in state.items() if not k.startswith(drops)}
    own = backbone.module.state_dict()
    missing = [k for k in own if k not in kept]
    unexpected = [k for k in kept if k not in own]
    wrong = [k for k in kept if k in own and tuple(kept[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        detail = (f"{len(missing)} missing (e.g. {missing[:2]}), {len(unexpected)} unexpected "
                  f"(e.g. {unexpected[:2]}), {len(wrong)} with the wrong shape (e.g. {wrong[:2]})")
        raise UserError(f"weights {source} do not fit this architecture: {detail}")
    backbone.module.load_state_dict(kept, strict=True)


def _load_posture(model: PostureClassifier, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a PostureClassifier state dict; a head for another class count is left fresh."""
    own = model.state_dict()
    back = {k: v for k, v in state.items() if k.startswith("backbone.")}
    missing = [k for k in own if k.startswith("backbone.") and k not in back]
    bad = [k for k in back if k not in own or tuple(back[k].shape) != tuple(own[k].shape)]
    if missing or bad:
        raise UserError(f"weights {source} do not fit '{model.arch}': {len(missing)} backbone tensors missing "
                        f"(e.g. {missing[:2]}), {len(bad)} unexpected or mis-shaped (e.g. {bad[:2]})")
    head = {k: v for k, v in state.items() if k.startswith("head.")}
    head_fits = set(head) == {k for k in own if k.startswith("head.")} and all(
        tuple(head[k].shape) == tuple(own[k].shape) for k in head)
    if not head_fits:
        log.info("weights %s: its head does not fit this head spec / class count; the head starts fresh", source)
        head = {}
    model.load_state_dict({**back, **head}, strict=False)


def build_model(name: str, num_classes: int, pretrained: bool | str | os.PathLike[str] = True,
                head: HeadSpec | dict[str, Any] | None = None, *, init_seed: int = DEFAULT_INIT_SEED,
                input_size: int | None = None) -> PostureClassifier:
    """A backbone from the zoo with a fresh ``num_classes`` head.

    ``pretrained``: ``True`` the model's genuine weights (torchvision cache / pip package),
    ``False`` or ``"none"`` random init, or a ``.pth`` / ``.safetensors`` state dict in either the
    original 1000-class naming or a PostureClassifier's ``backbone.*``/``head.*`` naming.
    ``input_size`` overrides the weights' input size (ViTs are then built for it, their position
    embeddings resampled); ``None`` keeps the size the weights were trained at.
    Why a fixed ``init_seed`` for the backbone: a random backbone is then a reproducible
    feature extractor (``weights_fingerprint`` says ``random:<seed>``); the head still draws
    from the caller's RNG, so ``--seed`` varies what is trained.
    """
    entry = _entry(name)
    spec = HeadSpec.coerce(head)
    source = resolve_pretrained(pretrained)
    preprocessing = entry.preprocessing()
    if input_size is not None and int(input_size) != preprocessing.input_size:
        if int(input_size) < 16:
            raise UserError(f"input size {input_size} is too small")
        preprocessing = dataclasses.replace(preprocessing, input_size=int(input_size))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        backbone = entry.build(input_size)
    if source is True:
        if entry.weights_file is None:
            raise _no_weights(name)
        path = entry.weights_file()
        log.info("loading %s weights from %s", name, path)
        _load_original(backbone, entry.convert_original(load_state_file(path)), str(path))
    model = PostureClassifier(backbone.module, build_head(spec, backbone.num_features, num_classes),
                              num_features=backbone.num_features, arch=name, preprocessing=preprocessing,
                              blocks=backbone.blocks, cam_layer=backbone.cam_layer, head_spec=spec)
    if isinstance(source, Path):
        state = load_state_file(source)
        if any(k.startswith("backbone.") for k in state):
            _load_posture(model, state, str(source))
        else:
            _load_original(backbone, entry.convert_original(state), str(source))
    return model


def model_from_config(config: dict[str, Any]) -> PostureClassifier:
    """Rebuild a trained run's model (random init) ready for ``load_state_dict(model.safetensors)``."""
    for key in ("architecture", "classes"):
        if key not in config:
            raise UserError(f"run config has no {key!r}; is it a posture run's config.json?")
    if config.get("kind") == "pose-calibrated":
        raise UserError("this run is a calibrated pose model, not a network; use `python -m posture.posecal "
                        "predict --run RUN --upright PHOTO IMAGES...`")
    pre = Preprocessing.from_dict(config["preprocessing"]) if "preprocessing" in config else None
    model = build_model(str(config["architecture"]), len(config["classes"]), pretrained=False,
                        head=HeadSpec.from_dict(config.get("head")),
                        input_size=pre.input_size if pre is not None else None)
    if pre is not None:
        model.preprocessing = pre
    return model


def weights_fingerprint(name: str, pretrained: bool | str | os.PathLike[str] = True,
                        init_seed: int = DEFAULT_INIT_SEED) -> str:
    """A short stable id of the weights, part of the feature-cache key (no weights are loaded)."""
    entry = _entry(name)
    source = resolve_pretrained(pretrained)
    if source is False:
        return f"random:{init_seed}"
    if isinstance(source, Path):
        return f"file:{file_sha256(source)}"
    if entry.weights_id is None:
        raise _no_weights(name)
    return entry.weights_id()
