"""resnet3d: 3D ResNets for action recognition.

The package imports lazily so that ``resnet3d --help`` and light subcommands do not pay for torch.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["create_model", "list_models", "__version__"]


def __getattr__(name: str):
    # PEP 562 lazy attributes: the model registry imports torch.
    if name in ("create_model", "list_models"):
        from resnet3d import models

        return getattr(models, name)
    raise AttributeError(f"module 'resnet3d' has no attribute {name!r}")
