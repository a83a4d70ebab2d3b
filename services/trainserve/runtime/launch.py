"""Running a job on Ray: `run_job(ctx)` blocks until the job succeeded, was cancelled or failed.

- `num_workers == 1`: the fast path, a Ray task in a pooled worker (`prewarm` imports torch
  there ahead of time), no Ray Train start-up cost.
- `num_workers > 1`: a Ray Train v2 `TorchTrainer` with DDP over the workers. Its `fit()` runs
  inside a Ray task so that `run_job` can wait, poll for cancellation and kill it.
- `spec.search` set: a Ray Tune search (`runtime.search.run_search`), in a Ray task likewise.

Both paths run the same loop (`loop.train`), so events, checkpoints, cancellation and the
artifact are the same. This module imports neither torch nor Ray at import time.
"""
from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from trainserve.core import errors
from trainserve.core.pb import spec_pb2
from trainserve.runtime.context import JobContext, poll_workers_often
from trainserve.runtime.logcapture import capture_logs
from trainserve.training.paths import JobPaths
from trainserve.runtime.reporting import make_reporter
from trainserve.runtime.tracking import tracked
from trainserve.training.reporting import CancelFileReporter, LogLinesReporter, NullReporter
from trainserve.training.results import TrainResult, write_json_atomic

log = logging.getLogger(__name__)

POLL_S = 0.5           # how often run_job checks the task and the caller's cancel flag
CANCEL_GRACE_S = 10.0  # after a cancel, how long the workers get to stop before being killed
PREWARM_TIMEOUT_S = 90.0  # the longest `prewarm` waits for its tasks
PREWARM_HOLD_S = 3.0   # > a cold worker's start-up, so concurrent prewarm tasks never share one


def run_job(ctx: JobContext, *, should_cancel: Callable[[], bool] | None = None,
            cancel_grace_s: float = CANCEL_GRACE_S,
            superseded: Callable[[], bool] | None = None,
            deadline: float | None = None, limit_s: float = 0.0) -> TrainResult:
    """Run the job on the connected Ray cluster and return its `TrainResult`.

    Resumes from the job's latest checkpoint when there is one. `should_cancel` (default: the
    job's reporter, i.e. the Redis cancel flag) is polled every `POLL_S`; once true, the
    workers are told to stop and, if they have not within `cancel_grace_s`, killed; the result
    is then "cancelled". Once `superseded()` is true (the caller lost the job's lease), this
    run is killed at once and "cancelled" returned: the job's new run shares the job's folder
    and cancel flag, so neither is touched. Past `deadline` (a `time.time()`), the workers
    are stopped as for a cancel and `errors.TrainingError` says the job exceeded its
    wall-clock limit of `limit_s`. Raises `errors.TrainingError` with a readable message on
    failure.
    """
    paths = ctx.paths
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.cancel_flag.unlink(missing_ok=True)  # left by an earlier, interrupted attempt
    paths.result.unlink(missing_ok=True)
    paths.failure.unlink(missing_ok=True)
    workers, cpus, use_gpu = ctx.scaling()
    if workers < 1:
        raise errors.TrainingError(f"num_workers must be >= 1, got {workers}")
    ref = _start(ctx, workers, cpus, use_gpu)
    if should_cancel is None:
        should_cancel, superseded = _job_flags(ctx, superseded)
    return _wait(ref, paths, _Stops(should_cancel, superseded, deadline, limit_s),
                 cancel_grace_s)


def _job_flags(ctx: JobContext, superseded: Callable[[], bool] | None):
    """`(should_cancel, superseded)` read from the job's Redis state: the cancel flag, and
    for a fenced run whether a newer fencing token exists, both in one round trip a poll.
    (A superseded run must not be stopped through the job's cancel flag: the job's new run
    would see it too.)"""
    reporter = make_reporter(ctx)
    fence = getattr(reporter, "fence", None)
    if fence is None:
        return reporter.cancel_requested, superseded
    own = superseded or (lambda: False)
    return (lambda: fence.check()[0]), (lambda: fence.superseded or own())


def prewarm(n: int | None = None, cpus_per_worker: float = 1.0) -> None:
    """Make `n` pooled Ray workers (default: one per free CPU) import torch and
    trainserve.training, so the first fast-path job does not pay for it (~1.6 s per worker).

    Call it from the process that later calls `run_job`: Ray pools workers per driver. The
    tasks run concurrently, so each lands in its own worker when `n` CPUs are free.
    """
    import ray
    if n is None:
        n = max(1, int(ray.available_resources().get("CPU", 1) // cpus_per_worker))
    task = _remote(_prewarm_task)
    refs = [task.options(num_cpus=cpus_per_worker).remote(PREWARM_HOLD_S) for _ in range(n)]
    # Bounded: on a cluster whose CPUs are all taken, warming must not hold up readiness.
    done, _ = ray.wait(refs, num_returns=len(refs), timeout=PREWARM_TIMEOUT_S)
    ray.get(done)  # a failed warm-up is logged by the caller


# --- launching -----------------------------------------------------------------------------

@functools.cache
def _remote(fn):
    import ray
    return ray.remote(fn)


def _start(ctx: JobContext, workers: int, cpus: float, use_gpu: bool):
    if ctx.job_spec().HasField("evaluate"):  # external validation: one task, no training
        from trainserve.runtime.evaluation import start_evaluation
        return start_evaluation(_remote, ctx, cpus, use_gpu)
    if ctx.job_spec().HasField("search"):  # Tune's driver; the trials reserve the resources
        return _remote(_search_task).options(
            num_cpus=0, max_retries=0, name=f"trainserve-search-{ctx.job_id}").remote(ctx)
    if workers == 1:
        return _remote(_fast_path_task).options(
            num_cpus=cpus, num_gpus=1 if use_gpu else 0, max_retries=ctx.max_failures,
            name=f"trainserve-job-{ctx.job_id}").remote(ctx)
    # The trainer's driver holds no resources: the workers reserve them.
    return _remote(_trainer_task).options(
        num_cpus=0, max_retries=0, name=f"trainserve-trainer-{ctx.job_id}").remote(ctx)


@dataclass(frozen=True)
class _Stops:
    """Why `_wait` stops a run early (see `run_job`)."""
    should_cancel: Callable[[], bool]
    superseded: Callable[[], bool] | None = None
    deadline: float | None = None
    limit_s: float = 0.0

    def why(self) -> str:
        """"cancel", "deadline" or "" (keep running)."""
        if _safe_poll(self.should_cancel):
            return "cancel"
        if self.deadline is not None and time.time() >= self.deadline:
            return "deadline"
        return ""

    def ended(self, why: str) -> TrainResult:
        """The outcome of a run stopped for `why`."""
        if why == "deadline":
            raise errors.TrainingError(
                f"the job exceeded its wall-clock limit of {self.limit_s:g} s")
        return TrainResult("cancelled")


def _wait(ref, paths: JobPaths, stops: _Stops, grace_s: float) -> TrainResult:
    import ray
    stopping_at, why = None, ""
    while not ray.wait([ref], timeout=POLL_S)[0]:
        if stops.superseded is not None and _safe_poll(stops.superseded):
            log.warning("job %s: this dispatcher no longer holds its lease; killing its run",
                        paths.root.name)
            ray.cancel(ref, force=True, recursive=True)
            return TrainResult("cancelled")
        if stopping_at is None:
            why = stops.why()
            if why:
                log.info("job %s: %s; asking the workers to stop", paths.root.name,
                         "cancel requested" if why == "cancel" else "wall-clock limit reached")
                paths.cancel_flag.touch()
                stopping_at = time.monotonic()
        elif time.monotonic() - stopping_at > grace_s:
            log.warning("job %s did not stop within %.0f s; killing it", paths.root.name, grace_s)
            ray.cancel(ref, force=True, recursive=True)
            return stops.ended(why)
    try:
        result = ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        return stops.ended(why or "cancel")
    except Exception as exc:  # noqa: BLE001 - every failure becomes one readable error
        if why == "deadline":  # e.g. a search stopped before any trial finished
            return stops.ended(why)
        log.error("job %s failed", paths.root.name, exc_info=exc)
        raise errors.TrainingError(readable_error(exc)) from None
    return stops.ended(why) if why and result.status == "cancelled" else result


def _safe_poll(should_cancel: Callable[[], bool]) -> bool:
    try:
        return bool(should_cancel())
    except Exception:  # noqa: BLE001 - a flaky flag store must not fail a healthy job
        log.warning("cancel check failed; assuming no cancel", exc_info=True)
        return False


# --- in the workers ------------------------------------------------------------------------

def _threads(cpus: float) -> int:
    return max(1, int(cpus))


_JOBS_HERE = [0]  # fast-path jobs this worker process has run, this one included


def _fast_path_task(ctx: JobContext) -> TrainResult:
    """The fast path: the whole loop in this (pooled) worker process."""
    import os

    from trainserve.training.loop import train
    from trainserve.training.validate import check_spec
    _, cpus, use_gpu = ctx.scaling()
    _JOBS_HERE[0] += 1
    with capture_logs(ctx) as sink, tracked(ctx, _logged(CancelFileReporter(
            make_reporter(ctx), ctx.paths.cancel_flag), sink)) as reporter:
        # Which pooled worker ran the job, and after how many others: what to look at when a
        # job behaves differently in a reused worker than in a fresh one.
        log.info("worker pid %d, job %d in this worker", os.getpid(), _JOBS_HERE[0])
        return reporter.finished(train(check_spec(ctx.job_spec()), ctx.paths.root, reporter,
                                       num_threads=_threads(cpus),
                                       device="cuda" if use_gpu else "cpu"))


def _logged(reporter, sink):
    """`reporter`, its lines and epochs also written to the job's worker log when captured."""
    return reporter if sink is None else LogLinesReporter(reporter, sink.write)


def _search_task(ctx: JobContext) -> TrainResult:
    from trainserve.runtime.search import run_search
    with capture_logs(ctx):
        return run_search(ctx)


def _trainer_task(ctx: JobContext) -> TrainResult:
    """Runs `TorchTrainer.fit()` and returns the result rank 0 left in `result.json`."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    poll_workers_often()
    workers, cpus, use_gpu = ctx.scaling()
    trainer = TorchTrainer(
        _train_worker, train_loop_config={"ctx": ctx, "data": _shared_data(ctx)},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": cpus}),
        run_config=RunConfig(storage_path=str(Path(ctx.storage_dir) / "ray_train"),
                             name=ctx.job_id,
                             failure_config=FailureConfig(max_failures=ctx.max_failures)))
    trainer.fit()
    if ctx.paths.failure.exists():
        raise errors.TrainingError(json.loads(ctx.paths.failure.read_text())["message"])
    return TrainResult.read(ctx.paths.result)


def _shared_data(ctx: JobContext):
    """The job's prepared data in Ray's object store, for every rank; None with
    cross-validation (each fold prepares its own).

    Prepared once here, in a (pooled, pre-warmed) worker that has scikit-learn imported
    already, rather than in each fresh Ray Train worker: importing scikit-learn and loading
    the dataset there costs seconds of start-up per rank on a small machine."""
    import ray

    from trainserve.training.data import prepare_data
    from trainserve.training.validate import check_spec
    spec = check_spec(ctx.job_spec())
    return None if spec.split.folds >= 2 else ray.put(prepare_data(spec))


def _train_worker(config: dict) -> None:
    """`train_loop_per_worker`: Ray Train has set up torch.distributed already.

    A `TrainingError` (diverged, bad batch size) is the same on every rank and would be again
    on a retry, so it ends the run normally and travels via `failure.json`: Ray Train's
    restarts (`max_failures`) are kept for crashed workers.
    """
    import ray.train
    import ray.train.torch

    from trainserve.training.loop import train
    from trainserve.training.validate import check_spec
    ctx: JobContext = config["ctx"]
    tc = ray.train.get_context()
    rank = tc.get_world_rank()
    with capture_logs(ctx, rank) as sink, tracked(ctx, _logged(CancelFileReporter(
            make_reporter(ctx), ctx.paths.cancel_flag), sink) if rank == 0 else NullReporter(),
            enabled=rank == 0) as reporter:
        log.info("rank %d of %d on %s", rank, tc.get_world_size(), ray.train.torch.get_device())
        try:
            data = config.get("data")
            reporter.finished(train(
                check_spec(ctx.job_spec()), ctx.paths.root, reporter, rank=rank,
                world_size=tc.get_world_size(), num_threads=_threads(ctx.scaling()[1]),
                device=ray.train.torch.get_device(), data=None if data is None else ray.get(data)))
        except errors.TrainingError as exc:
            log.error("training failed: %s", exc.message)
            if rank == 0:
                write_json_atomic(ctx.paths.failure, {"message": exc.message})


def _prewarm_task(hold_s: float) -> None:
    started = time.monotonic()
    _tiny_run()
    # A multi-worker job's trainer task (Ray Train's driver) also lands in a pooled worker;
    # importing Ray Train here, inside the hold below, spares that job a second or two.
    import ray.train.torch  # noqa: F401
    # Stay busy until every prewarm task has started, or Ray would hand the next task to this
    # (now idle) worker instead of warming another one.
    time.sleep(max(0.0, hold_s - (time.monotonic() - started)))


def _tiny_run() -> None:
    """One epoch on 16 XOR samples: imports everything and pays first-call costs (the first
    optimizer step alone takes about a second) outside any real job."""
    import shutil
    import tempfile

    from trainserve.training.loop import train
    from trainserve.training.validate import check_spec
    spec = spec_pb2.JobSpec()
    spec.dataset.name, spec.dataset.num_samples = "xor", 16
    spec.model.mlp.SetInParent()
    spec.training.epochs = 1
    tmp = tempfile.mkdtemp(prefix="trainserve-prewarm-")
    try:
        train(check_spec(spec), tmp, NullReporter())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- errors --------------------------------------------------------------------------------

def readable_error(exc: BaseException) -> str:
    """One or two lines saying why a job failed, from whatever Ray raised."""
    cause = _root_cause(exc)
    if isinstance(cause, errors.TrainserveError):
        return cause.message
    name = type(cause).__name__
    if name in ("WorkerCrashedError", "ActorDiedError", "NodeDiedError", "OutOfMemoryError"):
        return f"a training worker died ({name}): {_first_line(cause)}"
    return f"training failed: {name}: {_first_line(cause)}"


def _root_cause(exc: BaseException) -> BaseException:
    from ray.exceptions import RayTaskError
    from ray.train import ControllerError, WorkerGroupError
    for _ in range(10):  # the chain is short; the bound guards against cycles
        if isinstance(exc, RayTaskError) and exc.cause is not None:
            exc = exc.cause
        elif isinstance(exc, WorkerGroupError) and exc.worker_failures:
            exc = exc.worker_failures[min(exc.worker_failures)]
        elif isinstance(exc, ControllerError):
            exc = exc.controller_failure
        else:
            break
    return exc


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return "(no message)"
    # Some errors (Tune's) carry a whole traceback: its last line says what went wrong.
    return lines[-1].strip() if lines[0].startswith("Traceback") else lines[0]
