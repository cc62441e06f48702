"""The model zoo: every family of the seed and the successor, behind one registry.

Importing this package registers the families; use ``create_model`` and ``list_models``.
"""
from __future__ import annotations

from resnet3d.models import resnet  # noqa: F401  (registers the family)
from resnet3d.models.base import VideoClassifier
from resnet3d.models.registry import MODELS, create_model, list_models, model_options, parse_arch

__all__ = ["MODELS", "VideoClassifier", "create_model", "list_models", "model_options", "parse_arch"]
