"""``--precision``: which dtype autocast uses (the one rule for training, benchmarks, recognition)."""
from __future__ import annotations

from typing import Optional

import torch

from resnet3d.errors import UserError

NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}

# bf16 convolutions run in cuDNN from compute capability 8 (Ampere) on; on older GPUs torch skips
# cuDNN for them (``ConvParams::use_cudnn``: ``supportsBFloat16ConvolutionWithCuDNNv8`` wants
# major >= 8) and falls back to its own slow kernels, though bf16 tensors work there.
BF16_CONV_MIN_CAPABILITY = 8


def autocast_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """auto: bf16 on a CUDA GPU that convolves in bf16 natively (Ampere or later), full precision
    elsewhere (the CPU, older GPUs: pass fp16 there for tensor cores); None means no autocast."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" and native_bf16(device) else None
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise UserError("--precision fp16 needs CUDA; use bf16 or fp32 on the CPU")
        return torch.float16
    raise UserError(f"--precision {precision!r}: choose auto, bf16, fp16 or fp32")


def native_bf16(device: torch.device) -> bool:
    """True when the CUDA ``device`` runs bf16 convolutions in cuDNN."""
    return torch.cuda.get_device_capability(device)[0] >= BF16_CONV_MIN_CAPABILITY
