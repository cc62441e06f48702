"""The last steps of the input pipeline, run on the device for the whole batch.

Workers hand over uint8 ``(N, T, H, W, C)``; ``DeviceTransform`` turns it into the model's float
``(N, C, T, H, W)`` with channels_last_3d strides (a permute, no copy), after a per-sample random
horizontal flip and colour jitter when training, and the ``InputNorm`` multiply-add. Doing this
on the GPU costs microseconds per batch, where the originals spent milliseconds per frame in
PIL and float tensors in the workers.

The flip and jitter are *drawn* per item by the dataset (``draw_augmentation``, from the item's
``(seed, epoch, index)``) and travel in the batch as ``"flip"`` and ``"jitter"``: a clip is
flipped the same way whichever batch, worker or process loads it, so a run on 8 processes
augments exactly as one process with the same global batch does.
"""
from __future__ import annotations

import math
import random
from typing import Dict, Optional, Sequence, Tuple

import torch

from resnet3d.normalization import InputNorm

_GRAY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's grayscale


class DeviceTransform:
    """uint8 clips on the device -> normalised float model input.

    - ``train``: enables the random flip (if ``hflip``) and colour jitter (if ``colorjitter``);
      evaluation applies normalisation only.
    - ``jitter_strength``: (brightness, contrast, saturation, hue); each sample's factors lie in
      [1 - s, 1 + s] (hue: a shift in [-h, h] of a full turn) and apply to all its frames, like
      the originals' per-clip parameters.
    - ``flow``: clips hold 2 channels (x, y flow as 0..255); a flip also mirrors the x component.
    - A call takes the batch's own draws, ``flip`` (N,) bool and ``jitter`` (N, 4) factors, as
      the training dataset's items carry them. Without them it draws its own, from ``generator``
      (a ``torch.Generator`` on the clips' device) for reproducible draws.
    """

    def __init__(
        self,
        norm: InputNorm,
        *,
        train: bool = False,
        hflip: bool = True,
        colorjitter: bool = False,
        jitter_strength: Sequence[float] = (0.4, 0.4, 0.4, 0.1),
        flow: bool = False,
        out_dtype: torch.dtype = torch.float32,
    ) -> None:
        self.norm = norm
        self.train = train
        self.hflip = hflip and train
        self.colorjitter = colorjitter and train and not flow
        self.jitter_strength = tuple(float(s) for s in jitter_strength)
        self.flow = flow
        self.out_dtype = out_dtype
        self._cache: dict = {}

    @classmethod
    def from_config(cls, cfg, train: bool, out_dtype: torch.dtype = torch.float32) -> "DeviceTransform":
        """The transform a ``DataConfig`` asks for (training or evaluation)."""
        return cls(
            cfg.input_norm,
            train=train,
            hflip=cfg.hflip,
            colorjitter=cfg.colorjitter,
            jitter_strength=cfg.jitter_strength,
            flow=cfg.input_type == "flow",
            out_dtype=out_dtype,
        )

    def _affine(self, channels: int, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
        key = (channels, str(device))
        if key not in self._cache:
            a, b = self.norm.scale_and_shift()
            shape = (1, channels, 1, 1, 1)
            # flow uses the first two channels' statistics, as the successor's Normalize does
            self._cache[key] = (
                torch.tensor(a[:channels], dtype=torch.float32, device=device).view(shape),
                torch.tensor(b[:channels], dtype=torch.float32, device=device).view(shape),
            )
        return self._cache[key]

    def __call__(
        self,
        clips: torch.Tensor,
        generator: Optional[torch.Generator] = None,
        *,
        flip: Optional[torch.Tensor] = None,
        jitter: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        if clips.dim() != 5 or clips.dtype != torch.uint8:
            raise ValueError(f"expected uint8 clips (N, T, H, W, C), got {tuple(clips.shape)} {clips.dtype}")
        n, channels = clips.shape[0], clips.shape[-1]
        if self.hflip:
            if flip is None:
                flip = torch.rand(n, device=clips.device, generator=generator) < 0.5
            clips = self._flip(clips, flip.to(clips.device, torch.bool))
        x = clips.permute(0, 4, 1, 2, 3).float()  # (N, C, T, H, W), channels_last_3d strides
        if self.colorjitter and channels == 3:
            if jitter is None:
                u = torch.rand(n, 4, device=x.device, generator=generator) * 2 - 1  # uniform in [-1, 1)
                jitter = jitter_factors(u, self.jitter_strength)
            # with a hue strength the shifts are drawn non-zero: rotate without looking at them
            rotate_hue = True if self.jitter_strength[3] != 0 else None
            x = color_jitter(x, jitter.to(x.device, x.dtype), rotate_hue=rotate_hue)
        a, b = self._affine(channels, x.device)
        x = torch.addcmul(b, x, a)
        return x.to(self.out_dtype).contiguous(memory_format=torch.channels_last_3d)

    def _flip(self, clips: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        mask = flip.view(-1, 1, 1, 1, 1)
        flipped = clips.flip(3)  # (N, T, H, W, C): W is dim 3
        if self.flow:
            # mirroring the image reverses horizontal motion: x-flow 0..255 around 128 -> 255 - x
            flipped = flipped.clone()
            flipped[..., 0] = 255 - flipped[..., 0]
        return torch.where(mask, flipped, clips)


def jitter_factors(u: torch.Tensor, strength: Sequence[float]) -> torch.Tensor:
    """Uniform draws in [-1, 1), (..., 4) -> jitter factors (..., 4): brightness, contrast and
    saturation multipliers 1 + u * s (at least 0) and the hue shift u * h (in turns)."""
    s = torch.tensor(tuple(strength), dtype=u.dtype).to(u.device, non_blocking=True)
    factors = (1 + u * s).clamp(min=0)
    factors[..., 3] = u[..., 3] * s[3]  # hue is a shift, not a factor
    return factors


def draw_augmentation(rng: random.Random, jitter_strength: Sequence[float]) -> Tuple[bool, torch.Tensor]:
    """One training clip's flip (p = 0.5) and jitter factors (4,), from the clip's own generator.
    Both are always drawn, in this order, so that turning one on does not change the other."""
    flip = rng.random() < 0.5
    u = torch.tensor([rng.uniform(-1.0, 1.0) for _ in range(4)], dtype=torch.float32)
    return flip, jitter_factors(u, jitter_strength)


def color_jitter(x: torch.Tensor, factors: torch.Tensor, rotate_hue: Optional[bool] = None) -> torch.Tensor:
    """Colour jitter of float clips in 0..255, ``x`` (N, 3, T, H, W), per-sample ``factors``
    (N, 4) = brightness, contrast, saturation (multipliers) and hue (shift, in turns).

    Brightness, contrast and saturation follow torchvision's definitions (contrast blends with
    each frame's mean grey level); hue rotates the chroma plane in YIQ space, a close and much
    cheaper stand-in for an HSV hue shift. Applied in this fixed order.

    ``rotate_hue`` None skips the rotation when every shift is 0, which only the CPU checks:
    on a GPU, reading the shifts would make the host wait for every kernel queued before them,
    so there it rotates (a rotation by 0 leaves the colours as they are, up to rounding).
    """
    n = x.shape[0]
    view = lambda v: v.view(n, 1, 1, 1, 1)  # noqa: E731
    gray_w = _constants(x.device, x.dtype)["gray"]
    x = (x * view(factors[:, 0])).clamp_(0, 255)
    mean = (x * gray_w).sum(1, keepdim=True).mean(dim=(3, 4), keepdim=True)  # (N, 1, T, 1, 1)
    x = (mean + view(factors[:, 1]) * (x - mean)).clamp_(0, 255)
    gray = (x * gray_w).sum(1, keepdim=True)
    x = (gray + view(factors[:, 2]) * (x - gray)).clamp_(0, 255)
    hue = factors[:, 3]
    if rotate_hue is None:
        rotate_hue = x.device.type != "cpu" or bool((hue != 0).any())
    if rotate_hue:
        x = _rotate_hue(x, hue).clamp_(0, 255)
    return x


_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.595716, -0.274453, -0.321263), (0.211456, -0.522591, 0.311135))

# (device, dtype) -> the colour constants there. Made once: creating a tensor on a GPU from
# Python numbers (and inverting a matrix there) makes the host wait for the queued kernels.
_CONSTANTS: Dict[Tuple[str, torch.dtype], Dict[str, torch.Tensor]] = {}


def _constants(device: torch.device, dtype: torch.dtype) -> Dict[str, torch.Tensor]:
    key = (str(device), dtype)
    if key not in _CONSTANTS:
        to_yiq = torch.tensor(_RGB_TO_YIQ, dtype=torch.float64)
        _CONSTANTS[key] = {
            "gray": torch.tensor(_GRAY, dtype=dtype).view(1, 3, 1, 1, 1).to(device),
            "to_yiq": to_yiq.to(device, dtype),
            "to_rgb": torch.linalg.inv(to_yiq).to(device, dtype),
        }
    return _CONSTANTS[key]


def _rotate_hue(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    constants = _constants(x.device, x.dtype)
    angle = -turns * (2 * math.pi)  # YIQ chroma turns the other way round from HSV hue
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(x.shape[0], 3, 3, device=x.device, dtype=x.dtype)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2] = cos, -sin
    rot[:, 2, 1], rot[:, 2, 2] = sin, cos
    matrix = constants["to_rgb"] @ rot @ constants["to_yiq"]  # (N, 3, 3)
    return torch.einsum("nij,njthw->nithw", matrix, x)
