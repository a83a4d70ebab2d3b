"""Dispatcher metrics (served on its own port; the API process serves the job-state ones)."""
from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

TERMINAL_STATES = ("succeeded", "failed", "cancelled")


class DispatcherMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY):
        self.heartbeat = Gauge("trainserve_dispatcher_heartbeat_timestamp_seconds",
                               "Last time the dispatcher's queue loop ran (liveness).",
                               registry=registry)
        self.running = Gauge("trainserve_dispatcher_running_jobs",
                             "Jobs this dispatcher is running now.", registry=registry)
        self.loop_errors = Counter("trainserve_dispatcher_loop_errors_total",
                                   "Errors that restarted a dispatcher loop.", ["loop"],
                                   registry=registry)
        self.jobs_finished = Counter("trainserve_jobs_finished_total",
                                     "Jobs that reached a terminal state.", ["state"],
                                     registry=registry)
        self.duration = Histogram("trainserve_job_duration_seconds",
                                  "Wall time from start to terminal state.", ["state"],
                                  buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600),
                                  registry=registry)
        # Every terminal state exported from the start: a rate() then counts the first job.
        for state in TERMINAL_STATES:
            self.jobs_finished.labels(state)
            self.duration.labels(state)

    def finished(self, state: str, seconds: float) -> None:
        self.jobs_finished.labels(state).inc()
        self.duration.labels(state).observe(seconds)
