"""Serving metrics, per endpoint, model and version, beside Ray Serve's own.

`RayServingMetrics` records through Ray's metrics system (`ray.util.metrics`), which every
node's metrics agent exports to Prometheus with a `ray_` prefix (a counter also gains
`_total`): `ray_trainserve_inference_requests_total`,
`ray_trainserve_inference_request_duration_seconds_*` and
`ray_trainserve_inference_batch_size_*` (checked against a live scrape by
tests/integration/test_metrics.py). Labels are the endpoint, the model, its version and the
status code name (the batch size: the model and its version only, since the model host
batches per model version whatever the endpoint), all bounded by what is deployed. Ray's
agent adds its own labels: `Component`, `NodeAddress`, `SessionName`, `WorkerId` (the
replica's worker) and `Version` (Ray's version; not the model's `version`). `NullMetrics`
records nothing (tests, tools).
"""
from __future__ import annotations

from typing import Protocol

# Seconds: a course model answers in about a millisecond; a generator or a big batch in more.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)
# Requests merged into one forward pass.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
OK = "OK"

REQUESTS, LATENCY, BATCH = ("trainserve_inference_requests",
                            "trainserve_inference_request_duration_seconds",
                            "trainserve_inference_batch_size")
MODEL_TAGS = ("endpoint", "model", "version")
# What Prometheus sees (Ray's prefix; a counter's `_total`), with the labels we set.
EXPORTED: dict[str, tuple[str, ...]] = {
    f"ray_{REQUESTS}_total": (*MODEL_TAGS, "code"),
    f"ray_{LATENCY}": MODEL_TAGS,
    f"ray_{BATCH}": ("model", "version"),
}


class ServingMetrics(Protocol):
    def request(self, endpoint: str, model_id: str, code: str, seconds: float) -> None:
        """One inference request answered with gRPC status `code` (OK, INVALID_ARGUMENT, ...)
        after `seconds`; `model_id` is `name:version`, or "" when it never resolved."""

    def batch(self, model_id: str, requests: int) -> None:
        """One forward pass of `model_id` that ran `requests` requests."""


class NullMetrics:
    def request(self, endpoint: str, model_id: str, code: str, seconds: float) -> None:
        pass

    def batch(self, model_id: str, requests: int) -> None:
        pass


def _model_tags(model_id: str) -> dict[str, str]:
    name, _, version = model_id.rpartition(":")
    return {"model": name, "version": version}


class RayServingMetrics:
    """`ServingMetrics` through `ray.util.metrics`; create it inside a Ray worker (a replica)."""

    def __init__(self):
        from ray.util import metrics

        self._requests = metrics.Counter(
            REQUESTS, "Inference requests by endpoint, model version and status code.",
            tag_keys=EXPORTED[f"ray_{REQUESTS}_total"])
        self._latency = metrics.Histogram(
            LATENCY, "Inference request latency inside the replica, from the parsed request to "
            "the built response.", boundaries=list(LATENCY_BUCKETS),
            tag_keys=EXPORTED[f"ray_{LATENCY}"])
        self._batch = metrics.Histogram(
            BATCH, "Requests per forward pass.", boundaries=list(BATCH_BUCKETS),
            tag_keys=EXPORTED[f"ray_{BATCH}"])

    def request(self, endpoint: str, model_id: str, code: str, seconds: float) -> None:
        tags = {"endpoint": endpoint, **_model_tags(model_id)}
        self._requests.inc(1, tags={**tags, "code": code})
        self._latency.observe(seconds, tags=tags)

    def batch(self, model_id: str, requests: int) -> None:
        self._batch.observe(requests, tags=_model_tags(model_id))
