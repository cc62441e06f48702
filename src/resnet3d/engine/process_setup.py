"""Before a training process sets up its run: how many processes this machine starts, which
device each one uses, and its seeds (with cuDNN's deterministic or fast algorithms)."""
from __future__ import annotations

import os
import random

import numpy as np
import torch

from resnet3d.config import Config
from resnet3d.engine.distributed import DistInfo
from resnet3d.engine.messages import warn
from resnet3d.errors import UserError


def processes_per_node(config: Config) -> int:
    """How many processes ``run`` starts on this machine."""
    hardware = config.hardware
    if hardware.nproc_per_node is not None:
        if hardware.nproc_per_node < 1:
            raise UserError(f"--nproc-per-node must be >= 1 (got {hardware.nproc_per_node})")
        return hardware.nproc_per_node
    if hardware.device == "cpu" or not torch.cuda.is_available():
        return 1
    visible = torch.cuda.device_count() - hardware.gpu_id
    if visible < 1:
        raise UserError(f"--gpu_id {hardware.gpu_id + 1}: only {torch.cuda.device_count()} GPU(s) are visible")
    if hardware.n_gpus is None:
        return visible
    if hardware.n_gpus > visible:
        raise UserError(f"--n_gpus {hardware.n_gpus}: only {visible} GPU(s) are visible from "
                        f"--gpu_id {hardware.gpu_id + 1}")
    return max(hardware.n_gpus, 1)


def resolve_device(config: Config, info: DistInfo) -> torch.device:
    hardware = config.hardware
    if hardware.device == "cpu":
        if (hardware.n_gpus or 0) > 1 and hardware.nproc_per_node is None:
            warn(info, f"--n_gpus {hardware.n_gpus} on the CPU (--no_cuda / --device cpu) runs one process; "
                       f"for {hardware.n_gpus} CPU processes pass --nproc-per-node {hardware.n_gpus}")
        return torch.device("cpu")
    if not torch.cuda.is_available():
        # "auto" picks quietly; a GPU that was asked for (--device cuda, --n_gpus, or `main`
        # without --no_cuda, as the originals trained on GPUs) falls back with one warning line.
        if hardware.device == "cuda" or hardware.n_gpus:
            asked = f" (--n_gpus {hardware.n_gpus})" if hardware.n_gpus else ""
            several = (f"; for {hardware.n_gpus} CPU processes pass --nproc-per-node {hardware.n_gpus}"
                       if (hardware.n_gpus or 0) > 1 and hardware.nproc_per_node is None else "")
            where = "in one process on the CPU" if several else "on the CPU"
            warn(info, f"CUDA is not available{asked}: running {where} (pass --no_cuda, or --device cpu to "
                       f"resnet3d train, to say so){several}")
        return torch.device("cpu")
    index = hardware.gpu_id + info.local_rank
    if index >= torch.cuda.device_count():
        raise UserError(f"process {info.local_rank} on this machine needs GPU {index}, but only "
                        f"{torch.cuda.device_count()} are visible; lower --nproc_per_node / --n_gpus")
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def seed_everything(seed: int, deterministic: bool, device: torch.device) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # On CUDA some backward kernels a 3D ResNet needs (adaptive average pooling) have no
        # deterministic version: torch then warns instead of stopping the run at its first step.
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
