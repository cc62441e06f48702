"""torch's out of memory on a real card: the type and the words that ``resnet3d.engine.gpu_memory``
turns into one line (the CPU tests raise torch's type with a text copied from torch)."""
from __future__ import annotations

import pytest
import torch

from gpu_helpers import record, requires_cuda
from resnet3d.engine.gpu_memory import out_of_memory_line, ran_out, torch_summary

pytestmark = requires_cuda


def test_a_real_out_of_memory_is_told_and_summarised():
    with pytest.raises(RuntimeError) as caught:
        torch.empty(1 << 50, dtype=torch.uint8, device="cuda")  # a pebibyte: more than any card holds
    assert ran_out(caught.value)
    summary = torch_summary(caught.value)
    record("out_of_memory_summary", summary=summary)
    assert summary.startswith("CUDA out of memory. Tried to allocate") and "total capacity" in summary
    assert "PYTORCH_CUDA_ALLOC_CONF" not in summary  # (the allocator's tuning hint stays out)
    assert out_of_memory_line(caught.value, "at batches of 1 clip", "lower --batch_size").endswith("nvidia-smi shows it")
    torch.cuda.empty_cache()
