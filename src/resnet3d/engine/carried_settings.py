"""The optimisation settings a continued run takes from its checkpoint.

Neither original's continuation command repeats the learning rate: the successor restores it
with its optimiser and scheduler, the seed reads the run's lr.lua again. A continued run here
takes every optimisation setting it is not given again from the checkpoint's record of its run
(ours: the run's config; the successor's: its optimiser and scheduler state), and says so.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Dict, Optional

from resnet3d.config import Config, merge
from resnet3d.engine.model_start import Start


# The optimisation settings a continued run keeps from its checkpoint unless they are given again.
# Not the milestones: the schedule's own state keeps those unless --overwrite_milestones, as the
# successor's scheduler state does.
CARRIED_OPTIM = ("learning_rate", "momentum", "dampening", "weight_decay", "nesterov", "lr_scheduler",
                 "multistep_gamma", "plateau_patience", "plateau_factor", "warmup_epochs", "min_lr", "regimes")


def continued_optimisation(config: Config, loaded: Any, start: Start) -> Config:
    """A continued run trains on as the run it continues did: the optimisation settings that
    were not given again come from the checkpoint's record of its run. Neither original's
    continuation command names a learning rate (the successor restores it with its optimiser
    and scheduler, the seed reads the run's lr.lua again), and taking the defaults instead
    changed the rate silently (0.01 became 0.1 at the continued epoch). A setting given again
    that differs from the record is used, and said."""
    recorded = recorded_optimisation(loaded)
    if not recorded:
        return config  # nothing recorded (a seed .t7 holds weights only)
    optim, source = config.optim, loaded.describe_source()
    keys = [key for key in CARRIED_OPTIM if key in recorded]
    as_recorded = merge(config, {"optim": {key: recorded[key] for key in keys}}, source).optim  # (checks them)
    differ = [key for key in keys if getattr(as_recorded, key) != getattr(optim, key)]
    taken = [key for key in differ if key not in optim.explicit_optim]
    given_again = [key for key in differ if key in optim.explicit_optim]
    if given_again:
        start.notes.append(", ".join(f"{_setting(key, getattr(optim, key))} as given" for key in given_again)
                           + f" (the run it continues used "
                           f"{', '.join(_setting(key, getattr(as_recorded, key)) for key in given_again)})")
    if not taken:
        return config
    start.notes.append(f"{', '.join(_setting(key, getattr(as_recorded, key)) for key in taken)} from {source} "
                       "(the run it continues; flags override)")
    carried = {key: getattr(as_recorded, key) for key in taken}
    if "regimes" in carried:
        carried["regimes_path"] = recorded.get("regimes_path")
    return replace(config, optim=replace(optim, **carried))


def recorded_optimisation(loaded: Any) -> Optional[Dict[str, Any]]:
    """The optimisation settings of the run a checkpoint comes from: ours record the run's
    config; the successor's ``save_<N>.pth`` its optimiser's settings and its scheduler's state
    (MultiStepLR: the rate it started from and its factor; ReduceLROnPlateau: the rate reached,
    from which it goes on)."""
    config = (getattr(loaded, "extra", None) or {}).get("config")
    if isinstance(config, dict) and isinstance(config.get("optim"), dict):
        return config["optim"]
    groups = (getattr(loaded, "optimizer", None) or {}).get("param_groups") or []
    if getattr(loaded, "source_format", None) != "successor" or not groups:
        return None
    group, scheduler = groups[0], getattr(loaded, "scheduler", None) or {}
    found: Dict[str, Any] = {key: float(group[key]) for key in ("momentum", "dampening", "weight_decay") if key in group}
    if "nesterov" in group:
        found["nesterov"] = bool(group["nesterov"])
    if "milestones" in scheduler:
        first = (scheduler.get("base_lrs") or [group.get("initial_lr", group.get("lr"))])[0]
        found.update(lr_scheduler="multistep", multistep_gamma=float(scheduler.get("gamma", 0.1)))
        if first is not None:
            found["learning_rate"] = float(first)
    elif "patience" in scheduler and "lr" in group:
        found.update(lr_scheduler="plateau", learning_rate=float(group["lr"]),
                     plateau_patience=int(scheduler["patience"]), plateau_factor=float(scheduler.get("factor", 0.1)))
    return found


def successor_schedule_state(scheduler: Optional[Dict[str, Any]], schedule_name: str,
                             lr: float) -> Optional[Dict[str, Any]]:
    """The successor's scheduler state as our schedule's ``state_dict``, where the two agree:
    a MultiStepLR's milestones (kept unless --overwrite_milestones, by our schedule's rule) and
    a ReduceLROnPlateau's best loss and epochs without progress (``lr``: the rate it goes on
    from, already taken by ``continued_optimisation``). None: nothing to carry over."""
    scheduler = scheduler or {}
    if "milestones" in scheduler and schedule_name == "multistep":
        return {"name": "multistep", "milestones": sorted(int(m) for m in scheduler["milestones"]),
                "gamma": scheduler.get("gamma")}
    if "patience" in scheduler and schedule_name == "plateau":
        return {"name": "plateau", "best": float(scheduler.get("best", math.inf)),
                "bad_epochs": int(scheduler.get("num_bad_epochs", 0)), "lr": lr}
    return None


def _setting(key: str, value: Any) -> str:
    if key == "regimes":
        return f"the {len(value)} learning-rate regimes"
    return f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}"
