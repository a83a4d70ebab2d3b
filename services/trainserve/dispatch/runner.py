"""Runs one job from its queue entry to a terminal state, exactly once in effect.

A job found RUNNING was started by a dispatcher that died; it is resumed from its latest
checkpoint. Registration is idempotent per job, so a crash between registering the model
and recording SUCCEEDED does not produce a second version.
"""
from __future__ import annotations

import logging
import traceback

from trainserve import errors
from trainserve.jobs.state import JobState
from trainserve.pb import job_pb2
from trainserve.registry import versions
from trainserve.registry.service import DeploymentsCore, serving_options_of
from trainserve.store.jobs import JobStore
from trainserve.store.models import ModelStore
from trainserve.store.trials import ENDED, TrialStore
from trainserve.tenancy import Principal
from trainserve.faults import pause_point

log = logging.getLogger("trainserve.dispatch")


class JobRunner:
    def __init__(self, store: JobStore, models: ModelStore, deployments: DeploymentsCore,
                 redis_url: str, storage_dir: str, run_job=None):
        self.store = store
        self.trials = TrialStore(store.r)
        self.models = models
        self.deployments = deployments
        self.redis_url = redis_url
        self.storage_dir = storage_dir
        self._run_job = run_job  # injectable for unit tests; the real one imports Ray

    def run(self, job_id: str, started: bool = False) -> JobState:
        """Drive the job to a terminal state; returns that state. `started`: the scheduler
        has just moved it to RUNNING (and counted the attempt); otherwise a RUNNING job is
        one whose dispatcher died, resumed here."""
        job = self.store.get(job_id)
        state = JobState(job.state)
        if state.is_terminal:
            return state
        job = job if started and state == JobState.RUNNING else self._start(job, state)
        if job is None:
            return JobState(self.store.get(job_id).state)
        try:
            result = self._train(job)
        except errors.TrainingError as exc:
            return self._finish(job_id, JobState.FAILED, exc.message)
        except Exception as exc:  # noqa: BLE001 - a job must never stay RUNNING on a bug
            log.error("job %s crashed:\n%s", job_id, traceback.format_exc())
            return self._finish(job_id, JobState.FAILED, f"internal error: {exc}")
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
        self.store.update(job.id, attempts=job.attempts + 1)
        self.store.events.log(job.id, f"resuming (attempt {job.attempts + 1}) after the "
                                      "dispatcher that ran it stopped", level="warning")
        return self.store.get(job.id)

    def _train(self, job: job_pb2.Job):
        from trainserve.train.launch import JobContext
        run_job = self._run_job
        if run_job is None:
            from trainserve.train.launch import run_job
        scaling = job.spec.scaling
        ctx = JobContext(job_id=job.id, spec=job.spec.SerializeToString(),
                         redis_url=self.redis_url, storage_dir=self.storage_dir,
                         attempt=job.attempts,
                         max_failures=(scaling.max_failures if scaling.HasField("max_failures")
                                       else 1))
        return run_job(ctx)

    def _succeed(self, job: job_pb2.Job, result) -> JobState:
        """Register (and deploy) the job's model as the job's owner, never as anyone: a model
        name another user holds (only possible for a job queued before names were claimed
        at submission) fails the job with the reason, nothing registered; an endpoint name
        another user holds leaves the job SUCCEEDED with the deploy failure in its events
        and `deployment` empty."""
        owner = Principal(job.user, "user")
        try:
            mv = versions.register(self.models, self.storage_dir, job, result.artifact_dir,
                                   owner)
        except errors.AlreadyExists as exc:
            return self._finish(job.id, JobState.FAILED, f"not registered: {exc.message}")
        pause_point("registered", job.id)
        fields = {"model_name": mv.name, "model_version": mv.version,
                  "metrics": dict(result.metrics)}
        if job.spec.HasField("deploy"):
            fields["deployment"] = self._deploy(job, mv, owner)
        message = f"registered model {mv.name}:{mv.version}"
        return self._finish(job.id, JobState.SUCCEEDED, message, **fields)

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
        self._settle_trials(job_id, target)
        try:
            self.store.transition(job_id, target, message, **fields)
        except errors.FailedPrecondition:
            pass  # already terminal (e.g. a duplicate delivery finished it first)
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
