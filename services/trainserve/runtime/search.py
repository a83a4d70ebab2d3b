"""Runs a search job on Ray Tune: `run_search(ctx)`, inside a Ray task the launcher starts
(this module imports Ray; import it there only).

The experiment lives in `<job dir>/tune/`. When it already exists (a dispatcher died mid-
search and the job was resumed), Tune restores it: finished trials stay finished, unfinished
ones continue from their last checkpoint. A callback mirrors every trial into Redis
(`store.trials`), a stopper ends the search when the job's cancel flag appears. At the end the
best trial that ran to its end is picked by the search metric and its artifact becomes the
job's (with the trial's id and values in its meta.json, for the registry's lineage).
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from ray.tune import Callback, Stopper

from trainserve.core import errors
from trainserve.core.pb import job_pb2, spec_pb2
from trainserve.training.results import TrainResult, write_json_atomic
from trainserve.tune.algorithms import (EPOCH, SCHEDULERS, SEARCHERS, TRIAL_DONE, decode,
                                        param_space)
from trainserve.tune.space import Axis, parse_space
from trainserve.runtime.trial import run_trial, trial_paths

log = logging.getLogger(__name__)
EXPERIMENT = "tune"
# Tune's own bookkeeping in every result; not metrics of the model.
_TUNE_KEYS = {"training_iteration", EPOCH, "time_this_iter_s", "time_total_s", "timestamp", "pid",
              "time_since_restore", "iterations_since_restore", "done", TRIAL_DONE}


def run_search(ctx) -> TrainResult:
    """Run (or resume) the search of `ctx` (a `runtime.context.JobContext`) to its end; with
    MLflow tracking, as the parent run of its trials' runs (`runtime.tracking`)."""
    from trainserve.runtime.reporting import make_reporter
    from trainserve.runtime.tracking import search_target, tracking_target
    with tracking_target(search_target(ctx), make_reporter(ctx)) as reporter:
        return reporter.finished(_search(ctx))


def _search(ctx) -> TrainResult:
    from ray import tune
    spec = ctx.job_spec()
    axes = parse_space(spec.search)
    root = ctx.paths.root
    trainable = _trainable(spec, ctx.spec, root, ctx.tracking)
    exp = root / EXPERIMENT
    if tune.Tuner.can_restore(str(exp)):
        tuner = tune.Tuner.restore(str(exp), trainable, resume_unfinished=True,
                                   resume_errored=True)
    else:
        tuner = tune.Tuner(trainable, param_space=param_space(axes),
                           tune_config=_tune_config(spec, axes),
                           run_config=_run_config(ctx, spec, axes))
    grid = tuner.fit()
    if ctx.paths.cancel_flag.exists():
        return TrainResult("cancelled")
    return _best(ctx, spec, axes, [(r.metrics or {}) | {"config": r.config or {}}
                                   for r in grid])


# A multi-worker trial's own process only drives its TorchTrainer; the workers hold the CPUs.
DDP_DRIVER_CPUS = 0.01


def _trainable(spec: spec_pb2.JobSpec, spec_bytes: bytes, root: Path, tracking=None):
    """`tracking`: the stack's trackers (`core.tracking.StackTracking`), for the trials of a
    search whose spec names none."""
    from ray import tune
    r = spec.search.trial_resources
    resources = {"cpu": r.cpus, "gpu": r.gpus}
    if spec.scaling.num_workers > 1:
        resources = {"cpu": DDP_DRIVER_CPUS}
    return tune.with_resources(
        tune.with_parameters(run_trial, spec_bytes=spec_bytes, search_root=str(root),
                             tracking=tracking),
        resources)


def _tune_config(spec: spec_pb2.JobSpec, axes: list[Axis]):
    from ray import tune
    s = spec.search
    limit = s.max_concurrent_trials or _fitting(spec) or 0
    searcher = SEARCHERS.get(s.algorithm).build(spec.training.seed, s.metric, s.mode, limit)
    scheduler = SCHEDULERS.get(s.scheduler.name).build(spec, s.metric, s.mode, axes)
    return tune.TuneConfig(metric=s.metric, mode=s.mode, num_samples=s.num_samples,
                           search_alg=searcher, scheduler=scheduler,
                           time_budget_s=s.time_budget_s or None, reuse_actors=True)


def _fitting(spec: spec_pb2.JobSpec) -> int | None:
    """Multi-worker trials wait for their workers' CPUs after Tune starts them: start only as
    many as the cluster holds at once (None: Tune's own packing, for single-worker ones)."""
    import ray
    sc = spec.scaling
    if sc.num_workers <= 1:
        return None
    cpus = ray.cluster_resources().get("CPU", 1.0)
    return max(1, int(cpus // (sc.num_workers * sc.cpus_per_worker + DDP_DRIVER_CPUS)))


def _run_config(ctx, spec: spec_pb2.JobSpec, axes: list[Axis]):
    from ray import tune
    return tune.RunConfig(
        name=EXPERIMENT, storage_path=str(ctx.paths.root), verbose=0,
        stop=CancelStopper(str(ctx.paths.cancel_flag)),
        failure_config=tune.FailureConfig(max_failures=ctx.max_failures),
        callbacks=[TrialRecorder(ctx.redis_url, ctx.job_id, ctx.spec,
                                 str(ctx.paths.cancel_flag))])


def _best(ctx, spec: spec_pb2.JobSpec, axes: list[Axis], results: list[dict]) -> TrainResult:
    s = spec.search
    done = [m for m in results if m.get(TRIAL_DONE) and _finite(m.get(s.metric))]
    if not done:
        raise errors.TrainingError(f"no trial of the search finished with a {s.metric} to rank "
                                   f"by ({len(results)} trial(s) ran); see the trial events")
    pick = max if s.mode == "max" else min
    best = pick(done, key=lambda m: m[s.metric])
    trial_id = best["trial_id"]
    paths = trial_paths(ctx.paths.root, trial_id)
    trial = TrainResult.read(paths.result)
    _stamp_lineage(Path(trial.artifact_dir), ctx.job_id, trial_id,
                   decode(axes, best["config"]))
    if ctx.redis_url:
        from trainserve.store.redis import connect
        from trainserve.store.trials import TrialStore
        TrialStore(connect(ctx.redis_url)).set_best(ctx.job_id, trial_id)
    metrics = dict(trial.metrics) | {f"best_{s.metric}": float(best[s.metric]),
                                     "trials": float(len(results)),
                                     "trials_finished": float(len(done))}
    return TrainResult("succeeded", metrics, trial.artifact_dir, trial.dataset_hash,
                       trial.confusion_matrix)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _stamp_lineage(artifact: Path, job_id: str, trial_id: str, values: dict) -> None:
    meta_path = artifact / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["search"] = {"job_id": job_id, "trial_id": trial_id,
                      "config": {k: json.dumps(v) for k, v in values.items()}}
    write_json_atomic(meta_path, meta)


# --- picklable Tune plug-ins (the experiment state pickles them for a restore) --------------

class CancelStopper(Stopper):
    """Stops every trial once the job's cancel flag file exists."""

    def __init__(self, flag: str):
        self.flag = flag

    def __call__(self, trial_id: str, result: dict) -> bool:
        return self.stop_all()

    def stop_all(self) -> bool:
        return Path(self.flag).exists()


class TrialRecorder(Callback):
    """Mirrors trials into Redis as Tune sees them (see `store.trials`)."""

    def __init__(self, redis_url: str | None, job_id: str, spec_bytes: bytes, cancel_flag: str):
        self.redis_url, self.job_id, self.spec_bytes = redis_url, job_id, spec_bytes
        self.cancel_flag = cancel_flag
        self._store = None
        self._axes = None

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("_store", "_axes")}

    def __setstate__(self, state):
        self.__dict__.update(state, _store=None, _axes=None)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._record(trial, "started", "running")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._record(trial, "reported", "running", result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        if last.get(TRIAL_DONE):
            state = "finished"
        else:
            state = "cancelled" if Path(self.cancel_flag).exists() else "stopped_early"
        self._record(trial, "ended", state)

    def on_trial_error(self, iteration, trials, trial, **info):
        message = str(getattr(trial, "error_msg", "") or "the trial failed").splitlines()
        self._record(trial, "ended", "failed", message=message[-1] if message else "")

    def _record(self, trial, kind: str, state: str, result: dict | None = None,
                message: str = "") -> None:
        if not self.redis_url:
            return
        try:
            self._write(trial, kind, state, result, message)
        except Exception:  # noqa: BLE001 - progress display must never stop a search
            log.warning("could not record trial %s", trial.trial_id, exc_info=True)

    def _write(self, trial, kind, state, result, message) -> None:
        from trainserve.store.redis import connect
        from trainserve.store.trials import TrialStore
        if self._store is None:
            self._store = TrialStore(connect(self.redis_url))
            spec = spec_pb2.JobSpec.FromString(self.spec_bytes)
            self._axes = parse_space(spec.search)
        pb = self._store.get(self.job_id, trial.trial_id) or job_pb2.Trial(id=trial.trial_id)
        pb.state, pb.message = state, message or pb.message
        if not pb.config:
            values = decode(self._axes, trial.config)
            pb.config.update({k: json.dumps(v) for k, v in values.items()})
        if result:
            _add_result(pb, result)
        self._store.record(self.job_id, pb, kind)


def _add_result(pb: job_pb2.Trial, result: dict) -> None:
    metrics = {k: float(v) for k, v in result.items() if k not in _TUNE_KEYS
               and isinstance(v, (int, float)) and not isinstance(v, bool)}
    pb.metrics.clear()
    pb.metrics.update(metrics)
    if result.get(TRIAL_DONE):
        return  # the final report repeats the last epoch, with the test metrics added
    epoch = int(result.get(EPOCH, pb.epochs + 1))
    pb.epochs = epoch
    # A trial restored from an older checkpoint (or exploited by PBT) repeats epochs.
    kept = [p for p in pb.curve if p.epoch < epoch]
    del pb.curve[:]
    pb.curve.extend(kept)
    pb.curve.add(epoch=epoch, metrics=metrics)
