"""A GPU that runs out of memory, said as one line with the flags that fix it.

torch raises ``torch.cuda.OutOfMemoryError`` with a paragraph (what it tried to allocate, the
card's capacity, what this process and the caching allocator hold, a hint about
``PYTORCH_CUDA_ALLOC_CONF``) from deep inside a step, under a traceback. Training, validation,
recognition and ``classify`` turn it into a line that says what was running (batch and clip size),
torch's first three sentences, and what to change; where the work done so far can be kept, their
callers keep it first (an interrupted epoch, the results saved so far).
"""
from __future__ import annotations

import re
from typing import Optional

import torch

from resnet3d.errors import UserError


def ran_out(error: BaseException) -> bool:
    """Whether ``error`` is the GPU's out of memory (torch's own type for it)."""
    return isinstance(error, torch.cuda.OutOfMemoryError)


def torch_summary(error: BaseException) -> str:
    """torch's first three sentences: out of memory, what it tried to allocate, the card's capacity
    and what it had free (the rest, about the caching allocator, is for tuning it)."""
    text = " ".join(str(error).split())
    sentences = re.split(r"(?<=\.) (?=[A-Z])", text)
    return " ".join(sentences[:3]).rstrip(".")


def out_of_memory_line(error: BaseException, doing: str, fix: str) -> Optional[str]:
    """The one line for a GPU out of memory while ``doing`` (e.g. "training batches of 64 clips of
    16x112x112 per process"), ending with ``fix``; None for any other error."""
    return line_from_summary(torch_summary(error), doing, fix) if ran_out(error) else None


def line_from_summary(summary: str, doing: str, fix: str) -> str:
    """``out_of_memory_line`` from torch's ``torch_summary``, kept where the error itself is not:
    its traceback holds the frames, and with them the tensors, of the step that failed."""
    return f"the GPU ran out of memory {doing} ({summary}): {fix}; if another program holds the GPU's memory, nvidia-smi shows it"


def out_of_memory_error(error: BaseException, doing: str, fix: str) -> Optional[UserError]:
    """``out_of_memory_line`` as the UserError the command says; None for any other error."""
    line = out_of_memory_line(error, doing, fix)
    return None if line is None else UserError(line)


def describe_clips(batch: int, duration: int, size: int) -> str:
    """'64 clips of 16x112x112' for the lines above."""
    return f"{batch} clip{'s' if batch != 1 else ''} of {duration}x{size}x{size}"


__all__ = ["describe_clips", "line_from_summary", "out_of_memory_error", "out_of_memory_line", "ran_out", "torch_summary"]
