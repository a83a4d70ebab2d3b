"""Tenancy on a real job API with authentication (real gRPC over sockets, real Redis): two
users each see and control only their own jobs, datasets, models and deployments (anyone
else's answer NOT_FOUND, as if they did not exist), cannot take each other's names, and an
admin sees everything."""
from __future__ import annotations

import grpc
import pytest

from tests.integration.helpers import example
from tests.integration.test_api_auth import Server, _cfg
from trainserve.core.pb import (auth_pb2, auth_pb2_grpc, dataset_pb2, dataset_pb2_grpc,
                           deployment_pb2, deployment_pb2_grpc, job_pb2, job_pb2_grpc,
                           model_pb2, model_pb2_grpc)
from trainserve.store import keys

pytestmark = pytest.mark.integration

CSV = b"a,b,label\n" + b"".join(b"%d,%d,%d\n" % (i % 7, i % 5, i % 2) for i in range(40))


class As:
    """Stubs that call the API as one user (its token)."""

    def __init__(self, address: str, token: str):
        from trainserve.client import api_channel
        self.channel = api_channel(address, token)
        self.jobs = job_pb2_grpc.JobServiceStub(self.channel)
        self.models = model_pb2_grpc.ModelServiceStub(self.channel)
        self.deployments = deployment_pb2_grpc.DeploymentServiceStub(self.channel)
        self.datasets = dataset_pb2_grpc.DatasetServiceStub(self.channel)

    def submit(self, spec, **kw):
        return self.jobs.SubmitJob(job_pb2.SubmitJobRequest(spec=spec, **kw), timeout=30)

    def upload(self, name: str):
        parts = [dataset_pb2.UploadDatasetRequest(
                     header=dataset_pb2.DatasetUploadHeader(name=name, format="csv")),
                 dataset_pb2.UploadDatasetRequest(chunk=CSV)]
        return self.datasets.UploadDataset(iter(parts), timeout=30)


def _code(call) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


@pytest.fixture
def users(redis_server, redis_client, tmp_path):
    """(admin, alice, bob) on a fresh server with authentication; the dispatcher is absent,
    so jobs stay QUEUED."""
    token_file = tmp_path / "admin-token"
    with Server(_cfg(redis_server, tmp_path, auth=True,
                     admin_token_file=str(token_file))) as server:
        admin = As(server.address, token_file.read_text().strip())
        tokens = auth_pb2_grpc.AuthServiceStub(admin.channel)
        made = {u: tokens.CreateToken(auth_pb2.CreateTokenRequest(user=u), timeout=10).token
                for u in ("alice", "bob")}
        yield admin, As(server.address, made["alice"]), As(server.address, made["bob"])


def _register(redis_client, tmp_path, name: str, user: str) -> model_pb2.ModelVersion:
    """A model version owned by `user`, as the dispatcher registers one after a job."""
    from trainserve.store.models import ModelStore
    mv = model_pb2.ModelVersion(name=name, version=1, job_id=f"j-{user}", user=user,
                                task="classification", artifact_uri=str(tmp_path / name))
    ModelStore(redis_client).put(mv)
    redis_client.zadd(keys.MODELS, {name: 0})
    return mv


def test_jobs_are_their_owners(users):
    admin, alice, bob = users
    mine = alice.submit(example("xor_mlp", name="alice-xor"))
    assert mine.user == "alice"
    theirs = bob.submit(example("xor_mlp", name="bob-xor"))
    assert [j.id for j in alice.jobs.ListJobs(job_pb2.ListJobsRequest(), timeout=10).jobs] \
        == [mine.id]
    assert {j.id for j in admin.jobs.ListJobs(job_pb2.ListJobsRequest(), timeout=10).jobs} \
        >= {mine.id, theirs.id}
    for call in (lambda: alice.jobs.GetJob(job_pb2.GetJobRequest(job_id=theirs.id), timeout=10),
                 lambda: alice.jobs.CancelJob(job_pb2.CancelJobRequest(job_id=theirs.id),
                                              timeout=10),
                 lambda: list(alice.jobs.StreamLogs(job_pb2.StreamLogsRequest(
                     job_id=theirs.id), timeout=10)),
                 lambda: alice.jobs.ListArtifacts(job_pb2.ListArtifactsRequest(
                     job_id=theirs.id), timeout=10),
                 lambda: list(alice.jobs.WatchJob(job_pb2.WatchJobRequest(job_id=theirs.id),
                                                  timeout=10))):
        assert _code(call) == grpc.StatusCode.NOT_FOUND
    assert bob.jobs.GetJob(job_pb2.GetJobRequest(job_id=theirs.id), timeout=10).state == \
        job_pb2.JOB_STATE_QUEUED  # untouched by alice's cancel
    assert admin.jobs.CancelJob(job_pb2.CancelJobRequest(job_id=theirs.id), timeout=10)
    assert _code(lambda: alice.submit(example("xor_mlp"), user="bob")) == \
        grpc.StatusCode.PERMISSION_DENIED
    on_behalf = admin.submit(example("xor_mlp", name="bob-xor-2"), user="bob")
    assert on_behalf.user == "bob"


def test_datasets_are_their_owners(users):
    admin, alice, bob = users
    assert alice.upload("alice-data").user == "alice"
    assert _code(lambda: bob.datasets.GetDataset(dataset_pb2.GetDatasetRequest(
        name="alice-data"), timeout=10)) == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: bob.datasets.DeleteDataset(dataset_pb2.DeleteDatasetRequest(
        name="alice-data"), timeout=10)) == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: bob.upload("alice-data")) == grpc.StatusCode.ALREADY_EXISTS
    assert [d.name for d in bob.datasets.ListDatasets(dataset_pb2.ListDatasetsRequest(),
                                                      timeout=10).datasets] == []
    # A job of bob's cannot train on alice's data: to him it does not exist.
    spec = example("xor_mlp", name="bob-on-alice")
    spec.dataset.Clear()
    spec.dataset.name, spec.dataset.target_column = "alice-data", "label"
    with pytest.raises(grpc.RpcError) as err:
        bob.submit(spec)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("spec.dataset.name")
    spec.name = "alice-on-alice"
    assert alice.submit(spec).user == "alice"
    assert "alice-data" in [d.name for d in admin.datasets.ListDatasets(
        dataset_pb2.ListDatasetsRequest(), timeout=10).datasets]


def test_models_and_deployments_are_their_owners(users, redis_client, tmp_path):
    admin, alice, bob = users
    _register(redis_client, tmp_path, "alice-model", "alice")
    assert [m.name for m in bob.models.ListModels(model_pb2.ListModelsRequest(),
                                                  timeout=10).models] == []
    assert _code(lambda: bob.models.GetModel(model_pb2.GetModelRequest(name="alice-model"),
                                             timeout=10)) == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: bob.deployments.Deploy(deployment_pb2.DeployRequest(
        name="bobs", model_name="alice-model"), timeout=10)) == grpc.StatusCode.NOT_FOUND
    dep = alice.deployments.Deploy(deployment_pb2.DeployRequest(
        name="alice-ep", model_name="alice-model"), timeout=10)
    assert dep.user == "alice"
    for call in (lambda: bob.deployments.GetDeployment(deployment_pb2.GetDeploymentRequest(
                     name="alice-ep"), timeout=10),
                 lambda: bob.deployments.Undeploy(deployment_pb2.UndeployRequest(
                     name="alice-ep"), timeout=10),
                 lambda: bob.deployments.Rollback(deployment_pb2.FinishRolloutRequest(
                     name="alice-ep"), timeout=10)):
        assert _code(call) == grpc.StatusCode.NOT_FOUND
    assert bob.deployments.ListDeployments(deployment_pb2.ListDeploymentsRequest(),
                                           timeout=10).deployments == []
    # Bob can use neither alice's model name nor her endpoint name for his own.
    assert _code(lambda: bob.submit(example("xor_mlp", name="alice-model"))) == \
        grpc.StatusCode.ALREADY_EXISTS
    _register(redis_client, tmp_path, "bob-model", "bob")
    assert _code(lambda: bob.deployments.Deploy(deployment_pb2.DeployRequest(
        name="alice-ep", model_name="bob-model"), timeout=10)) == grpc.StatusCode.ALREADY_EXISTS
    assert _code(lambda: bob.submit(example("xor_mlp", name="bob-xor",
                                            deploy={"name": "alice-ep"}))) == \
        grpc.StatusCode.ALREADY_EXISTS
    names = {d.name for d in admin.deployments.ListDeployments(
        deployment_pb2.ListDeploymentsRequest(), timeout=10).deployments}
    assert "alice-ep" in names
    assert admin.deployments.Undeploy(deployment_pb2.UndeployRequest(name="alice-ep"),
                                      timeout=10).name == "alice-ep"
