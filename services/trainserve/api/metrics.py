"""Control-plane metrics of the job API, in Prometheus naming conventions."""
from __future__ import annotations

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

GRPC_REQUESTS = Counter("trainserve_grpc_requests_total",
                        "gRPC requests handled by the job API.", ["method", "code"])
GRPC_LATENCY = Histogram("trainserve_grpc_request_duration_seconds",
                         "gRPC request handling time (streams: until the stream ends).",
                         ["method"], buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5,
                                              1, 2.5, 5, 10, 60, 600))
SUBMISSIONS = Counter("trainserve_job_submissions_total",
                      "SubmitJob calls that created a new job.")
REDIS_ERRORS = Counter("trainserve_redis_errors_total", "Redis calls that failed.")


class JobStateCollector(Collector):
    """Jobs by state and queue depth, read from Redis at scrape time (any API replica
    reports the same numbers, none keeps counts of its own)."""

    def __init__(self, client):
        self.r = client

    def collect(self):
        from trainserve.jobs.state import JobState
        from trainserve.store.jobs import index_key
        from trainserve.store.queue import GROUP, QUEUE

        jobs = GaugeMetricFamily("trainserve_jobs", "Jobs by state.", labels=["state"])
        depth = GaugeMetricFamily("trainserve_queue_depth",
                                  "Queue entries not yet finished (undelivered + pending).")
        try:
            pipe = self.r.pipeline(transaction=False)
            for s in JobState:
                pipe.zcard(index_key(s))
            counts = pipe.execute()
            for s, n in zip(JobState, counts):
                jobs.add_metric([s.name.lower()], n)
            groups = self.r.xinfo_groups(QUEUE) if self.r.exists(QUEUE) else []
            g = next((g for g in groups if g["name"] in (GROUP, GROUP.encode())), {})
            depth.add_metric([], int(g.get("lag") or 0) + int(g.get("pending") or 0))
        except Exception:  # a scrape must not fail because Redis blinked
            REDIS_ERRORS.inc()
            return
        yield jobs
        yield depth
