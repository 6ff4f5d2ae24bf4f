"""The trainable classification head that sits on a backbone's pooled features.

Why a spec instead of a module: the head has to be rebuilt identically from a run's
``config.json`` before its weights are loaded, so its shape lives in plain data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from torch import nn


@dataclass(frozen=True)
class HeadSpec:
    """``hidden == 0``: one Linear layer; ``hidden > 0``: Linear-ReLU-Dropout-Linear.

    ``dropout`` with ``hidden == 0`` puts a Dropout in front of the single Linear layer.
    """

    hidden: int = 0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if int(self.hidden) < 0:
            raise ValueError(f"head hidden size must be >= 0, got {self.hidden}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"head dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> HeadSpec:
        """Unknown keys are ignored so that older/newer configs still load."""
        d = d or {}
        return cls(hidden=int(d.get("hidden", 0)), dropout=float(d.get("dropout", 0.0)))

    @classmethod
    def coerce(cls, spec: HeadSpec | dict[str, Any] | None) -> HeadSpec:
        if spec is None:
            return cls()
        if isinstance(spec, HeadSpec):
            return spec
        if isinstance(spec, dict):
            return cls.from_dict(spec)
        raise TypeError(f"head must be a HeadSpec, a dict or None, not {type(spec).__name__}")


def build_head(spec: HeadSpec, num_features: int, num_classes: int) -> nn.Module:
    """A freshly initialised head mapping ``[N, num_features]`` to ``[N, num_classes]`` logits."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if spec.hidden > 0:
        return nn.Sequential(
            nn.Linear(num_features, spec.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(spec.dropout),
            nn.Linear(spec.hidden, num_classes),
        )
    if spec.dropout > 0:
        return nn.Sequential(nn.Dropout(spec.dropout), nn.Linear(num_features, num_classes))
    return nn.Linear(num_features, num_classes)
