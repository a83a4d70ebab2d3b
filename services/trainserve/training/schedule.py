"""Learning-rate schedules, stepped once an epoch, after an optional linear warm-up.

torch-free (validation uses the registry). The loop asks `LRSchedule.lr(epoch)` before each
epoch, sets it on the optimizer, reports it as the `lr` metric, and tells the schedule the
epoch's metrics afterwards (`observe`), which only "plateau" uses.

Warm-up (`OptimizerSpec.warmup_epochs = W`): epoch e <= W trains with lr * e / (W + 1), a ramp
from near 0 that reaches the base lr at epoch W + 1, where the schedule starts (its epoch 0).

| name    | lr at schedule epoch t (T = epochs after the warm-up)    | fields used           |
|---------|----------------------------------------------------------|-----------------------|
| none    | lr                                                       |                       |
| step    | lr * gamma ** (t // step_size)                           | step_size=10 gamma=.1 |
| cosine  | min_lr + (lr - min_lr) * (1 + cos(pi * t / T)) / 2       | min_lr=0              |
| plateau | times gamma after `patience` epochs without a new best   | gamma=.1 patience=5   |
|         | val_loss (train_loss without a validation split), >= min_lr | min_lr=0           |
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from trainserve.training.checks import check_range, fail
from trainserve.training.registry import Registry

DEFAULT_SCHEDULER = "none"
DEFAULT_STEP_SIZE = 10
DEFAULT_GAMMA = 0.1
DEFAULT_PLATEAU_PATIENCE = 5
MAX_STEP_SIZE = 100_000
# The SchedulerSpec fields a schedule may use; the others must stay unset.
FIELDS = ("step_size", "gamma", "min_lr", "patience")


@dataclass(frozen=True)
class Schedule:
    """A schedule entry: the `SchedulerSpec` fields it uses, their defaults, and a builder
    `(SchedulerSpec, base_lr, epochs_after_warmup) -> policy` (see `_Constant`)."""
    fields: tuple[str, ...]
    defaults: dict
    build: Callable[[object, float, int], "_Constant"]


SCHEDULES: Registry[Schedule] = Registry("scheduler")


def register_schedule(name: str, schedule: Schedule) -> Schedule:
    """Register a schedule under `name` (`ValueError` if taken)."""
    return SCHEDULES.register(name, schedule)


def get_schedule(name: str) -> Schedule:
    """The schedule registered under `name` (`ValueError` listing known names otherwise)."""
    return SCHEDULES.get(name)


def check_scheduler(opt, epochs: int, path: str = "spec.optimizer") -> None:
    """Apply defaults to `opt.scheduler` and `opt.warmup_epochs` and validate them (needs
    `opt.lr` set). Raises `InvalidArgument` with the field path."""
    if not 0 <= opt.warmup_epochs < epochs:
        fail(f"{path}.warmup_epochs", f"must be in [0, {epochs}) (below spec.training.epochs), "
                                      f"got {opt.warmup_epochs}")
    sc, spath = opt.scheduler, f"{path}.scheduler"
    sc.name = sc.name or DEFAULT_SCHEDULER
    if sc.name not in SCHEDULES:
        fail(f"{spath}.name", SCHEDULES.unknown_message(sc.name))
    entry = get_schedule(sc.name)
    for field in FIELDS:
        is_set = sc.min_lr != 0 if field == "min_lr" else sc.HasField(field)
        if is_set and field not in entry.fields:
            users = [n for n in SCHEDULES.names() if field in get_schedule(n).fields]
            fail(f"{spath}.{field}", f"scheduler {sc.name!r} does not use {field}; "
                                     f"only {', '.join(users)} do")
        if not is_set and field in entry.defaults:
            setattr(sc, field, entry.defaults[field])
    if "step_size" in entry.fields and not 1 <= sc.step_size <= MAX_STEP_SIZE:
        fail(f"{spath}.step_size", f"must be in [1, {MAX_STEP_SIZE}], got {sc.step_size}")
    if "gamma" in entry.fields:
        check_range(sc.gamma, f"{spath}.gamma", low=0.0, high=1.0, low_open=True)
    if "min_lr" in entry.fields:
        check_range(sc.min_lr, f"{spath}.min_lr", low=0.0, high=opt.lr)
    if "patience" in entry.fields and not 1 <= sc.patience <= MAX_STEP_SIZE:
        fail(f"{spath}.patience", f"must be in [1, {MAX_STEP_SIZE}], got {sc.patience}")


class LRSchedule:
    """The learning rate of every epoch for a checked `OptimizerSpec` and `epochs` total.

    `monitor` is the metric "plateau" watches. Its state (plateau only) goes into checkpoints
    through `state_dict` / `load_state_dict`, so a resumed run continues the same schedule.
    """

    def __init__(self, opt, epochs: int, monitor: str = "val_loss"):
        self.base, self.warmup, self.monitor = opt.lr, opt.warmup_epochs, monitor
        self.policy = get_schedule(opt.scheduler.name or DEFAULT_SCHEDULER).build(
            opt.scheduler, opt.lr, max(1, epochs - opt.warmup_epochs))

    def lr(self, epoch: int) -> float:
        """The learning rate for 1-based `epoch`."""
        if epoch <= self.warmup:
            return self.base * epoch / (self.warmup + 1)
        return self.policy.lr(epoch - self.warmup - 1)

    def observe(self, epoch: int, metrics: dict[str, float]) -> None:
        """Epoch `epoch` finished with `metrics` (identical on every rank)."""
        if epoch > self.warmup and self.monitor in metrics:
            self.policy.observe(metrics[self.monitor])

    def state_dict(self) -> dict:
        return self.policy.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state)


class _Constant:
    """Policy protocol: `lr(t)` for schedule epoch t (0-based), `observe(value)` after an
    epoch, and a (possibly empty) state."""

    def __init__(self, spec, base: float, epochs: int):
        self.spec, self.base, self.epochs = spec, base, epochs

    def lr(self, t: int) -> float:
        return self.base

    def observe(self, value: float) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class _Step(_Constant):
    def lr(self, t: int) -> float:
        return self.base * self.spec.gamma ** (t // self.spec.step_size)


class _Cosine(_Constant):
    def lr(self, t: int) -> float:
        low = self.spec.min_lr
        return low + (self.base - low) * (1 + math.cos(math.pi * t / self.epochs)) / 2


class _Plateau(_Constant):
    """Multiplies the lr by gamma once the monitored loss has not reached a new minimum for
    `patience` epochs, then waits `patience` epochs again; never below min_lr."""

    def __init__(self, spec, base: float, epochs: int):
        super().__init__(spec, base, epochs)
        self.current, self.best, self.bad = base, math.inf, 0

    def lr(self, t: int) -> float:
        return self.current

    def observe(self, value: float) -> None:
        if value < self.best:  # NaN never improves
            self.best, self.bad = value, 0
            return
        self.bad += 1
        if self.bad >= self.spec.patience:
            self.current, self.bad = max(self.current * self.spec.gamma, self.spec.min_lr), 0

    def state_dict(self) -> dict:
        return {"current": self.current, "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.current, self.best, self.bad = state["current"], state["best"], state["bad"]


register_schedule("none", Schedule((), {}, _Constant))
register_schedule("step", Schedule(("step_size", "gamma"),
                                   {"step_size": DEFAULT_STEP_SIZE, "gamma": DEFAULT_GAMMA}, _Step))
register_schedule("cosine", Schedule(("min_lr",), {}, _Cosine))
register_schedule("plateau", Schedule(("gamma", "min_lr", "patience"),
                                      {"gamma": DEFAULT_GAMMA,
                                       "patience": DEFAULT_PLATEAU_PATIENCE}, _Plateau))
