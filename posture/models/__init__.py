"""The model zoo: every feature extractor by name, split into features + a small trainable head.

``build_model("pose", 2)`` reads posture geometry from BlazePose landmarks; CNN names
(``efficientnet_lite0``, every torchvision classifier, the classic paper networks) read pixels;
``<cnn>+pose`` fuses both. ``list_models()`` names them all.
"""

from posture.models.classifier import Backbone, FeatureNorm, PostureClassifier
from posture.models.heads import HeadSpec, build_head
from posture.models.registry import (
    POSE,
    ExtractorParts,
    build_model,
    extractor_parts,
    get_preprocessing,
    has_pretrained,
    list_models,
    model_from_config,
    suggest_models,
    weights_fingerprint,
)
from posture.models.weights import WeightsUnavailableError

# Imported for what they do at import: each family registers its names (registry.register_family).
from posture.models import classic_family, efficientnet_lite, torchvision_family  # noqa: F401  isort: skip

__all__ = [
    "Backbone",
    "ExtractorParts",
    "FeatureNorm",
    "HeadSpec",
    "POSE",
    "PostureClassifier",
    "WeightsUnavailableError",
    "build_head",
    "build_model",
    "extractor_parts",
    "get_preprocessing",
    "has_pretrained",
    "list_models",
    "model_from_config",
    "suggest_models",
    "weights_fingerprint",
]
