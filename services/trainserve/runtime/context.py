"""`JobContext`: what a worker needs to run a job, and the Ray settings every launcher shares."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from trainserve.core.pb import spec_pb2
from trainserve.core.tracking import StackTracking
from trainserve.training.paths import JobPaths

TRAIN_POLL_S = 0.5  # how often Ray Train's controller polls its workers (Ray's default: 2 s)


@dataclass(frozen=True)
class JobContext:
    """Everything a worker needs to run a job; small and picklable for Ray.

    `spec` is a serialized `JobSpec` (a `JobSpec` is accepted and serialized). `attempt`
    counts dispatcher starts (1 first). `cpus_per_worker` / `num_workers` override the spec's
    `scaling` when set. `max_failures` is how often a crashed worker is restarted in place
    (it resumes from the latest checkpoint) before the job fails. `fence` is the fencing
    token of the dispatcher's lease (`store.fencing`): the workers' writes to the job's
    state carry it and stop being accepted once another dispatcher takes the job over
    (0: unfenced, for runs outside a dispatcher). `tracking`: the stack's trackers, for a job
    whose spec names none (`core.tracking.effective_tracking`).
    """
    job_id: str
    spec: bytes
    redis_url: str | None
    storage_dir: str
    attempt: int = 1
    cpus_per_worker: float | None = None
    num_workers: int | None = None
    max_failures: int = 1
    fence: int = 0
    tracking: StackTracking | None = None

    def __post_init__(self):
        if isinstance(self.spec, spec_pb2.JobSpec):
            object.__setattr__(self, "spec", self.spec.SerializeToString())
        object.__setattr__(self, "storage_dir", str(Path(self.storage_dir).absolute()))

    def job_spec(self) -> spec_pb2.JobSpec:
        return spec_pb2.JobSpec.FromString(self.spec)

    @property
    def paths(self) -> JobPaths:
        return JobPaths.of(self.storage_dir, self.job_id)

    def scaling(self) -> tuple[int, float, bool]:
        """`(num_workers, cpus_per_worker, use_gpu)`, with the spec's defaults (1, 1.0)."""
        sc = self.job_spec().scaling
        workers = self.num_workers or (sc.num_workers if sc.HasField("num_workers") else 1)
        cpus = self.cpus_per_worker or (sc.cpus_per_worker if sc.HasField("cpus_per_worker")
                                        else 1.0)
        return workers, cpus, sc.use_gpu


def poll_workers_often() -> None:
    """Have the Ray Train runs this process starts poll their workers every `TRAIN_POLL_S`
    instead of every 2 s, so a finished (or failed) worker group is noticed within half a
    second rather than a second on average; a poll is one small remote call a worker.
    `TorchTrainer.fit` reads the variable here and passes it on to its controller; a value
    set for the cluster is kept."""
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", str(TRAIN_POLL_S))
