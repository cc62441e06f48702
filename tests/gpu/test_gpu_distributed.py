"""DDP and SyncBatchNorm on the one GPU this machine has, through the engine's launcher
(``launch_local``, what ``--nproc-per-node`` uses) and ``train_one_epoch``.

NCCL refuses two ranks on the same GPU ("Duplicate GPU detected"), and the trainer gives every
process its own GPU (``--gpu_id`` + local rank), so on one GPU the multi-process run that exists
is the engine's parts with gloo over CUDA tensors: two processes on cuda:0, DDP, SyncBatchNorm
(gloo gathers its statistics), ``all_sum`` and ``any_rank`` over CUDA tensors, and
``init_process_group`` binding the group to the device. NCCL itself runs as a group of one.

The check: two processes with SyncBatchNorm, each with half of every batch, must end with the
weights of one process that trains on the whole batches with plain BatchNorm (DDP averages the
gradients; SyncBatchNorm normalises with the whole batch's statistics). Both sides run in
float32 without TF32, so they differ by float rounding only, under 1e-5 after two steps. The
same two processes with plain BatchNorm normalise each half with its own statistics and end
far from it, which shows the comparison can tell.
"""
from __future__ import annotations

import pytest
import torch

from gpu_dist_workers import (
    GLOBAL_BATCH,
    STEPS,
    global_batches,
    gloo_two_processes,
    nccl_one_process,
    tiny_model,
    train,
)
from gpu_helpers import max_difference, record, requires_cuda

from resnet3d.engine.distributed import DistInfo, launch_local

pytestmark = [requires_cuda, pytest.mark.slow]

TOLERANCE = 1e-4  # on weights of size ~0.1 to 1; float rounding measured ~1e-6 (see record)


@pytest.fixture(scope="module")
def reference():
    """One process, plain BatchNorm, the whole global batches, float32 without TF32."""
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        batches = [{key: value.pin_memory() for key, value in batch.items()} for batch in global_batches()]
        return train(tiny_model(sync_bn=False), batches, DistInfo())
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


def _same_run(got, want, test):
    difference = max_difference(got["state_dict"], want["state_dict"])
    record(test, max_abs_weight_difference=difference, loss=got["loss"], reference_loss=want["loss"])
    assert got["nonfinite"] is None and got["count"] == want["count"] == STEPS * GLOBAL_BATCH
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-4)
    assert difference <= TOLERANCE, difference
    return difference


def test_two_processes_with_sync_batchnorm_over_gloo_match_one_process(tmp_path, reference):
    returned = launch_local(2, gloo_two_processes, str(tmp_path))
    assert returned == {0: 0, 1: 0}
    ranks = [torch.load(tmp_path / f"gloo_rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    for rank in ranks:
        assert rank["world_size"] == 2 and rank["backend"] == "gloo"
        assert rank["sync_bn_layers"] == ["SyncBatchNorm"] and rank["plain_bn_layers"] == ["BatchNorm3d"]
        assert rank["from_rank_0"] == {"rank": 0} and rank["any_rank"] is True
    # DDP keeps the replicas equal, buffers (SyncBatchNorm's global running statistics) too
    assert max_difference(ranks[0]["sync_bn"]["state_dict"], ranks[1]["sync_bn"]["state_dict"]) <= 1e-6
    synced = _same_run(ranks[0]["sync_bn"], reference, "ddp_gloo_sync_bn_vs_one_process")
    apart = max_difference(ranks[0]["plain_bn"]["state_dict"], reference["state_dict"])
    record("ddp_gloo_plain_bn_vs_one_process", max_abs_weight_difference=apart)
    assert apart > 10 * max(synced, TOLERANCE), (apart, synced)


def test_one_process_nccl_group_trains_with_sync_batchnorm(tmp_path, reference):
    assert launch_local(1, nccl_one_process, str(tmp_path)) == {0: 0}
    saved = torch.load(tmp_path / "nccl_rank0.pt", weights_only=True)
    assert saved["backend"] == "nccl" and saved["world_size"] == 1 and saved["layers"] == ["SyncBatchNorm"]
    assert torch.equal(saved["all_reduce"], torch.arange(4, dtype=torch.float32))
    _same_run(saved["sync_bn"], reference, "ddp_nccl_one_process_vs_plain")
