"""The model zoo: every family of the seed and the successor, behind one registry.

Importing this package registers the families; use ``create_model`` and ``list_models``.
"""
from __future__ import annotations

# Importing a family module registers it; the order here is the order of list_models().
from resnet3d.models import resnet, preresnet, wideresnet, resnext, resnet2p1d, densenet, c3d  # noqa: F401
from resnet3d.models.base import VideoClassifier
from resnet3d.models.registry import MODELS, create_model, list_models, model_options, parse_arch

__all__ = ["MODELS", "VideoClassifier", "create_model", "list_models", "model_options", "parse_arch"]
