"""Runs one job from its queue entry to a terminal state, exactly once in effect.

A job found RUNNING was started by a dispatcher that died; it is resumed from its latest
checkpoint. Registration is idempotent per job, so a crash between registering the model
and recording SUCCEEDED does not produce a second version.
"""
from __future__ import annotations

import logging
import time
import traceback

from trainserve.core import errors
from trainserve.core.state import JobState
from trainserve.core.pb import job_pb2
from trainserve.core.tracking import StackTracking
from trainserve.jobs.evaluation import evaluation_message
from trainserve.jobs.tracked_plots import track_plots
from trainserve.registry import versions
from trainserve.registry.service import DeploymentsCore, serving_options_of
from trainserve.store.fencing import Fence
from trainserve.store import keys
from trainserve.store.jobs import JobStore
from trainserve.store.queue import Lease
from trainserve.store.models import ModelStore
from trainserve.store.trials import ENDED, TrialStore
from trainserve.training.validate import DEFAULT_MAX_RESTARTS
from trainserve.core.tenancy import Principal
from trainserve.core.faults import pause_point

log = logging.getLogger("trainserve.dispatch")
# Job hash fields: why the job's last run stopped without an outcome, and which dispatcher
# ran it (what a resume and a job out of restarts report).
INTERRUPTED = "interrupted"
RUN_BY = "run_by"


class JobRunner:
    def __init__(self, store: JobStore, models: ModelStore, deployments: DeploymentsCore,
                 redis_url: str, storage_dir: str, run_job=None, max_duration_s: float = 0.0,
                 tracking: StackTracking | None = None):
        """`max_duration_s`: the wall-clock limit of a job that sets none, and the most any
        job gets (0: none beyond the spec's own). `tracking`: the stack's trackers, for jobs
        whose spec names none."""
        self.store = store
        self.tracking = tracking
        self.max_duration_s = max_duration_s
        self._leases: dict[str, Lease] = {}  # the jobs run under a lease, by id
        self.trials = TrialStore(store.r)
        self.models = models
        self.deployments = deployments
        self.redis_url = redis_url
        self.storage_dir = storage_dir
        self._run_job = run_job  # injectable for unit tests; the real one imports Ray

    def run(self, job_id: str, started: bool = False, lease: Lease | None = None) -> JobState:
        """Drive the job to a terminal state; returns the state it is in afterwards.
        `started`: the scheduler has just moved it to RUNNING (and counted the attempt);
        otherwise a RUNNING job is one whose dispatcher died, resumed here. `lease`: the
        lease this dispatcher runs it under; every write carries its fencing token, and once
        `lease.lost` is set the run stops and records nothing (the job stays RUNNING for
        whoever holds the lease now)."""
        job = self.store.get(job_id)
        state = JobState(job.state)
        if state.is_terminal:
            return state
        if lease is not None:
            self._leases[job_id] = lease
        try:
            return self._drive(job, state, started)
        finally:
            self._leases.pop(job_id, None)

    def _drive(self, job: job_pb2.Job, state: JobState, started: bool) -> JobState:
        job_id = job.id
        job = job if started and state == JobState.RUNNING else self._start(job, state)
        if job is None:
            return JobState(self.store.get(job_id).state)
        lease = self._leases.get(job_id)
        if lease is not None:  # this run is the job's latest: no interruption known yet
            self._fence(job_id).update(**{RUN_BY: lease.owner, INTERRUPTED: ""})
        deadline, limit = self._deadline(job)
        if deadline is not None and time.time() >= deadline:
            return self._finish(job_id, JobState.FAILED, f"the job exceeded its wall-clock "
                                                         f"limit of {limit:g} s")
        try:
            result = self._train(job, deadline, limit)
        except errors.TrainingError as exc:
            return self._finish(job_id, JobState.FAILED, exc.message)
        except Exception as exc:  # noqa: BLE001 - a job must never stay RUNNING on a bug
            log.error("job %s crashed:\n%s", job_id, traceback.format_exc())
            return self._finish(job_id, JobState.FAILED, f"internal error: {exc}")
        if self._superseded(job_id):
            log.warning("job %s: this dispatcher lost its lease; the job is left to the one "
                        "that took it over", job_id)
            return JobState(self.store.get(job_id).state)
        if result.status == "cancelled":
            return self._finish(job_id, JobState.CANCELLED, "cancelled while running")
        return self._succeed(job, result)

    def _start(self, job: job_pb2.Job, state: JobState) -> job_pb2.Job | None:
        if state == JobState.QUEUED:
            try:
                return self.store.transition(job.id, JobState.RUNNING, "running",
                                             attempts=job.attempts + 1)
            except errors.FailedPrecondition:
                return None  # cancelled between enqueue and start
        limit = job.spec.training.max_restarts if job.spec.training.HasField(
            "max_restarts") else DEFAULT_MAX_RESTARTS
        if job.attempts - 1 >= limit:  # attempts counts starts: the first is no restart
            self._finish(job.id, JobState.FAILED, self._exhausted(job, limit))
            return None
        fence = self._fence(job.id)
        if not fence.update(attempts=job.attempts + 1):
            return None  # superseded already
        fence.log(f"resuming (attempt {job.attempts + 1}) after the dispatcher that ran it "
                  f"stopped ({self._why_orphaned(job.id)})", level="warning")
        return self.store.get(job.id)

    def _exhausted(self, job: job_pb2.Job, limit: int) -> str:
        return (f"not resumed again: the job was started {job.attempts} time(s) and resumed "
                f"{job.attempts - 1} time(s), its limit (training.max_restarts = {limit}); "
                f"the last attempt stopped because {self._why_orphaned(job.id)}")

    def _why_orphaned(self, job_id: str) -> str:
        """The last reason known why the job's previous run stopped."""
        reason, owner = self.store.r.hmget(keys.job(job_id), INTERRUPTED, RUN_BY)
        if reason:
            return reason.decode()
        who = f"dispatcher {owner.decode()}" if owner else "its dispatcher"
        return f"{who} stopped renewing its lease (it crashed, stalled or lost Redis)"

    def record_interruption(self, job_id: str, reason: str) -> None:
        """Note why this run of the job stopped without an outcome (what the next resume
        and the message of a job out of restarts report)."""
        self._fence(job_id).update(**{INTERRUPTED: reason})

    def _fence(self, job_id: str) -> Fence:
        lease = self._leases.get(job_id)
        return Fence(self.store.r, job_id, lease.fence if lease else 0)

    def _superseded(self, job_id: str) -> bool:
        lease = self._leases.get(job_id)
        return lease is not None and (lease.lost.is_set() or not self._fence(job_id)
                                      .is_current())

    def _deadline(self, job: job_pb2.Job) -> tuple[float | None, float]:
        """(the `time.time()` past which the job must stop, or None; its limit in seconds),
        counted from the job's first start."""
        asked = job.spec.training.max_duration_s
        cap = self.max_duration_s
        limit = min(asked, cap) if asked and cap else (asked or cap)
        if not limit:
            return None, 0.0
        started = job.started_at.ToNanoseconds() / 1e9 if job.HasField("started_at") \
            else time.time()
        return started + limit, limit

    def _train(self, job: job_pb2.Job, deadline: float | None = None, limit: float = 0.0):
        from trainserve.runtime.context import JobContext
        run_job = self._run_job
        if run_job is None:
            from trainserve.runtime.launch import run_job
        scaling = job.spec.scaling
        ctx = JobContext(job_id=job.id, spec=job.spec.SerializeToString(),
                         redis_url=self.redis_url, storage_dir=self.storage_dir,
                         attempt=job.attempts,
                         max_failures=(scaling.max_failures if scaling.HasField("max_failures")
                                       else 1),
                         fence=lease.fence if (lease := self._leases.get(job.id)) else 0,
                         tracking=self.tracking)
        extra = {}  # only what applies, so a fake run_job(ctx) fits the simple cases
        if lease is not None:
            extra["superseded"] = lease.lost.is_set
        if deadline is not None:
            extra.update(deadline=deadline, limit_s=limit)
        return run_job(ctx, **extra)

    def _succeed(self, job: job_pb2.Job, result) -> JobState:
        """Register (and deploy) the job's model as the job's owner, never as anyone: a model
        name another user holds (only possible for a job queued before names were claimed
        at submission) fails the job with the reason, nothing registered; an endpoint name
        another user holds leaves the job SUCCEEDED with the deploy failure in its events
        and `deployment` empty."""
        if job.spec.HasField("evaluate"):  # an evaluation registers nothing
            return self._finish(job.id, JobState.SUCCEEDED,
                                evaluation_message(job.spec, result.metrics),
                                metrics=dict(result.metrics))
        owner = Principal(job.user, "user")
        try:
            mv = versions.register(self.models, self.storage_dir, job, result.artifact_dir,
                                   owner)
        except errors.AlreadyExists as exc:
            return self._finish(job.id, JobState.FAILED, f"not registered: {exc.message}")
        pause_point("registered", job.id)
        self._track_plots(job.id, result)
        fields = {"model_name": mv.name, "model_version": mv.version,
                  "metrics": dict(result.metrics)}
        if job.spec.HasField("deploy"):
            fields["deployment"] = self._deploy(job, mv, owner)
        message = f"registered model {mv.name}:{mv.version}"
        return self._finish(job.id, JobState.SUCCEEDED, message, **fields)

    def _track_plots(self, job_id: str, result) -> None:
        """The job's plots into its trackers (TensorBoard images, MLflow artifacts)."""
        try:
            job = self.store.get(job_id)
            if job.spec.HasField("search"):  # its plots are its trials'
                job.trials.extend(self.trials.list(job_id))
                job.best_trial = self.trials.best(job_id)
            warnings = track_plots(job, self.store.events.history(job_id),
                                   dict(result.metrics), self.storage_dir, self.tracking)
        except Exception as exc:  # noqa: BLE001 - a tracker never fails the job
            log.warning("job %s: plots not tracked", job_id, exc_info=True)
            warnings = [f"the plots were not added to the trackers: {exc}"]
        for text in warnings:
            self.store.events.log(job_id, text, level="warning")

    def _deploy(self, job: job_pb2.Job, mv, owner: Principal) -> str:
        spec = job.spec.deploy
        name = spec.name or mv.name
        try:
            self.deployments.deploy(name, mv.name, mv.version, serving_options_of(spec), owner)
            self.store.events.log(job.id, f"deploying {mv.name}:{mv.version} as {name}")
            return name
        except errors.TrainserveError as exc:
            self.store.events.log(job.id, f"deploy failed: {exc.message}", level="error")
            return ""

    def _finish(self, job_id: str, target: JobState, message: str, **fields) -> JobState:
        lease = self._leases.get(job_id)
        if lease is not None and lease.lost.is_set():
            return JobState(self.store.get(job_id).state)  # another dispatcher's job now
        self._settle_trials(job_id, target)
        try:
            # Fenced: refused if another dispatcher took the job over meanwhile.
            self.store.transition(job_id, target, message,
                                  fence=lease.fence if lease else None, **fields)
        except errors.FailedPrecondition:
            pass  # already terminal (e.g. a duplicate delivery finished it first), or superseded
        return JobState(self.store.get(job_id).state)

    def _settle_trials(self, job_id: str, target: JobState) -> None:
        """A search's trials still marked running when it ends were stopped with it (by a
        cancel, a failure, or its time budget): record how."""
        state = {JobState.CANCELLED: "cancelled", JobState.FAILED: "failed"}.get(
            target, "stopped_early")
        for trial in self.trials.list(job_id):
            if trial.state == "running":
                trial.state = state
                self.trials.record(job_id, trial, ENDED)
