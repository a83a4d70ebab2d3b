"""Dynamic batching on the real stack: a digits CNN trained through the job API, deployed
with batching on, then off; concurrent REST requests get their own correct answers, and the
model host's batch sizes (read through the application's handle) show requests merged only
while batching is on."""
from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from tests.integration.helpers import example, get_model, rpc_error, submit, wait_job
from trainserve.core.state import JobState
from trainserve.core.pb import deployment_pb2

pytestmark = pytest.mark.integration

ENDPOINT = "digits-batching"
CONCURRENCY = 64
ROUNDS = 4  # requests per thread

_STATS = r"""
import json, sys
import ray
from ray import serve
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
print(json.dumps(serve.get_app_handle("trainserve").stats.remote().result(timeout_s=60)))
"""


def host_batch_sizes(stack, model_id: str) -> dict[int, int]:
    """{requests merged into one forward pass: passes} of `model_id` on the model host."""
    proc = subprocess.run([sys.executable, "-c", _STATS, stack.config.ray_address],
                          env={**os.environ, **stack.ray_env()}, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sizes = json.loads(proc.stdout.strip().splitlines()[-1])["batch_sizes"].get(model_id, {})
    return {int(k): v for k, v in sizes.items()}


def minus(after: dict[int, int], before: dict[int, int]) -> dict[int, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def deploy(stubs, model: str, **options) -> deployment_pb2.Deployment:
    stubs.deployments.Deploy(deployment_pb2.DeployRequest(
        name=ENDPOINT, model_name=model, options=deployment_pb2.ServingOptions(**options)),
        timeout=30)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        dep = stubs.deployments.GetDeployment(
            deployment_pb2.GetDeploymentRequest(name=ENDPOINT), timeout=10)
        if dep.state == deployment_pb2.DEPLOYMENT_STATE_READY:
            time.sleep(1.5)  # the gateway's resolution cache (1 s) sees the new options
            return dep
        assert dep.state == deployment_pb2.DEPLOYMENT_STATE_PENDING, dep.message
        time.sleep(0.25)
    raise TimeoutError(f"{ENDPOINT} not ready")


def fire(stack, xs: np.ndarray) -> list[tuple[list[float], int]]:
    """Each row of `xs` as its own request, CONCURRENCY at a time: (probabilities, label)."""
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    url = f"/v2/models/{ENDPOINT}/infer"
    with httpx.Client(base_url=f"http://{stack.config.serve_http}", timeout=60,
                      limits=limits) as http:
        def one(x):
            r = http.post(url, json={"inputs": [{
                "name": "input", "datatype": "FP32", "shape": [1, *x.shape],
                "data": x.reshape(-1).tolist()}]})
            assert r.status_code == 200, r.text
            out = {o["name"]: o["data"] for o in r.json()["outputs"]}
            return out["probabilities"], out["label"][0]
        with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
            return list(pool.map(one, xs))


@pytest.fixture(scope="module")
def digits_model(stack, stubs):
    spec = example("cnn_digits", name="batching-digits", training={"epochs": 3})
    job = wait_job(stubs, submit(stubs, spec).id, timeout=300)
    assert job.state == JobState.SUCCEEDED, job.message
    return get_model(stubs, "batching-digits")


def reference(mv, xs: np.ndarray) -> dict[str, np.ndarray]:
    """The model's answers computed in this process, the whole set as one batch."""
    from trainserve.serve.predictor import import_loader, load_predictor
    return load_predictor(mv.artifact_uri.removeprefix("file://"), import_loader()).predict(xs)


def check_answers(answers, want):
    probs = np.asarray([p for p, _ in answers], np.float32)
    np.testing.assert_allclose(probs, want["probabilities"], rtol=1e-4, atol=1e-6)
    assert [label for _, label in answers] == want["label"].tolist()


def test_batching_merges_concurrent_requests_and_each_gets_its_own_answer(stack, stubs,
                                                                         digits_model):
    from trainserve.training.datasets import load_dataset

    mv = digits_model
    model_id = f"{mv.name}:{mv.version}"
    x, _ = load_dataset(example("cnn_digits").dataset)
    xs = x[:CONCURRENCY * ROUNDS].astype(np.float32)
    want = reference(mv, xs)

    dep = deploy(stubs, mv.name, max_batch_size=32, batch_wait_ms=5)
    assert dep.options.max_batch_size == 32 and dep.options.batch_wait_ms == 5
    started = time.monotonic()
    check_answers(fire(stack, xs), want)
    batched_s = time.monotonic() - started
    after_batched = host_batch_sizes(stack, model_id)  # a new model: nothing ran before
    batched = after_batched
    assert sum(k * v for k, v in batched.items()) == len(xs)
    assert max(batched) > 1, batched
    assert max(batched) <= 32

    deploy(stubs, mv.name)  # batching off
    started = time.monotonic()
    check_answers(fire(stack, xs), want)
    single_s = time.monotonic() - started
    single = minus(host_batch_sizes(stack, model_id), after_batched)
    assert single == {1: len(xs)}, single
    print(f"\n{len(xs)} requests, {CONCURRENCY} at a time: batched {batched_s:.2f} s, "
          f"batch sizes {batched}; unbatched {single_s:.2f} s")


def test_deploy_checks_the_serving_options(stubs, digits_model):
    import grpc

    for options, field in [({"max_batch_size": 5000}, "options.max_batch_size"),
                           ({"max_batch_size": 8, "batch_wait_ms": 2000},
                            "options.batch_wait_ms")]:
        err = rpc_error(stubs.deployments.Deploy, deployment_pb2.DeployRequest(
            name="digits-bad-options", model_name=digits_model.name,
            options=deployment_pb2.ServingOptions(**options)), timeout=30)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in err.details()
