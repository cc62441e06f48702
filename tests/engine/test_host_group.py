"""The host-number reduction group: with an NCCL main group, the step's loss and accuracy (already
on the host) are summed over a gloo group of their own instead of a trip through the GPU.

NCCL needs GPUs; on the CPU the main group is gloo, so this real two-process run opens the host
group by hand and checks that ``all_sum`` routes host numbers through it, and device-side tensors
(validation's score sums on a GPU) would not. tests/gpu/ covers the NCCL case itself.
"""
import pytest
import torch
import torch.distributed as dist

from resnet3d.engine import distributed

pytestmark = pytest.mark.slow


def _worker() -> dict:
    info = distributed.env_info()
    distributed.init_process_group(info, torch.device("cpu"), backend="gloo")
    assert distributed._host_group is None  # a gloo main group reduces host numbers itself
    distributed.open_host_group()
    groups = []
    real_all_reduce = dist.all_reduce

    def recording_all_reduce(tensor, *args, group=None, **kwargs):
        groups.append(group)
        return real_all_reduce(tensor, *args, group=group, **kwargs)

    dist.all_reduce = recording_all_reduce
    try:
        totals = distributed.all_sum([info.rank + 1.0, 2.0], torch.device("cpu")).tolist()
        stop = distributed.any_rank(info.rank == 1, torch.device("cpu"))
    finally:
        dist.all_reduce = real_all_reduce
    used_host_group = [group is distributed._host_group for group in groups]
    backend = dist.get_backend(distributed._host_group)
    distributed.destroy_process_group()
    return {"totals": totals, "stop": stop, "used_host_group": used_host_group, "backend": backend,
            "closed": distributed._host_group is None}


def test_host_numbers_are_summed_over_the_host_group():
    results = distributed.launch_local(2, _worker)
    assert sorted(results) == [0, 1]
    for result in results.values():
        assert result["totals"] == [3.0, 4.0]  # 1 + 2 and 2 + 2: really summed over both ranks
        assert result["stop"] is True  # rank 1's flag reaches rank 0
        assert result["used_host_group"] == [True, True]
        assert result["backend"] == "gloo"
        assert result["closed"]
