"""Fifty models on one small machine: fifty tiny XOR jobs through the job API, each deploying
its model (half of them with dynamic batching, from the job spec), all answered by the one
multiplexed model host of the stack (2 CPUs)."""
from __future__ import annotations

import concurrent.futures
import time

import httpx
import numpy as np
import pytest

from tests.integration.helpers import example, submit, wait_job
from trainserve.core.state import JobState
from trainserve.core.pb import deployment_pb2

pytestmark = pytest.mark.integration

NUM_MODELS = 50
CORNERS = [[0, 0], [0, 1], [1, 0], [1, 1]]
XOR = [0, 1, 1, 0]


def xor_spec(i: int):
    """A small XOR MLP of its own (seed, sample count, epochs) that deploys itself."""
    deploy = {"name": f"xor-{i:02d}"}
    if i % 2:
        deploy.update(max_batch_size=8, batch_wait_ms=1.0)
    return example("xor_mlp", name=f"many-xor-{i:02d}",
                   dataset={"num_samples": 400 + 8 * i},
                   optimizer={"lr": 0.1},
                   training={"epochs": 2 + i % 2, "seed": i, "batch_size": 8},
                   deploy=deploy)


def wait_ready(stubs, names: list[str], timeout: float) -> dict[str, deployment_pb2.Deployment]:
    deadline, ready = time.monotonic() + timeout, {}
    while time.monotonic() < deadline and len(ready) < len(names):
        for dep in stubs.deployments.ListDeployments(
                deployment_pb2.ListDeploymentsRequest(), timeout=10).deployments:
            if dep.name in names and dep.state != deployment_pb2.DEPLOYMENT_STATE_PENDING:
                ready[dep.name] = dep
        time.sleep(0.5)
    return ready


def test_fifty_models_share_the_model_host(stack, stubs):
    started = time.monotonic()
    jobs = [submit(stubs, xor_spec(i)) for i in range(NUM_MODELS)]
    submitted_s = time.monotonic() - started
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        done = list(pool.map(lambda j: wait_job(stubs, j.id, timeout=240), jobs))
    trained_s = time.monotonic() - started
    failed = [(j.id, j.message) for j in done if j.state != JobState.SUCCEEDED]
    assert not failed, failed

    names = [f"xor-{i:02d}" for i in range(NUM_MODELS)]
    deps = wait_ready(stubs, names, timeout=120)
    not_ready = {n: (deps[n].state, deps[n].message) if n in deps else "pending"
                 for n in names if n not in deps
                 or deps[n].state != deployment_pb2.DEPLOYMENT_STATE_READY}
    assert not not_ready, not_ready
    assert deps["xor-01"].options.max_batch_size == 8
    assert deps["xor-01"].options.batch_wait_ms == 1.0
    assert deps["xor-00"].options.max_batch_size == 0
    deployed_s = time.monotonic() - started

    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [4, 2],
                        "data": np.asarray(CORNERS, np.float32).reshape(-1).tolist()}],
            "outputs": [{"name": "label"}]}
    wrong = {}
    with httpx.Client(base_url=f"http://{stack.config.serve_http}", timeout=30) as http:
        for name in names:
            r = http.post(f"/v2/models/{name}/infer", json=body)
            assert r.status_code == 200, (name, r.text)
            labels = r.json()["outputs"][0]["data"]
            if labels != XOR:
                wrong[name] = labels
    assert not wrong, wrong
    print(f"\n{NUM_MODELS} models: submitted in {submitted_s:.1f} s, trained by "
          f"{trained_s:.1f} s, deployed by {deployed_s:.1f} s, all answered by "
          f"{time.monotonic() - started:.1f} s")
