"""Rollouts on the real stack: a canary version takes its share of an endpoint's requests once
loaded, is promoted or rolled back, and no request fails while any of it happens under load."""
from __future__ import annotations

import collections
import time

import grpc
import pytest

from tests.integration.helpers import Load, deploy, example, rpc_error, submit, wait_job
from trainserve.core.state import JobState
from trainserve.core.pb import deployment_pb2

pytestmark = pytest.mark.integration

CORNERS = {"inputs": [{"name": "input", "shape": [4, 2], "datatype": "FP32",
                       "data": [0, 0, 0, 1, 1, 0, 1, 1]}]}
READY = deployment_pb2.DEPLOYMENT_STATE_READY


@pytest.fixture(scope="module")
def versions(stubs):
    """Two versions of one model: xor-rollout:1 and :2."""
    for seed in (0, 1):
        spec = example("xor_mlp", name="xor-rollout", training={"seed": seed})
        job = wait_job(stubs, submit(stubs, spec).id, timeout=180)
        assert JobState(job.state) == JobState.SUCCEEDED, job.message
    return "xor-rollout"


def _labels_right(r) -> bool:
    outputs = r.json()["outputs"]
    return [o for o in outputs if o["name"] == "label"][0]["data"] == [0, 1, 1, 0]


def xor_load(url: str) -> Load:
    """Clients sending the XOR corners until stopped; a wrong label counts as a failure."""
    return Load(url, CORNERS, clients=4, check=_labels_right)


def _rollout(stubs, name, version, percent):
    return stubs.deployments.Rollout(deployment_pb2.RolloutRequest(
        name=name, model_version=version, canary_percent=percent), timeout=30)


def _get(stubs, name):
    return stubs.deployments.GetDeployment(deployment_pb2.GetDeploymentRequest(name=name),
                                           timeout=10)


def _wait(predicate, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise TimeoutError


def _counts_for(load: Load, seconds: float) -> collections.Counter:
    before = collections.Counter(load.versions)
    time.sleep(seconds)
    return load.versions - before


def test_rollout_split_promote_and_rollback_under_load_fail_nothing(stack, stubs, versions):
    assert deploy(stubs, versions, "xor-live", 1).state == READY
    url = f"http://{stack.config.serve_http}/v2/models/xor-live/infer"
    with xor_load(url) as load:
        _wait(lambda: sum(load.versions.values()) > 20)
        dep = _rollout(stubs, "xor-live", 2, 50)
        assert dep.canary_version == 2 and dep.canary_state == deployment_pb2.DEPLOYMENT_STATE_PENDING
        _wait(lambda: _get(stubs, "xor-live").canary_state == READY)
        time.sleep(1.5)  # the gateways' resolution caches
        split = _counts_for(load, 4)
        share = split["2"] / max(1, sum(split.values()))
        assert 0.25 <= share <= 0.75, split
        stubs.deployments.Promote(deployment_pb2.FinishRolloutRequest(name="xor-live"), timeout=10)
        time.sleep(1.5)
        after = _counts_for(load, 2)
        assert set(after) == {"2"}, after
        _rollout(stubs, "xor-live", 1, 100)
        _wait(lambda: _get(stubs, "xor-live").canary_state == READY)
        time.sleep(1.5)
        assert set(_counts_for(load, 2)) == {"1"}
        stubs.deployments.Rollback(deployment_pb2.FinishRolloutRequest(name="xor-live"),
                                   timeout=10)
        time.sleep(1.5)
        assert set(_counts_for(load, 2)) == {"2"}
    assert load.failures == [], load.failures[:5]
    dep = _get(stubs, "xor-live")
    assert (dep.model_version, dep.canary_version) == (2, 0)


def test_bad_rollouts_are_refused(stubs, versions):
    assert deploy(stubs, versions, "xor-bad", 2).state == READY
    cases = [
        (lambda: _rollout(stubs, "xor-bad", 2, 10), grpc.StatusCode.INVALID_ARGUMENT,
         "already serves"),
        (lambda: _rollout(stubs, "xor-bad", 1, 0), grpc.StatusCode.INVALID_ARGUMENT,
         "canary_percent"),
        (lambda: _rollout(stubs, "no-such-endpoint", 1, 10), grpc.StatusCode.NOT_FOUND, ""),
        (lambda: _rollout(stubs, "xor-bad", 9, 10), grpc.StatusCode.NOT_FOUND, ""),
        (lambda: stubs.deployments.Promote(deployment_pb2.FinishRolloutRequest(name="xor-bad"),
                                           timeout=10),
         grpc.StatusCode.FAILED_PRECONDITION, "no rollout"),
    ]
    for call, code, fragment in cases:
        err = rpc_error(call)
        assert err.code() == code, (err.code(), err.details())
        assert fragment in err.details()
