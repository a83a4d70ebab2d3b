"""`check_search`: the `search` section of a spec whose base already passed `check_spec`.

Every entry is parsed and its path checked against the base spec; then each categorical
value and each bound is applied to the base and the result put through `check_spec`, so a
value no trial could train (a dropout of 1.5, a width of 0) is refused at submission with the
entry's field path rather than failing a trial later.
"""
from __future__ import annotations

from trainserve.core.errors import InvalidArgument
from trainserve.core.pb import spec_pb2
from trainserve.training.checks import check_choice, check_range, fail
from trainserve.core.metrics import default_mode
from trainserve.training import epoch_clinical
from trainserve.training.stopping import epoch_metric_names
from trainserve.training.tasks import task_info
from trainserve.training.datasets import dataset_info
from trainserve.tune import algorithms
from trainserve.tune.space import Axis, apply_values, check_path, field_of, parse_space

DEFAULT_NUM_SAMPLES = 8
MAX_TRIALS = 10_000
MAX_CONCURRENT = 1024
# Final validation metrics a cross-validated trial reports as cv_<name>_mean (training.cv).
CV_METRICS = {"classification": ("loss", "accuracy", "precision", "recall", "f1", "auc",
                                  "specificity", "npv", "brier", "ece"),
              "regression": ("loss", "mse", "mae", "r2")}


def check_search(spec: spec_pb2.JobSpec, validate_trial) -> list[Axis]:
    """Apply the search defaults in place and validate; returns the parsed axes.
    `validate_trial(spec) -> spec` is `training.validate.check_spec`."""
    s = spec.search
    s.algorithm = s.algorithm or "random"
    check_choice(s.algorithm, algorithms.SEARCHERS, "spec.search.algorithm", "search algorithm")
    algorithms.apply_scheduler_defaults(s.scheduler)
    check_choice(s.scheduler.name, algorithms.SCHEDULERS, "spec.search.scheduler.name",
                 "trial scheduler")
    axes = parse_space(s)
    for axis in axes:
        check_path(spec, axis.path)
    _check_algorithm(spec, axes)
    _check_counts(spec, axes)
    _check_metric(spec)
    _check_scheduler(spec)
    _check_resources(spec)
    for axis in axes:
        _check_candidates(spec, axis, validate_trial)
    return axes


def _check_algorithm(spec, axes: list[Axis]) -> None:
    s, entry = spec.search, algorithms.SEARCHERS.get(spec.search.algorithm)
    grid = [a for a in axes if a.kind == "grid"]
    if grid and not entry.grid_axes:
        fail(field_of(grid[0].path), f"algorithm {s.algorithm!r} samples its own points and "
                                     f"takes no grid(); use choice([...]) instead")
    if entry.only_grid:
        others = [a for a in axes if a.kind != "grid"]
        if others:
            fail(field_of(others[0].path), "algorithm 'grid' runs each grid point once: every "
                                           "entry must be grid([...]) (or use 'random')")


def _check_counts(spec, axes: list[Axis]) -> None:
    s = spec.search
    only_grid = algorithms.SEARCHERS.get(s.algorithm).only_grid
    if not s.HasField("num_samples"):
        s.num_samples = 1 if only_grid else DEFAULT_NUM_SAMPLES
    if only_grid and s.num_samples != 1:
        fail("spec.search.num_samples", "algorithm 'grid' runs every point exactly once; "
                                        "leave num_samples unset (or use 'random')")
    points = 1
    for a in axes:
        points *= len(a.values) if a.kind == "grid" else 1
    if not 1 <= s.num_samples * points <= MAX_TRIALS:
        fail("spec.search.num_samples", f"{s.num_samples} samples x {points} grid points "
                                        f"must make 1 to {MAX_TRIALS} trials")
    if not 0 <= s.max_concurrent_trials <= MAX_CONCURRENT:
        fail("spec.search.max_concurrent_trials", f"must be in [0, {MAX_CONCURRENT}]")
    check_range(s.time_budget_s, "spec.search.time_budget_s", low=0.0, high=1e7)


def _check_metric(spec) -> None:
    s = spec.search
    info = task_info(spec, dataset_info(spec.dataset))
    task = info.task
    if task == "generation":
        fail("spec.search", "a GAN reports no validation metric to rank trials by; "
                            "search its settings with separate jobs")
    folds = spec.split.folds >= 2
    clinical = epoch_clinical.names_for(spec, info, folds or spec.split.val_fraction > 0)
    if folds:
        known = _cv_names(task, clinical)
        s.metric = s.metric or known[0 if task != "classification" else 1]
    else:
        known = epoch_metric_names(task, spec.split.val_fraction > 0) + clinical
        default = "val_accuracy" if "val_accuracy" in known else (
            "val_loss" if "val_loss" in known else "train_loss")
        s.metric = s.metric or default
    if s.metric not in known:
        how = "a cross-validated trial reports" if folds else f"a {task} trial reports each epoch"
        fail("spec.search.metric", f"{how}: {', '.join(known)}; got {s.metric!r}")
    if not folds:  # a clinical metric: the trials compute it every epoch
        epoch_clinical.require(spec.training, s.metric, clinical, "spec.search.metric")
    s.mode = s.mode or default_mode(s.metric)
    check_choice(s.mode, ("max", "min"), "spec.search.mode", "mode")


def _cv_names(task: str, clinical: list[str]) -> list[str]:
    """The means a cross-validated trial reports (`training.cv.summarize`): `CV_METRICS`, then
    the per-class rates and top-k accuracy of a classifier's validation folds."""
    known = [f"cv_{m}_mean" for m in CV_METRICS.get(task, ("loss",))]
    more = [f"cv_{n.removeprefix('val_')}_mean" for n in clinical]
    return known + [n for n in more if n not in known]


def _check_scheduler(spec) -> None:
    s = spec.search
    entry = algorithms.SCHEDULERS.get(s.scheduler.name)
    if entry.per_epoch and spec.split.folds >= 2:
        fail("spec.search.scheduler.name", f"{s.scheduler.name} decides on per-epoch results, "
                                           f"but a cross-validated trial reports {s.metric} "
                                           f"once, at its end: use fifo")
    epochs = spec.training.epochs
    bounds = {"grace_period": (1, epochs, f"training.epochs = {epochs}"),
              "reduction_factor": (2, 100, "100"),
              "perturbation_interval": (1, epochs, f"training.epochs = {epochs}")}
    for name in entry.fields:
        low, high, shown = bounds[name]
        if not low <= getattr(s.scheduler, name) <= high:
            fail(f"spec.search.scheduler.{name}", f"must be in [{low}, {shown}]")
    if entry.checkpoints and s.algorithm != "random":
        fail("spec.search.algorithm", "pbt explores by itself: use algorithm 'random'")


def _check_resources(spec) -> None:
    r = spec.search.trial_resources
    if not r.HasField("cpus"):
        r.cpus = 1.0
    check_range(r.cpus, "spec.search.trial_resources.cpus", low=0.0, high=1024.0,
                low_open=True, high_open=False)
    check_range(r.gpus, "spec.search.trial_resources.gpus", low=0.0, high=64.0,
                high_open=False)
    if r.gpus and not spec.scaling.use_gpu:
        fail("spec.search.trial_resources.gpus", "set scaling.use_gpu to train on them")
    if spec.scaling.num_workers > 1 and (r.cpus != 1.0 or r.gpus):
        fail("spec.search.trial_resources", "a multi-worker trial's workers take "
                                            "scaling.cpus_per_worker each; leave this unset")
    if spec.scaling.num_workers > 1 and \
            algorithms.SCHEDULERS.get(spec.search.scheduler.name).checkpoints:
        fail("spec.scaling.num_workers", "pbt moves single-worker trials' checkpoints; "
                                         "set 1 or use another scheduler")


def _check_candidates(spec, axis: Axis, validate_trial) -> None:
    for value in axis.candidates():
        trial = apply_values(spec, {axis.path: value})
        try:
            validate_trial(trial)
        except InvalidArgument as exc:
            raise InvalidArgument(f"a trial with {axis.path} = {value!r} is refused: "
                                  f"{exc.field}: {exc.reason}", field=field_of(axis.path)) \
                from None
