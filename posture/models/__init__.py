"""The model zoo: every backbone by name, split into pooled features + a small trainable head.

``build_model("efficientnet_lite0", 2)`` is the offline default; ``list_models()`` names all
torchvision classifiers, the EfficientNet-Lite family and the classic paper networks.
"""

from posture.models.classifier import Backbone, PostureClassifier
from posture.models.heads import HeadSpec, build_head
from posture.models.registry import (build_model, get_preprocessing, has_pretrained, list_models,
                                     model_from_config, suggest_models, weights_fingerprint)
from posture.models.weights import WeightsUnavailableError

__all__ = ["Backbone", "HeadSpec", "PostureClassifier", "WeightsUnavailableError", "build_head", "build_model",
           "get_preprocessing", "has_pretrained", "list_models", "model_from_config", "suggest_models",
           "weights_fingerprint"]
