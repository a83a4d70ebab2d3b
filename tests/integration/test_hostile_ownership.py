"""Ownership that holds at every step, tried by a hostile second user on the real stack (real
Redis, job API with tokens, dispatcher, Ray, Serve): names a queued job will register and
deploy are its owner's from submission on, Deploy and uploads claim their names atomically,
rollouts act only on the caller's endpoint and its owner's versions, and names match whole."""
from __future__ import annotations

import threading
import time
import uuid

import grpc
import pytest

from tests.integration.helpers import example, rpc_error, wait_job
from tests.integration.test_api_tenancy import CSV, As
from trainserve.core.state import JobState
from trainserve.core.pb import (auth_pb2, auth_pb2_grpc, dataset_pb2, deployment_pb2, job_pb2,
                           model_pb2)
from trainserve.store import keys

pytestmark = pytest.mark.integration

ALREADY_EXISTS, NOT_FOUND = grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.NOT_FOUND


@pytest.fixture(scope="module")
def users(stack, channel):
    """(alice, bob): two plain users of the stack, each with a token of their own (names
    unique to this run: the stack is shared by the session)."""
    tokens = auth_pb2_grpc.AuthServiceStub(channel)
    tag = uuid.uuid4().hex[:6]
    made = []
    for who in ("alice", "bob"):
        user = f"{who}-{tag}"
        made.append(As(stack.config.api_address, tokens.CreateToken(
            auth_pb2.CreateTokenRequest(user=user), timeout=10).token))
        made[-1].user = user
    yield made
    for u in made:
        u.channel.close()


@pytest.fixture(scope="module")
def redis_of(stack):
    from trainserve.store.redis import connect
    r = connect(stack.config.redis_url)
    yield r
    r.close()


def _fake_version(r, name: str, user: str, version: int = 1) -> model_pb2.ModelVersion:
    """A version record owned by `user`, written as the registry writes one (never loaded:
    nothing here deploys it successfully)."""
    from trainserve.store.models import ModelStore
    mv = model_pb2.ModelVersion(name=name, version=version, job_id=f"j-{user}", user=user,
                                task="classification", artifact_uri="/nonexistent")
    ModelStore(r).put(mv)
    r.zadd(keys.MODELS, {name: 0})
    return mv


def _deploy(who: As, name: str, model: str, version: int = 0):
    return lambda: who.deployments.Deploy(deployment_pb2.DeployRequest(
        name=name, model_name=model, model_version=version), timeout=30)


@pytest.fixture(scope="module")
def raced(users, redis_of):
    """Alice submits a small XOR job with model name M and endpoint X; while it is queued or
    running (nothing registered, nothing deployed) bob tries both names, by submission and by
    Deploy of a model of his own. Returns the names, alice's finished job, and what bob's
    attempts answered."""
    alice, bob = users
    tag = uuid.uuid4().hex[:6]
    model, endpoint = f"own-m-{tag}", f"own-x-{tag}"
    _fake_version(redis_of, f"bob-m-{tag}", bob.user)
    spec = example("xor_mlp", name=model, deploy={"name": endpoint}, training={"epochs": 5})
    job = alice.submit(spec)
    early = alice.jobs.GetJob(job_pb2.GetJobRequest(job_id=job.id), timeout=10)
    attempts = {
        "submit same endpoint": rpc_error(bob.submit, example(
            "xor_mlp", name=f"bob-x-{tag}", deploy={"name": endpoint}, training={"epochs": 5})),
        "submit same model": rpc_error(bob.submit, example(
            "xor_mlp", name=model, training={"epochs": 5})),
        "deploy own model as X": rpc_error(_deploy(bob, endpoint, f"bob-m-{tag}")),
    }
    done = wait_job(alice, job.id, timeout=300)
    return {"model": model, "endpoint": endpoint, "early": early, "done": done,
            "attempts": attempts, "tag": tag}


def test_names_of_a_queued_job_are_its_owners_before_anything_exists(users, raced):
    alice, bob = users
    assert not JobState(raced["early"].state).is_terminal  # the race: nothing registered yet
    fields = {"submit same endpoint": "spec.deploy.name", "submit same model": "spec.name",
              "deploy own model as X": "name"}
    for what, err in raced["attempts"].items():
        assert err.code() == ALREADY_EXISTS, (what, err.details())
        assert err.details().startswith(f"{fields[what]}: "), (what, err.details())
    done = raced["done"]
    assert done.state == job_pb2.JOB_STATE_SUCCEEDED, done.message
    assert (done.model_name, done.deployment) == (raced["model"], raced["endpoint"])

    def endpoints(who):
        return {d.name: d.user for d in who.deployments.ListDeployments(
            deployment_pb2.ListDeploymentsRequest(), timeout=10).deployments}
    assert done.user == alice.user and endpoints(alice).get(raced["endpoint"]) == alice.user
    assert raced["endpoint"] not in endpoints(bob)
    assert [m.user for m in alice.models.ListModels(model_pb2.ListModelsRequest(
        name=raced["model"]), timeout=10).models] == [done.user]


def test_rollouts_act_only_on_the_callers_endpoint_and_its_owners_versions(users, raced,
                                                                           redis_of):
    alice, bob = users
    name, model = raced["endpoint"], raced["model"]
    for call in (lambda: bob.deployments.Rollout(deployment_pb2.RolloutRequest(
                     name=name, model_version=1, canary_percent=50), timeout=10),
                 lambda: bob.deployments.Promote(deployment_pb2.FinishRolloutRequest(
                     name=name), timeout=10),
                 lambda: bob.deployments.Rollback(deployment_pb2.FinishRolloutRequest(
                     name=name), timeout=10)):
        assert rpc_error(call).code() == NOT_FOUND
    # A version of another user inside alice's model name (what the race left behind before
    # names were claimed) is never rolled out onto her endpoint.
    _fake_version(redis_of, model, bob.user, version=99)
    try:
        err = rpc_error(lambda: alice.deployments.Rollout(deployment_pb2.RolloutRequest(
            name=name, model_version=99, canary_percent=50), timeout=10))
    finally:
        redis_of.hdel(keys.model(model), "99")
    assert err.code() == NOT_FOUND, err.details()
    dep = alice.deployments.GetDeployment(deployment_pb2.GetDeploymentRequest(name=name),
                                          timeout=10)
    assert dep.canary_version == 0 and dep.user == raced["done"].user


def test_another_users_model_and_dataset_name_cannot_be_taken(users, raced):
    alice, bob = users
    tag = raced["tag"]
    for version in (0, 1):
        err = rpc_error(_deploy(bob, f"bob-ep-{tag}", raced["model"], version))
        assert err.code() == NOT_FOUND, err.details()
    # An upload claims its name with its header: a second user's upload of the same name,
    # finished while the first is still streaming, is refused (not written over later).
    name, release, sent = f"own-d-{tag}", threading.Event(), threading.Event()

    def slow_parts():
        yield dataset_pb2.UploadDatasetRequest(
            header=dataset_pb2.DatasetUploadHeader(name=name, format="csv"))
        sent.set()
        release.wait(30)
        yield dataset_pb2.UploadDatasetRequest(chunk=CSV)
    result = {}
    first = threading.Thread(target=lambda: result.update(
        ds=alice.datasets.UploadDataset(slow_parts(), timeout=60)))
    first.start()
    assert sent.wait(10)
    time.sleep(1.0)  # the server has read the header by now
    try:
        err = rpc_error(bob.upload, name)
    finally:
        release.set()
        first.join(60)
    assert err.code() == ALREADY_EXISTS and err.details().startswith("header.name: ")
    assert result["ds"].user == alice.user
    assert rpc_error(lambda: bob.datasets.GetDataset(dataset_pb2.GetDatasetRequest(
        name=name), timeout=10)).code() == NOT_FOUND


@pytest.mark.parametrize("bad", ["prod\n", "prod\r\n"])
def test_names_with_a_trailing_newline_are_refused(users, bad):
    alice, _ = users
    spec = example("xor_mlp", name=f"nl-{uuid.uuid4().hex[:6]}", deploy={"name": bad})
    err = rpc_error(alice.submit, spec)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("spec.deploy.name: ")
    spec.name, spec.deploy.name = bad, "fine"
    assert rpc_error(alice.submit, spec).details().startswith("spec.name: ")
    err = rpc_error(_deploy(alice, bad, "anything"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith("name: ")
    err = rpc_error(alice.upload, bad)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("header.name: ")
