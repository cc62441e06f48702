"""A run's checkpoints seen from the trainer: what goes into one, writing it for every rank, and
putting a continued run's optimiser, schedule, grad scaler and RNG states back.

The files themselves (names, atomic writes, finding the latest) are ``engine.checkpoint``'s.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, Optional

from resnet3d.engine import checkpoint as ckpt
from resnet3d.engine.carried_settings import successor_schedule_state
from resnet3d.engine.distributed import DistInfo, broadcast_object
from resnet3d.engine.messages import warn
from resnet3d.engine.model_start import Start, arch_name
from resnet3d.engine.optim import load_optimizer_state
from resnet3d.engine.run_state import Run
from resnet3d.engine.schedules import Schedule
from resnet3d.errors import UserError


def checkpoint_payload(state: Run, epoch: int, best: float, step_in_epoch: int = 0,
                       partial: Optional[Dict[str, float]] = None) -> Dict[str, Any]:
    """Everything a continued run needs; every rank calls this (RNG states are gathered)."""
    rng = ckpt.rng_state()
    rng_states = [rng]
    if state.info.distributed:
        import torch.distributed as dist

        rng_states = [None] * state.info.world_size
        dist.all_gather_object(rng_states, rng)
    model_config = state.model.model_config
    payload = {
        "epoch": epoch,
        "arch": arch_name(model_config),
        "model_config": model_config,
        "state_dict": state.model.state_dict(),
        "optimizer": state.parts.optimizer.state_dict() if state.parts.optimizer is not None else None,
        "scheduler": state.schedule.state_dict() if state.schedule is not None else None,
        "scaler": state.parts.scaler.state_dict() if state.parts.scaler is not None else None,
        "config": state.config.to_dict(),
        "class_names": list(state.class_names),
        "input_norm": state.config.data.input_norm.to_dict(),
        "sample_size": state.config.data.sample_size,
        "sample_duration": state.config.data.sample_duration,
        "rng_state": rng,
        "rng_states": rng_states,
        "best_metric": None if best == -math.inf else best,
        "world_size": state.info.world_size,
    }
    if step_in_epoch:
        payload["step_in_epoch"] = step_in_epoch
        payload["partial_sums"] = dict(partial or {})
    return payload


def save_from_rank0(state: Run, path: Path, payload: Dict[str, Any]) -> None:
    """Rank 0 writes; every rank learns whether it could (a full disk stops them all at once,
    instead of leaving the others waiting in their next collective)."""
    failure: Optional[str] = None
    if state.info.is_main:
        try:
            ckpt.save_checkpoint(path, payload)
        except UserError as error:
            failure = f"{error}; then --resume auto continues from the last checkpoint this run wrote, if any"
    if state.info.distributed:
        failure = broadcast_object(failure)
        if failure and not state.info.is_main:
            failure = "stopped: rank 0 could not write its checkpoint (its error says why)"
    if failure:
        raise UserError(failure)


def restore_training_state(start: Start, optimizer, schedule: Schedule, scaler, info: DistInfo) -> None:
    carried = start.ours
    if carried.get("optimizer"):
        try:
            load_optimizer_state(optimizer, _one_group(carried["optimizer"], optimizer))
        except (ValueError, KeyError) as error:
            start.notes.append(f"the optimizer state of {start.source} does not fit ({error}); momentum restarts")
            warn(info, start.notes[-1])
    if carried.get("foreign"):
        theirs = successor_schedule_state(carried.get("scheduler"), schedule.name, schedule.values(start.epoch)[0])
        if theirs is not None:
            schedule.load_state_dict(theirs)
        else:
            warn(info, f"{start.source} is a {carried['foreign']} checkpoint: its learning-rate schedule state is not "
                       "carried over; the schedule follows the flags from the continued epoch on")
        return
    if carried.get("scheduler"):
        schedule.load_state_dict(carried["scheduler"])
    if scaler is not None and carried.get("scaler"):
        scaler.load_state_dict(carried["scaler"])


def _one_group(saved: Dict[str, Any], optimizer) -> Dict[str, Any]:
    """The successor's fine-tuning optimiser holds one group per parameter; ours holds one group.
    Same parameters in the same order: merge its groups so momentum carries over."""
    groups = saved.get("param_groups", [])
    if len(groups) <= 1 or len(optimizer.param_groups) != 1:
        return saved
    params = [index for group in groups for index in group["params"]]
    merged = {key: value for key, value in groups[0].items() if key != "params"}
    merged["params"] = params
    return {"state": saved.get("state", {}), "param_groups": [merged]}


def restore_rng(start: Start, info: DistInfo) -> None:
    states = start.ours.get("rng_states")
    state = states[info.rank] if states and len(states) == info.world_size else start.ours.get("rng_state")
    if state:
        ckpt.set_rng_state(state)
