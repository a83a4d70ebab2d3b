"""A finished job's plots in its trackers: the PNGs the job offers as artifacts
(`jobs.artifacts.write_files`: curves, confusion matrix, ROC, decision boundary, a search's
trial plots, ...) as TensorBoard images and MLflow artifacts (`runtime.tracking.log_plots`).

Drawn by the dispatcher once the training succeeded, before the job is marked so: the
plots are drawn from the job's events and what its training run saved, which only the
finished job has. Only a tracked job pays for the drawing.
"""
from __future__ import annotations

import tempfile
import threading
from pathlib import Path

from trainserve.core.pb import job_pb2
from trainserve.core.tracking import StackTracking
from trainserve.runtime.tracking import job_target, log_plots

_DRAW_LOCK = threading.Lock()  # pyplot keeps global state: one job's drawing at a time


def track_plots(job: job_pb2.Job, events: list[job_pb2.JobEvent], metrics: dict,
                storage_dir: str, stack: StackTracking | None) -> list[str]:
    """Draw `job`'s plots (as its succeeded self, with its final `metrics`) and hand them to
    its trackers; returns the trackers' warnings (nothing when the job tracks nothing)."""
    target = job_target(job.id, job.spec, storage_dir, stack)
    if target is None:
        return []
    done = job_pb2.Job()
    done.CopyFrom(job)
    done.state = job_pb2.JOB_STATE_SUCCEEDED
    done.metrics.clear()
    done.metrics.update(metrics)
    return log_plots(target, draw(done, events, target.folder),
                     done.epoch or done.spec.training.epochs)


def draw(job: job_pb2.Job, events: list[job_pb2.JobEvent], root: Path) -> dict[str, bytes]:
    """The job's PNG plots, by file name."""
    from trainserve.jobs.artifacts import write_files
    with tempfile.TemporaryDirectory(prefix="trainserve-plots-") as tmp, _DRAW_LOCK:
        write_files(job, events, root, Path(tmp))
        return {p.name: p.read_bytes() for p in sorted(Path(tmp).glob("*.png"))}
