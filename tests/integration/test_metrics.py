"""Monitoring end to end: a real Prometheus (the local stack's own `prometheus` component, in
a folder of its own, scraping every second) scrapes the stack's API, dispatcher and Ray's
endpoints while a training job, a small search and a deployment answering REST requests
run; then every query of every shipped dashboard must return data, and every metric and
label a dashboard names must exist in what was scraped."""
from __future__ import annotations

import json
import math
import os
import shutil
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest

from tests.conftest import free_port
from tests.dashboard_queries import needs_gpu, queries, variable_queries
from tests.integration.helpers import deploy, example, rpc_error, submit, wait_job
from trainserve.core.spec import parse_spec
from trainserve.core.state import JobState
from trainserve.core.pb import job_pb2

pytestmark = pytest.mark.integration

RATE = "20s"  # what $__rate_interval becomes: several 1 s scrapes and 2 s Ray reports


def _get(url: str) -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=30) as resp:
        doc = json.loads(resp.read())
    assert doc["status"] == "success", doc
    return doc["data"]


class Prom:
    def __init__(self, url: str, start: float):
        self.url, self.start = url, start

    def api(self, path: str, **params) -> dict:
        query = urllib.parse.urlencode(params, doseq=True)
        return _get(f"{self.url}/api/v1/{path}?{query}")

    def range(self, expr: str) -> list[dict]:
        return self.api("query_range", query=expr, start=self.start, end=time.time(),
                        step="1s")["result"]

    def wait_for(self, expr: str, timeout: float = 90) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.api("query", query=expr)["result"]:
                return
            time.sleep(1)
        raise TimeoutError(f"Prometheus has no {expr} after {timeout}s")


@pytest.fixture(scope="module")
def prometheus(stack, tmp_path_factory):
    """The stack's Prometheus component, started by a LocalStack of its own folder that points
    at the shared stack's ports and Ray temp folder; stopped (and checked gone) at the end."""
    from trainserve.local import LocalStack
    if shutil.which("prometheus") is None and not os.path.exists("/usr/bin/prometheus"):
        pytest.fail("prometheus is not installed (Debian: apt-get install prometheus)")
    cfg = stack.config.replace(state_dir=tmp_path_factory.mktemp("prom") / "state",
                               with_prometheus=True, prometheus_port=free_port(),
                               prometheus_scrape_interval_s=1.0,
                               ray_temp_dir=str(stack.config.ray_temp_path))
    local = LocalStack(cfg)
    assert local.up(["prometheus"]) == ["prometheus"]
    status = {s.name: s for s in local.status()}
    assert status["prometheus"].ready
    yield Prom(cfg.prometheus_url, time.time())
    assert local.down(["prometheus"]) == ["prometheus"]
    assert not local.is_running("prometheus")


def _long_xor(name: str):
    """XOR for far more epochs than the test waits: it runs until Prometheus has scraped its
    epochs and losses, then is cancelled (how fast an epoch goes does not matter)."""
    return example("xor_mlp", name=name, dataset={"num_samples": 4000},
                   training={"epochs": 5000, "batch_size": 16})


def _long_search():
    """A search whose trials run far longer than the test waits: it runs until Prometheus has
    scraped its trials' metrics, then is cancelled (how fast an epoch goes does not matter)."""
    return parse_spec({"name": "xor-search", "dataset": {"name": "xor", "num_samples": 4000,
                                                         "normalize": "none"},
                       "model": {"mlp": {"hidden": [8]}},
                       "training": {"epochs": 5000, "batch_size": 16},
                       "search": {"space": {"optimizer.lr": "choice([0.01, 0.05])"},
                                  "num_samples": 2, "max_concurrent_trials": 1,
                                  "trial_resources": {"cpus": 0.5}}})


@pytest.fixture(scope="module")
def traffic(stack, stubs, prometheus):
    """A training job, a search, a deployment with OIP REST requests (and a bad one), and an
    API call that fails; waits until Ray's agent has exported the serving metrics."""
    import tritonclient.http as thttp
    from tritonclient.utils import InferenceServerException

    train = submit(stubs, _long_xor("xor-metrics"))
    search = submit(stubs, _long_search())
    serving = submit(stubs, example("xor_mlp", name="xor-metrics-model"))
    for series in ("trainserve_training_epoch", "trainserve_training_loss"):
        prometheus.wait_for(f'{series}{{job_id="{train.id}"}}', timeout=240)
    stubs.jobs.CancelJob(job_pb2.CancelJobRequest(job_id=train.id), timeout=10)
    job = wait_job(stubs, train.id, timeout=120)
    assert JobState(job.state) == JobState.CANCELLED, job.message
    prometheus.wait_for(f'trainserve_search_trial_metric{{job_id="{search.id}"}}', timeout=240)
    stubs.jobs.CancelJob(job_pb2.CancelJobRequest(job_id=search.id), timeout=10)
    searched = wait_job(stubs, search.id, timeout=120)
    assert JobState(searched.state) == JobState.CANCELLED, searched.message
    model = wait_job(stubs, serving.id, timeout=300)
    assert JobState(model.state) == JobState.SUCCEEDED, model.message
    dep = deploy(stubs, model.model_name, "xor-metrics")
    assert dep.state == 2, dep.message  # READY
    client = thttp.InferenceServerClient(stack.config.serve_http)
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    for _ in range(10):
        for _ in range(5):
            inp = thttp.InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            assert client.infer("xor-metrics", [inp]).as_numpy("label").tolist() == [0, 1, 1, 0]
        bad = thttp.InferInput("input", [1, 3], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
        with pytest.raises(InferenceServerException):
            client.infer("xor-metrics", [bad])
        time.sleep(0.5)
    rpc_error(stubs.jobs.GetJob, job_pb2.GetJobRequest(job_id="j-nope"), timeout=10)
    prometheus.wait_for('ray_trainserve_inference_requests_total{endpoint="xor-metrics", '
                        'code!="OK"}')
    prometheus.wait_for("ray_trainserve_inference_batch_size_count")
    time.sleep(3)  # a few more scrapes after the last request
    return {"train": job, "search": searched}


def test_prometheus_scrapes_api_dispatcher_and_ray(prometheus, traffic):
    targets = prometheus.api("targets")["activeTargets"]
    jobs = {t["labels"]["job"] for t in targets if t["health"] == "up"}
    assert {"trainserve-api", "trainserve-dispatcher", "ray"} <= jobs, targets


def test_running_jobs_were_exported_with_their_epochs(prometheus, traffic):
    job = traffic["train"]
    got = prometheus.range(f'max_over_time(trainserve_training_epoch{{job_id="{job.id}"}}[1h])')
    assert got and got[0]["metric"]["job_name"] == "xor-metrics"
    assert 1 <= max(float(v) for _, v in got[0]["values"]) < 5000
    loss = prometheus.range(f'trainserve_training_loss{{job_id="{job.id}"}}')
    assert {s["metric"]["split"] for s in loss} == {"train", "val"}
    # Finished: its series are gone from the latest scrape.
    assert not prometheus.api("query", query=f'trainserve_training_epoch{{job_id="{job.id}"}}')[
        "result"]
    trials = prometheus.range(f'trainserve_search_trials{{job_id="{traffic["search"].id}"}}')
    assert trials


@pytest.mark.parametrize("q", queries(), ids=lambda q: f"{q.dashboard}:{q.panel}:{q.expr[:40]}")
def test_every_dashboard_query_returns_data(prometheus, traffic, q):
    expr = q.filled({"job": ".*", "search": ".*", "metric": ".*", "endpoint": ".*"}, RATE)
    result = prometheus.range(expr)
    if needs_gpu(q) and not _has_gpu():
        assert result == [], "GPU series without a GPU"  # CPU-only: honestly empty
        return
    assert result, f"no data for {q.where}"
    values = [float(v) for series in result for _, v in series["values"]]
    assert any(math.isfinite(v) for v in values), f"only NaN/Inf for {q.where}"
    for label in q.legend_labels():
        assert any(label in s["metric"] for s in result), f"legend {{{{{label}}}}} of {q.where}"


def test_dashboard_variables_have_values(prometheus, traffic):
    for dashboard, var, metric, label in variable_queries():
        values = prometheus.api(f"label/{label}/values", **{"match[]": metric},
                                start=prometheus.start, end=time.time())
        assert values, f"{dashboard}: ${var} has no values"


def test_every_dashboard_metric_and_label_exists_in_the_scrape(prometheus, traffic):
    names = set(prometheus.api("label/__name__/values"))
    problems = []
    for q in queries():
        labels: set[str] = set()
        for m in q.metrics():
            if m not in names:
                if needs_gpu(q) and not _has_gpu():
                    continue
                problems.append(f"{m} was never scraped ({q.where})")
                continue
            series = prometheus.api("series", **{"match[]": m}, start=prometheus.start,
                                    end=time.time())
            labels |= {k for s in series for k in s}
        if labels:
            problems += [f"label {x} not on any series of {q.where}"
                         for x in q.labels() - labels]
    assert not problems, "\n".join(problems)


def _has_gpu() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False
