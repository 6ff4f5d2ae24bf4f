"""What a run's ``config.json`` may hold, checked whole when the run is loaded.

Why one schema: ``config.json`` is a file people copy, sync and edit by hand, and every reader
(the Predictor, evaluate, export, calibrate, the app's model card) trusted its types. A section
that had become a string, a temperature written as ``"hot"``, a negative head size or a feature
list that is a number crashed each of them with a traceback from deep inside; a zero temperature
or an upright reference of the wrong length answered nonsense, or crashed one command while the
others accepted it. :data:`RUN_CONFIG` describes every field the code writes (``posture.finetune``'s
``run_config``, ``posture.calibrate``'s ``calibration`` record, ``posture.evaluation.provenance``'s
``trained_on``, :func:`posture.runs.checkpoint.save_checkpoint`'s ``format_version`` and ``versions``);
:func:`check_run_config` walks a loaded file against it once, in
:func:`posture.runs.checkpoint.read_config`, and names the first field that breaks it.

Older and newer runs still load: a field that is absent is only an error where every reader needs
it (``architecture``, ``classes``, ``preprocessing``), and keys this version does not know are
left alone, except that no value may nest deeper than :data:`MAX_DEPTH`.

Why hand-written rather than jsonschema or pydantic: the whole description is a few dozen lines,
its messages say what a field must be in the words of this project ("a number above 0"), and the
checks that join fields (the upright reference has one value per feature, each feature is one this
version computes) sit beside it. (A ``calibration.positive_class`` that is not one of the classes is
let be: the Predictor falls back to the usual positive class, as it always has.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

#: Deeper than any run writes (``trained_on`` is four levels deep); a file nested deeper is not one of ours.
MAX_DEPTH = 16


class ConfigFieldError(ValueError):
    """One field of a run config that is not what its readers need; ``field`` is its dotted path."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field
        self.problem = problem


def shown(value: Any) -> str:
    """A value as a message quotes it: short, and never the whole of a container."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Spec(Protocol):
    """What one value may be: :meth:`check` raises :class:`ConfigFieldError` when it is not."""

    @property
    def expected(self) -> str: ...

    def check(self, value: Any, where: str) -> None: ...


def _wrong(spec: Spec, value: Any, where: str) -> ConfigFieldError:
    return ConfigFieldError(where, f"must be {spec.expected}, not {shown(value)}")


@dataclass(frozen=True)
class Number:
    """A finite JSON number (``integer``: a whole one) within optional bounds (``*_open``: bound excluded)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False

    @property
    def expected(self) -> str:
        what = "a whole number" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            return f"{what} from {self.low:g} to {self.high:g}" + (" (excluded)" if self.high_open else "")
        if self.low is not None:
            return f"{what} {'above' if self.low_open else 'of at least'} {self.low:g}"
        return what

    def check(self, value: Any, where: str) -> None:
        kinds = (int,) if self.integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
            raise _wrong(self, value, where)
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if too_low or too_high:
            raise _wrong(self, value, where)


@dataclass(frozen=True)
class Text:
    """A string, non-empty, optionally one of ``choices``."""

    choices: tuple[str, ...] = ()

    @property
    def expected(self) -> str:
        return f"one of {', '.join(map(repr, self.choices))}" if self.choices else "a non-empty string"

    def check(self, value: Any, where: str) -> None:
        if not isinstance(value, str) or not value or (self.choices and value not in self.choices):
            raise _wrong(self, value, where)


@dataclass(frozen=True)
class Flag:
    expected: str = "true or false"

    def check(self, value: Any, where: str) -> None:
        if not isinstance(value, bool):
            raise _wrong(self, value, where)


@dataclass(frozen=True)
class Maybe:
    """``null`` or ``spec``."""

    spec: Spec

    @property
    def expected(self) -> str:
        return f"{self.spec.expected} or null"

    def check(self, value: Any, where: str) -> None:
        if value is not None:
            self.spec.check(value, where)


@dataclass(frozen=True)
class ListOf:
    """A list of ``item``s, of ``length`` exactly or at least ``min_length``, optionally all different."""

    item: Spec
    min_length: int = 0
    length: int | None = None
    unique: bool = False

    @property
    def expected(self) -> str:
        count = f"{self.length}" if self.length is not None else f"at least {self.min_length}"
        return f"a list of {count}, each {self.item.expected}" + (", all different" if self.unique else "")

    def check(self, value: Any, where: str) -> None:
        if not isinstance(value, list):
            raise _wrong(self, value, where)
        if len(value) < self.min_length or (self.length is not None and len(value) != self.length):
            raise _wrong(self, value, where)
        for i, item in enumerate(value):
            self.item.check(item, f"{where}[{i}]")
        if self.unique and len({repr(v) for v in value}) != len(value):
            raise ConfigFieldError(where, f"must be {self.expected}, but repeats a value")


@dataclass(frozen=True)
class Section:
    """A JSON object with these ``fields`` (``required`` ones must be present; other keys are let be)."""

    fields: Mapping[str, Spec]
    required: tuple[str, ...] = ()
    expected: str = "an object"

    def check(self, value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise _wrong(self, value, where)
        for name in self.required:
            if name not in value:
                raise ConfigFieldError(_join(where, name), "is missing")
        for name, spec in self.fields.items():
            if name in value:
                spec.check(value[name], _join(where, name))


@dataclass(frozen=True)
class MapOf:
    """A JSON object whose every value is ``value`` (keys are names: splits, libraries)."""

    value: Spec
    expected: str = "an object"

    def check(self, value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise _wrong(self, value, where)
        for name, item in value.items():
            self.value.check(item, _join(where, name))


@dataclass(frozen=True)
class Either:
    """The first of ``options`` the value fits; the message names them all."""

    options: tuple[Spec, ...]
    expected: str = ""

    def check(self, value: Any, where: str) -> None:
        for option in self.options:
            try:
                option.check(value, where)
                return
            except ConfigFieldError:
                continue
        expected = self.expected or " or ".join(o.expected for o in self.options)
        raise ConfigFieldError(where, f"must be {expected}, not {shown(value)}")


@dataclass(frozen=True)
class Anything:
    expected: str = "any JSON value"

    def check(self, value: Any, where: str) -> None:
        return None


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


WHOLE = Number(low=0, integer=True)
COUNT = Maybe(WHOLE)
RGB = ListOf(Number(), length=3)

PREPROCESSING = Section(
    {
        "input_size": Number(low=1, high=4096, integer=True),
        "mean": RGB,
        "std": ListOf(Number(low=0, low_open=True), length=3),
        "interpolation": Text(),
        "resize_mode": Text(("letterbox", "stretch")),
        "extra": Section({}),
        "crop": Text(("none", "pose")),
        "crop_scale": Number(low=0, low_open=True, high=100),
    }
)
POSE_FEATURE = Either(
    (Text(), Section({"name": Text()}, required=("name",))),
    expected="a feature name or an object with its 'name'",
)
#: What a pose run saw in training (``posture.training.finetune.training_coverage``): each feature's range
#: and the views.
COVERAGE = Section(
    {
        "range": MapOf(ListOf(Number(), length=2)),
        "views": MapOf(WHOLE),
        "margin": Number(low=0),
        "quantiles": ListOf(Number(low=0, high=1), length=2),
    }
)
POSE = Section(
    {
        "features": ListOf(POSE_FEATURE, min_length=1, unique=True),
        "geometry_version": Number(low=1, integer=True),
        "landmarks": Text(),
        "upright_reference": Maybe(ListOf(Number())),
        "reference_class": Maybe(Text()),
        "coverage": Maybe(COVERAGE),
    },
    required=("features",),
)
#: How the defaults the run rests on were chosen (``posture.training.finetune.defaults_record``), shown on the card.
DEFAULTS = Section(
    {
        "pick": Text(),
        "nested": MapOf(Maybe(Number())),
        "changed": ListOf(Text()),
        "procedure": Text(),
        "data": Text(),
    }
)
CALIBRATION = Section(
    {
        "temperature": Number(low=0, low_open=True),
        "threshold": Maybe(Number(low=0, high=1)),
        "positive_class": Maybe(Text()),
        "policy": Text(),
        "fitted_on": Text(),
        "n": WHOLE,
        "data": Text(),
    }
)
TRAINED_ON = Section(
    {
        "format": Text(),
        "dataset": Text(),
        "kind": Text(("synthetic", "real", "mixed", "none")),
        "photos": WHOLE,
        "subjects": COUNT,
        "sources": ListOf(
            Section({"name": Text(), "synthetic": Flag(), "photos": WHOLE, "subjects": COUNT}, required=("name",))
        ),
        "splits": MapOf(
            Section(
                {"photos": WHOLE, "subjects": COUNT, "used": WHOLE, "used_subjects": COUNT},
                required=("used", "subjects"),
            )
        ),
        "rule": Text(),
    }
)
#: The whole ``config.json`` of a run.
RUN_CONFIG = Section(
    {
        "format_version": Number(low=1, integer=True),
        "architecture": Text(),
        "extractor": Text(),
        "classes": ListOf(Text(), min_length=2, unique=True),
        "preprocessing": PREPROCESSING,
        "input_size": Number(low=1, integer=True),
        "head": Section({"hidden": WHOLE, "dropout": Number(low=0, high=1, high_open=True)}),
        "weights": Section({"source": Maybe(Text()), "fingerprint": Text()}),
        "training": Section({"val_group": Maybe(Text()), "seed": Number(integer=True)}),
        "pose": Maybe(POSE),
        "trained_on": Maybe(TRAINED_ON),
        "calibration": Maybe(CALIBRATION),
        "defaults": Maybe(DEFAULTS),
        "versions": MapOf(Text()),
    },
    required=("architecture", "classes", "preprocessing"),
)


def nesting_depth(value: Any) -> int:
    """How deeply lists and objects nest in ``value`` (a scalar: 0), without recursing."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth + 1)
            if depth + 1 <= MAX_DEPTH:  # deeper is already an answer; do not walk a hostile file further
                stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def check_run_config(config: Any) -> None:
    """Raise :class:`ConfigFieldError` for the first field of ``config`` its readers could not use."""
    if nesting_depth(config) > MAX_DEPTH:
        raise ConfigFieldError("the file", f"nests lists or objects more than {MAX_DEPTH} deep; no run writes that")
    RUN_CONFIG.check(config, "")
    _check_across_fields(config)


def _check_across_fields(config: dict[str, Any]) -> None:
    """What no single field says: names that must exist elsewhere, lengths that must agree."""
    from posture.pose.geometry import FEATURES

    pose = config.get("pose") or {}
    names = [f["name"] if isinstance(f, dict) else f for f in pose.get("features", [])]
    for i, name in enumerate(names):
        if name not in FEATURES:
            raise ConfigFieldError(f"pose.features[{i}]", f"{shown(name)} is not a posture geometry feature")
    bounds = (pose.get("coverage") or {}).get("range") or {}
    for name, pair in bounds.items():
        if name not in names:
            raise ConfigFieldError(f"pose.coverage.range.{name}", "names a feature the run does not read")
        if pair[0] > pair[1]:
            raise ConfigFieldError(f"pose.coverage.range.{name}", f"runs from {pair[0]:g} down to {pair[1]:g}")
    upright = pose.get("upright_reference")
    if upright is not None and len(upright) != len(names):
        raise ConfigFieldError(
            "pose.upright_reference",
            f"has {len(upright)} value{'' if len(upright) == 1 else 's'} but the run reads {len(names)} "
            f"features ({', '.join(names)}), one value each",
        )


__all__ = ["ConfigFieldError", "MAX_DEPTH", "RUN_CONFIG", "check_run_config", "nesting_depth", "shown"]
