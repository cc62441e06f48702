"""What a training process's epochs work on (``Run``), built once by ``run_setup.set_up_run``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

import torch
from torch import nn

from resnet3d.config import Config
from resnet3d.engine.distributed import DistInfo
from resnet3d.engine.loop import StepParts
from resnet3d.engine.model_start import Start
from resnet3d.engine.result_folder import FolderChanges
from resnet3d.engine.schedules import Schedule


@dataclass
class Run:
    """What the epochs need, built once by ``set_up_run``."""

    config: Config
    info: DistInfo
    device: torch.device
    model: nn.Module  # the bare model (what checkpoints hold)
    parts: StepParts
    schedule: Optional[Schedule]
    start: Start
    class_names: List[str]
    train_loader: Any = None
    val_loader: Any = None
    val_targets: Optional[torch.Tensor] = None
    # annotation class index -> the model's output index (-1: a class the model does not know),
    # when an evaluated checkpoint orders its classes differently from the annotation
    val_target_map: Optional[torch.Tensor] = None
    folder_changes: FolderChanges = field(default_factory=FolderChanges)


def steps_per_epoch(state: Run) -> int:
    steps = len(state.train_loader)
    cap = state.config.run.max_steps_per_epoch
    return min(steps, cap) if cap else steps
