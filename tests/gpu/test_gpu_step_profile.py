"""``bench train --profile`` on CUDA: the kernels' device time, each counted once."""
from __future__ import annotations

import time

import torch

from gpu_helpers import record, requires_cuda

from resnet3d.bench.step_profile import profile_step


@requires_cuda
def test_kernel_time_is_counted_once_and_fits_in_the_steps_wall_time():
    """The operators that launch kernels report their kernels' time as their own: summed with the
    kernels it would double. Kernels on one stream cannot take longer than the wall clock."""
    from resnet3d.models import create_model

    device = torch.device("cuda")
    model = create_model("resnet", 10, n_classes=8).to(device).to(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(8, 3, 8, 64, 64, device=device).to(memory_format=torch.channels_last_3d)
    y = torch.randint(0, 8, (8,), device=device)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    profile = profile_step(step, device, steps=5)
    wall_ms = (time.perf_counter() - start) * 1000 / 5
    record("step_profile_cuda", profiled_ms_per_step=profile["profiled_ms_per_step"], wall_ms_per_step=wall_ms,
           by_kind=profile["by_kind"], top=profile["top"][:5])
    assert profile["timing"] == "device time of each CUDA kernel"
    assert 0 < profile["profiled_ms_per_step"] <= wall_ms * 1.05
    assert profile["by_kind"].get("convolution", 0) > 0
