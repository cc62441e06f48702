"""``--precision``: which dtype autocast uses (the one rule for training, benchmarks, recognition)."""
from __future__ import annotations

from typing import Optional

import torch

from resnet3d.errors import UserError

NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}


def autocast_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """auto: bf16 on CUDA and full precision elsewhere; None means no autocast."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise UserError("--precision fp16 needs CUDA; use bf16 or fp32 on the CPU")
        return torch.float16
    raise UserError(f"--precision {precision!r}: choose auto, bf16, fp16 or fp32")
