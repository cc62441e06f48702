"""What every model of the zoo offers, whatever its family.

Fine-tuning, feature extraction and checkpoint code use only this interface, so they never branch
on the model's name (the successor's ``if model_name == 'densenet'``).
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, Optional

import torch
from torch import nn


class VideoClassifier(nn.Module):
    """A clip classifier: ``(N, C, T, H, W)`` float input -> ``(N, n_classes)`` logits.

    Subclasses implement ``forward_features`` (pooled features, ``(N, F)``) and name their final
    linear layer in ``classifier_name``. ``create_model`` records the arguments that built the
    model in ``model_config``.
    """

    classifier_name: str = "fc"

    def __init__(self) -> None:
        super().__init__()
        self._model_config: Optional[Dict[str, Any]] = None

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.get_classifier()(self.forward_features(x))

    def get_classifier(self) -> nn.Linear:
        return getattr(self, self.classifier_name)

    @property
    def num_features(self) -> int:
        """Length of the feature vector that ``forward_features`` returns."""
        return self.get_classifier().in_features

    def reset_classifier(self, n_classes: int) -> None:
        """Replace the final linear layer by a fresh one with ``n_classes`` outputs.

        The new layer has PyTorch's default initialisation, as the successor's fine-tuning does,
        and lives on the old layer's device and dtype.
        """
        if int(n_classes) < 1:
            raise ValueError(f"n_classes must be at least 1, got {n_classes}")
        old = self.get_classifier()
        new = nn.Linear(old.in_features, int(n_classes), device=old.weight.device, dtype=old.weight.dtype)
        setattr(self, self.classifier_name, new)
        if self._model_config is not None:
            self._model_config["n_classes"] = int(n_classes)

    @property
    def model_config(self) -> Dict[str, Any]:
        """The ``create_model`` arguments that rebuild this model exactly (a copy)."""
        if self._model_config is None:
            raise AttributeError(
                f"{type(self).__name__} was not built by resnet3d.create_model, so it has no model_config"
            )
        return dict(self._model_config)


def holds_values(module: nn.Module) -> bool:
    """False for a model built on the meta device (shapes only, ``engine.model_start``): there is
    nothing to initialise, and torch's meta ``normal_``/``fill_`` import its compiler stack
    (torch._dynamo, sympy: about a second of CPU in every process that checks a clip's shape)."""
    weight = getattr(module, "weight", None)
    return not (isinstance(weight, torch.Tensor) and weight.is_meta)


def init_conv_bn(modules: Iterable[nn.Module]) -> None:
    """The successor's initialisation: He-normal (fan_out, ReLU) convs, BN weight 1 and bias 0."""
    for module in modules:
        if not holds_values(module):
            continue
        if isinstance(module, nn.Conv3d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            nn.init.constant_(module.weight, 1)
            nn.init.constant_(module.bias, 0)
