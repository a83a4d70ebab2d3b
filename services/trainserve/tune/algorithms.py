"""Registered search algorithms and trial schedulers, and the Tune search space they share.

Ray (and Optuna) are imported when an entry builds, never at import: validation uses the
names and flags without them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from trainserve.training.registry import Registry
from trainserve.tune.space import Axis

TRIAL_DONE = "trial_done"  # in a trial's last report: it ran to its end (not stopped)
# Schedulers count a trial's progress in its own epochs, reported with every result, not in
# Tune's iterations: a trial resumed from its own checkpoint continues the count.
EPOCH = "epoch"


@dataclass(frozen=True)
class Searcher:
    """`build(seed, metric, mode, max_concurrent) -> Ray Tune search algorithm` running at most
    `max_concurrent` trials at once (0: no limit). `grid_axes`: whether grid() axes are allowed (crossed by the generator);
    `only_grid`: whether every axis must be grid() (each point runs once)."""
    build: Callable[[int, str, str, int], Any]
    grid_axes: bool = True
    only_grid: bool = False


@dataclass(frozen=True)
class TrialScheduler:
    """`build(spec, metric, mode, axes) -> Ray Tune scheduler`. `per_epoch`: it decides on
    every epoch's result (so a cross-validated trial, which reports once, cannot use it).
    `checkpoints`: it moves trials between checkpoints (PBT). `fields`: the
    `TrialSchedulerSpec` fields it reads (others are not checked)."""
    build: Callable[[Any, str, str, list[Axis]], Any]
    per_epoch: bool = True
    checkpoints: bool = False
    fields: tuple[str, ...] = ()


SEARCHERS: Registry[Searcher] = Registry("search algorithm")
SCHEDULERS: Registry[TrialScheduler] = Registry("trial scheduler")

DEFAULT_GRACE_PERIOD, DEFAULT_REDUCTION_FACTOR, DEFAULT_PERTURBATION_INTERVAL = 1, 3, 2


def tune_domain(axis: Axis):
    """The Ray Tune domain of an axis (categorical axes as indices into their values)."""
    from ray import tune
    n = len(axis.values)
    return {
        "choice": lambda: tune.choice(list(range(n))),
        "grid": lambda: tune.grid_search(list(range(n))),
        "uniform": lambda: tune.uniform(axis.low, axis.high),
        "loguniform": lambda: tune.loguniform(axis.low, axis.high),
        "randint": lambda: tune.randint(int(axis.low), int(axis.high)),
        "quniform": lambda: tune.quniform(axis.low, axis.high, axis.q),
    }[axis.kind]()


def param_space(axes: list[Axis]) -> dict[str, Any]:
    return {axis.path: tune_domain(axis) for axis in axes}


def decode(axes: list[Axis], config: dict[str, Any]) -> dict[str, Any]:
    """A trial's Tune config -> spec path -> value (indices mapped back to values; randint
    as int)."""
    out = {}
    for axis in axes:
        raw = config[axis.path]
        if axis.categorical:
            out[axis.path] = axis.values[int(raw)]
        elif axis.kind == "randint":
            out[axis.path] = int(raw)
        else:
            out[axis.path] = float(raw)
    return out


# --- searchers -----------------------------------------------------------------------------

def _tpe(seed: int, metric: str, mode: str, max_concurrent: int):
    import optuna
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher = OptunaSearch(sampler=optuna.samplers.TPESampler(seed=seed % 2**32),
                            metric=metric, mode=mode)
    return ConcurrencyLimiter(searcher, max_concurrent) if max_concurrent else searcher


def _variants(seed: int, metric: str, mode: str, max_concurrent: int):
    """Tune's own generator (grid axes crossed, the rest sampled), seeded. It limits the
    trials in flight itself (Tune's `max_concurrent_trials` does not apply to it)."""
    from ray.tune.search import BasicVariantGenerator
    return BasicVariantGenerator(random_state=seed % 2**32, max_concurrent=max_concurrent)


SEARCHERS.register("random", Searcher(_variants))
SEARCHERS.register("grid", Searcher(_variants, only_grid=True))
SEARCHERS.register("tpe", Searcher(_tpe, grid_axes=False))


# --- schedulers ----------------------------------------------------------------------------

def _max_t(spec) -> int:
    # One more than the last epoch: a scheduler stops a trial that reaches max_t, and the
    # trial's final report (its test metrics) repeats the last epoch.
    return spec.training.epochs + 1


def _asha(spec, metric, mode, axes):
    from ray.tune.schedulers import ASHAScheduler
    s = spec.search.scheduler
    return ASHAScheduler(time_attr=EPOCH, max_t=_max_t(spec),
                         grace_period=s.grace_period, reduction_factor=s.reduction_factor)


def _hyperband(spec, metric, mode, axes):
    from ray.tune.schedulers import HyperBandScheduler
    return HyperBandScheduler(time_attr=EPOCH, max_t=_max_t(spec),
                              reduction_factor=spec.search.scheduler.reduction_factor)


def _median(spec, metric, mode, axes):
    from ray.tune.schedulers import MedianStoppingRule
    return MedianStoppingRule(time_attr=EPOCH,
                              grace_period=spec.search.scheduler.grace_period,
                              min_samples_required=2)


def _pbt(spec, metric, mode, axes):
    from ray.tune.schedulers import PopulationBasedTraining
    mutations = {a.path: tune_domain(a) for a in axes if a.kind != "grid"}
    return PopulationBasedTraining(
        time_attr=EPOCH,
        perturbation_interval=spec.search.scheduler.perturbation_interval,
        hyperparam_mutations=mutations)


def _fifo(spec, metric, mode, axes):
    from ray.tune.schedulers import FIFOScheduler
    return FIFOScheduler()


SCHEDULERS.register("fifo", TrialScheduler(_fifo, per_epoch=False))
SCHEDULERS.register("asha", TrialScheduler(_asha, fields=("grace_period", "reduction_factor")))
SCHEDULERS.register("hyperband", TrialScheduler(_hyperband, fields=("reduction_factor",)))
SCHEDULERS.register("median", TrialScheduler(_median, fields=("grace_period",)))
SCHEDULERS.register("pbt", TrialScheduler(_pbt, checkpoints=True,
                                          fields=("perturbation_interval",)))


def apply_scheduler_defaults(msg) -> None:
    msg.name = msg.name or "fifo"
    if not msg.HasField("grace_period"):
        msg.grace_period = DEFAULT_GRACE_PERIOD
    if not msg.HasField("reduction_factor"):
        msg.reduction_factor = DEFAULT_REDUCTION_FACTOR
    if not msg.HasField("perturbation_interval"):
        msg.perturbation_interval = DEFAULT_PERTURBATION_INTERVAL
