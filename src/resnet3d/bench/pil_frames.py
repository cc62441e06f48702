"""The originals' test-time transform of one frame, in PIL and float: what their data sets did to
every frame before the model saw it, and what the baselines of ``bench test`` and ``bench
classify`` re-enact.

PIL open + ``convert('RGB')``, ``Scale(size)`` (the shorter side to ``size``, bilinear),
``CenterCrop(size)``, ``ToTensor`` (float, scaled by the norm's value scale: 0-255 for the seed's
and the companion tool's ``norm_value`` 1), ``Normalize(mean, std)``.
"""
from __future__ import annotations

import numpy as np
import torch

from resnet3d.normalization import InputNorm


class PilFrameTransform:
    """One JPEG file -> its float (C, size, size) tensor, normalised as ``norm`` says."""

    def __init__(self, size: int, norm: InputNorm) -> None:
        self.size = size
        self.mean = torch.tensor(norm.mean).view(3, 1, 1)
        self.std = torch.tensor(norm.std).view(3, 1, 1)
        self.scale = norm.value_scale

    def __call__(self, path: str) -> torch.Tensor:
        from PIL import Image

        with Image.open(path) as image:
            image = image.convert("RGB")
            width, height = image.size
            if width < height:
                image = image.resize((self.size, int(self.size * height / width)), Image.BILINEAR)
            else:
                image = image.resize((int(self.size * width / height), self.size), Image.BILINEAR)
            width, height = image.size
            x0, y0 = int(round((width - self.size) / 2)), int(round((height - self.size) / 2))
            image = image.crop((x0, y0, x0 + self.size, y0 + self.size))
            tensor = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float().div(255) * self.scale
        return (tensor - self.mean) / self.std
