"""The processes of tests/gpu/test_gpu_distributed.py, started by ``resnet3d.engine.distributed.
launch_local`` (torch's elastic launcher, as ``--nproc-per-node`` does): module-level functions,
pickled into each worker by name. Each trains the same tiny model on its share of the same
global batches with ``engine.loop.train_one_epoch`` and saves what it ended with."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch
from torch import nn

CUDA = torch.device("cuda", 0)
STRENGTH = (0.4, 0.4, 0.4, 0.1)
GLOBAL_BATCH = 8
STEPS = 2
LR = 0.05


def full_float32() -> None:
    """No TF32: the comparisons between process counts are at float32 rounding."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def global_batches(seed: int = 0) -> List[Dict[str, torch.Tensor]]:
    """STEPS global batches of rendered motion clips (uint8 8x32x32) with their per-clip draws."""
    from resnet3d.data.device import draw_augmentation
    from resnet3d.synthetic import render_video

    rng = np.random.default_rng(seed)
    batches = []
    for step in range(STEPS):
        targets = [(step + i) % 4 for i in range(GLOBAL_BATCH)]
        clips = np.stack([render_video(target, 8, (32, 32), rng) for target in targets])
        draws = [draw_augmentation(random.Random(seed * 1000 + step * 100 + i), STRENGTH) for i in range(GLOBAL_BATCH)]
        batches.append({"clip": torch.from_numpy(clips), "target": torch.tensor(targets),
                        "flip": torch.tensor([f for f, _ in draws]), "jitter": torch.stack([j for _, j in draws])})
    return batches


def shard(batch: Dict[str, torch.Tensor], rank: int, world_size: int) -> Dict[str, torch.Tensor]:
    """This rank's consecutive share of a global batch, pinned as the loader hands it over."""
    size = len(batch["target"]) // world_size
    return {key: value[rank * size:(rank + 1) * size].contiguous().pin_memory() for key, value in batch.items()}


def tiny_model(sync_bn: bool) -> nn.Module:
    """The same initial weights in every process (and in the test's reference)."""
    from resnet3d.models import create_model

    torch.manual_seed(0)
    model = create_model("resnet", 10, widen_factor=0.25, n_classes=4).to(CUDA)
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model.to(memory_format=torch.channels_last_3d)


def batchnorm_kinds(model: nn.Module) -> List[str]:
    return sorted({type(m).__name__ for m in model.modules() if "BatchNorm" in type(m).__name__})


def train(model: nn.Module, batches, info, stepped: nn.Module = None) -> Dict[str, Any]:
    """One epoch of ``batches`` through the engine's loop; what it reports and the weights after."""
    from resnet3d.config import OptimConfig
    from resnet3d.data.device import DeviceTransform
    from resnet3d.engine.loop import StepParts, train_one_epoch
    from resnet3d.engine.schedules import build_schedule
    from resnet3d.normalization import KINETICS

    optim = OptimConfig(learning_rate=LR, lr_scheduler="constant")
    parts = StepParts(model=stepped if stepped is not None else model, eval_model=model,
                      optimizer=torch.optim.SGD(model.parameters(), lr=LR, momentum=optim.momentum),
                      scaler=None, device=CUDA, amp_dtype=None,
                      train_transform=DeviceTransform(KINETICS, train=True, hflip=True, colorjitter=True,
                                                      jitter_strength=STRENGTH),
                      eval_transform=DeviceTransform(KINETICS), dist=info, channels_last=True)
    result = train_one_epoch(parts, batches, 1, build_schedule(optim, 1), len(batches), show_progress=False)
    return {"loss": result.loss, "acc": result.acc, "count": result.count, "nonfinite": result.nonfinite,
            "state_dict": {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}}


def gloo_two_processes(out_dir: str) -> int:
    """Two processes on the one GPU, joined by gloo over CUDA tensors: DDP with SyncBatchNorm,
    and the same without (to show that the comparison can tell them apart)."""
    from resnet3d.engine.distributed import (
        any_rank,
        broadcast_object,
        destroy_process_group,
        env_info,
        init_process_group,
    )

    info = env_info()
    torch.cuda.set_device(CUDA)
    full_float32()
    init_process_group(info, CUDA, backend="gloo")
    try:
        batches = [shard(batch, info.rank, info.world_size) for batch in global_batches()]
        saved: Dict[str, Any] = {"world_size": torch.distributed.get_world_size(),
                                 "backend": torch.distributed.get_backend()}
        for variant, sync_bn in (("sync_bn", True), ("plain_bn", False)):
            model = tiny_model(sync_bn)
            saved[f"{variant}_layers"] = batchnorm_kinds(model)
            ddp = nn.parallel.DistributedDataParallel(model, device_ids=[CUDA])
            saved[variant] = train(model, batches, info, ddp)
        saved["from_rank_0"] = broadcast_object({"rank": info.rank})
        saved["any_rank"] = any_rank(info.rank == 1, CUDA)
        torch.save(saved, Path(out_dir) / f"gloo_rank{info.rank}.pt")
    finally:
        destroy_process_group()
    return 0


def nccl_one_process(out_dir: str) -> int:
    """One process in an NCCL group (NCCL refuses two ranks on the same GPU): the group joined
    through the environment torchrun's launcher sets, as the engine joins it, then DDP with
    SyncBatchNorm trains; and one all_reduce through NCCL."""
    import torch.distributed as dist

    from resnet3d.engine.distributed import destroy_process_group, env_info

    info = env_info()
    torch.cuda.set_device(CUDA)
    full_float32()
    # The engine's init_process_group leaves a world of one alone; these are its arguments.
    dist.init_process_group(backend="nccl", rank=info.rank, world_size=info.world_size, device_id=CUDA)
    try:
        model = tiny_model(sync_bn=True)
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=[CUDA])
        batches = [{key: value.pin_memory() for key, value in batch.items()} for batch in global_batches()]
        summed = torch.arange(4, dtype=torch.float32, device=CUDA)
        dist.all_reduce(summed)
        torch.save({"backend": dist.get_backend(), "world_size": dist.get_world_size(),
                    "sync_bn": train(model, batches, info, ddp), "all_reduce": summed.cpu(),
                    "layers": batchnorm_kinds(model)},
                   Path(out_dir) / "nccl_rank0.pt")
    finally:
        destroy_process_group()
    return 0
