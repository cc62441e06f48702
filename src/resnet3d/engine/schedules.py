"""Learning-rate (and weight-decay) schedules, evaluated per epoch.

Every schedule answers ``values(epoch, progress)`` -> ``(lr, weight_decay)`` for a 1-based epoch,
``progress`` being the fraction of that epoch already done (only cosine uses it, to anneal per
step). All but plateau are pure functions of the epoch, so a resumed run gets exactly the
values of an unbroken one; plateau keeps a small state that travels in the checkpoint.

The originals' conventions, reproduced:
- multistep (successor): ``MultiStepLR`` stepped once before each epoch, so epoch ``m`` of a
  milestone ``m`` already trains at the reduced rate: lr = base * gamma ** #(milestones <= epoch).
- plateau (successor): ``ReduceLROnPlateau('min', patience)`` on the previous epoch's
  validation loss, relative threshold 1e-4, factor 0.1.
- regimes (seed, ``lr.lua``): rows ``{first, last, lr, wd}``; the last row containing the epoch
  wins. An epoch no row covers keeps the values of the closest earlier covered epoch (the seed
  carries the optimiser state over), or the base values before the first row.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Tuple

from resnet3d.config import LR_SCHEDULERS, OptimConfig, Regime
from resnet3d.errors import UserError


class Schedule:
    name = "constant"

    def __init__(self, base_lr: float, weight_decay: float) -> None:
        self.base_lr = base_lr
        self.weight_decay = weight_decay

    def values(self, epoch: int, progress: float = 0.0) -> Tuple[float, float]:
        return self.base_lr, self.weight_decay

    def observe(self, val_loss: float) -> None:
        """Called after each validation; only plateau cares."""

    def state_dict(self) -> Dict[str, Any]:
        return {"name": self.name}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if state.get("name", self.name) != self.name:
            # A schedule change on resume is allowed (e.g. more epochs with cosine); the new one
            # simply starts from its own definition.
            return


class MultiStepSchedule(Schedule):
    name = "multistep"

    def __init__(self, base_lr: float, weight_decay: float, milestones: Sequence[int], gamma: float,
                 keep_milestones_on_resume: bool = True) -> None:
        super().__init__(base_lr, weight_decay)
        self.milestones = tuple(sorted(int(m) for m in milestones))
        self.gamma = gamma
        self.keep_milestones_on_resume = keep_milestones_on_resume

    def values(self, epoch: int, progress: float = 0.0) -> Tuple[float, float]:
        passed = sum(1 for m in self.milestones if m <= epoch)
        return self.base_lr * self.gamma ** passed, self.weight_decay

    def state_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "milestones": list(self.milestones), "gamma": self.gamma}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        # The successor keeps the checkpoint's milestones unless --overwrite_milestones.
        if state.get("name") == self.name and self.keep_milestones_on_resume and "milestones" in state:
            self.milestones = tuple(int(m) for m in state["milestones"])


class CosineSchedule(Schedule):
    """Linear warm-up over ``warmup_epochs``, then half a cosine down to ``min_lr`` at the end."""

    name = "cosine"

    def __init__(self, base_lr: float, weight_decay: float, n_epochs: int, warmup_epochs: float,
                 min_lr: float) -> None:
        super().__init__(base_lr, weight_decay)
        self.n_epochs = n_epochs
        self.warmup_epochs = warmup_epochs
        self.min_lr = min_lr

    def values(self, epoch: int, progress: float = 0.0) -> Tuple[float, float]:
        t = (epoch - 1) + progress  # epochs done so far
        if self.warmup_epochs > 0 and t < self.warmup_epochs:
            # Never exactly 0, so the first steps already move the weights.
            return self.base_lr * max(t / self.warmup_epochs, 0.01), self.weight_decay
        span = max(self.n_epochs - self.warmup_epochs, 1e-9)
        fraction = min(max((t - self.warmup_epochs) / span, 0.0), 1.0)
        lr = self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1.0 + math.cos(math.pi * fraction))
        return lr, self.weight_decay


class RegimeSchedule(Schedule):
    name = "regimes"

    def __init__(self, base_lr: float, weight_decay: float, regimes: Sequence[Regime]) -> None:
        super().__init__(base_lr, weight_decay)
        if not regimes:
            raise UserError("the regimes schedule needs at least one row {first_epoch, last_epoch, lr, weight_decay}")
        self.regimes = tuple(regimes)

    def _row_for(self, epoch: int) -> Optional[Regime]:
        found = None
        for row in self.regimes:  # the seed loops over all rows: the last match wins
            if row.first_epoch <= epoch <= row.last_epoch:
                found = row
        return found

    def values(self, epoch: int, progress: float = 0.0) -> Tuple[float, float]:
        row = self._row_for(epoch)
        if row is None:
            earlier = [r for r in self.regimes if r.first_epoch < epoch]
            if earlier:
                # The closest covered epoch before this one: the end of the latest-ending row.
                last_covered = max(min(r.last_epoch, epoch) for r in earlier)
                row = self._row_for(last_covered)
        if row is None:
            return self.base_lr, self.weight_decay
        return row.lr, row.weight_decay


class PlateauSchedule(Schedule):
    name = "plateau"

    def __init__(self, base_lr: float, weight_decay: float, patience: int, factor: float = 0.1,
                 threshold: float = 1e-4, min_lr: float = 0.0) -> None:
        super().__init__(base_lr, weight_decay)
        self.patience = patience
        self.factor = factor
        self.threshold = threshold
        self.min_lr = min_lr
        self.best = math.inf
        self.bad_epochs = 0
        self.lr = base_lr

    def values(self, epoch: int, progress: float = 0.0) -> Tuple[float, float]:
        return self.lr, self.weight_decay

    def observe(self, val_loss: float) -> None:
        if val_loss < self.best * (1.0 - self.threshold):
            self.best = val_loss
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.lr = max(self.lr * self.factor, self.min_lr)
            self.bad_epochs = 0

    def state_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "best": self.best, "bad_epochs": self.bad_epochs, "lr": self.lr}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if state.get("name") == self.name:
            self.best = float(state["best"])
            self.bad_epochs = int(state["bad_epochs"])
            self.lr = float(state["lr"])


SCHEDULES = LR_SCHEDULERS


def _check_floor(optim: OptimConfig) -> None:
    """The rate the schedule ends at (cosine) or never goes below (plateau): between 0 and the
    starting rate, or the "decay" climbs (a floor of 1 took a 0.01 run up to 0.99)."""
    if not 0 <= optim.min_lr <= optim.learning_rate:
        raise UserError(f"--min-lr ([optim] min_lr) {optim.min_lr}: must be between 0 and the learning rate "
                        f"({optim.learning_rate}), the floor --lr_scheduler {optim.lr_scheduler} lowers it towards")


def build_schedule(optim: OptimConfig, n_epochs: int) -> Schedule:
    kind = optim.lr_scheduler
    if kind == "multistep":
        early = [m for m in optim.multistep_milestones if m < 1]
        if early:  # a milestone counts finished epochs: 0 or less lowered the rate from the first epoch on
            raise UserError(f"--multistep_milestones (--milestones, [optim] multistep_milestones) {early[0]}: "
                            "each is a number of finished epochs, 1 or more")
        return MultiStepSchedule(optim.learning_rate, optim.weight_decay, optim.multistep_milestones,
                                 optim.multistep_gamma, keep_milestones_on_resume=not optim.overwrite_milestones)
    if kind in ("plateau", "cosine"):
        _check_floor(optim)
    if kind == "plateau":
        return PlateauSchedule(optim.learning_rate, optim.weight_decay, optim.plateau_patience,
                               optim.plateau_factor, min_lr=optim.min_lr)
    if kind == "cosine":
        if not optim.warmup_epochs >= 0:
            raise UserError(f"--warmup-epochs ([optim] warmup_epochs) {optim.warmup_epochs}: must be 0 or more")
        return CosineSchedule(optim.learning_rate, optim.weight_decay, n_epochs, optim.warmup_epochs, optim.min_lr)
    if kind == "regimes":
        return RegimeSchedule(optim.learning_rate, optim.weight_decay, optim.regimes)
    if kind == "constant":
        return Schedule(optim.learning_rate, optim.weight_decay)
    raise UserError(f"--lr_scheduler {kind!r} is not known; choose one of {', '.join(SCHEDULES)}")
