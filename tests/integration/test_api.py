"""The job API over real gRPC: bad input, NOT_FOUND, idempotency, cancel, listing, health,
reflection, and a job that outlives a killed API server."""
from __future__ import annotations

import time
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.integration.helpers import example, rpc_error, submit, wait_job
from trainserve.core.spec import parse_spec
from trainserve.core.state import JobState
from trainserve.core.pb import deployment_pb2, job_pb2, model_pb2

pytestmark = pytest.mark.integration

BASE = {"dataset": {"name": "xor"}, "model": {"mlp": {"hidden": [8]}},
        "training": {"epochs": 2}}


def _with(path: str, value):
    doc = {k: dict(v) for k, v in BASE.items()}
    section, _, key = path.partition(".")
    if key:
        doc.setdefault(section, {})[key] = value
    else:
        doc[section] = value
    return parse_spec(doc)


@pytest.mark.parametrize("path,value,field,words", [
    ("dataset.name", "mnist-not-here", "spec.dataset.name", "digits"),
    ("training.epochs", 0, "spec.training.epochs", ""),
    ("training.batch_size", -1, "spec.training.batch_size", ""),
    ("split.test_fraction", 1.5, "spec.split.test_fraction", ""),
    ("split.test_fraction", 0.0, "spec.split.test_fraction", ""),
    ("optimizer.name", "adamax", "spec.optimizer.name", "adam"),
    ("scaling.num_workers", 64, "spec.scaling.num_workers", "cluster has 2"),
])
def test_bad_spec_is_invalid_argument_with_field_path(stubs, path, value, field, words):
    err = rpc_error(submit, stubs, _with(path, value))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith(field), err.details()
    assert words in err.details()


def test_missing_required_sections(stubs):
    for doc, field in [({"model": {"mlp": {}}}, "spec.dataset"), ({"dataset": {"name": "xor"}},
                                                                    "spec.model")]:
        err = rpc_error(submit, stubs, parse_spec(doc))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.details().startswith(field), err.details()


def test_unknown_things_are_not_found(stubs):
    cases = [
        (stubs.jobs.GetJob, job_pb2.GetJobRequest(job_id="j-nope")),
        (stubs.jobs.CancelJob, job_pb2.CancelJobRequest(job_id="j-nope")),
        (stubs.models.GetModel, model_pb2.GetModelRequest(name="nope")),
        (stubs.deployments.GetDeployment, deployment_pb2.GetDeploymentRequest(name="nope")),
        (stubs.deployments.Deploy, deployment_pb2.DeployRequest(name="x", model_name="nope")),
        (stubs.deployments.Undeploy, deployment_pb2.UndeployRequest(name="nope")),
    ]
    for method, request in cases:
        assert rpc_error(method, request, timeout=10).code() == grpc.StatusCode.NOT_FOUND
    stream = stubs.jobs.WatchJob(job_pb2.WatchJobRequest(job_id="j-nope"), timeout=10)
    assert rpc_error(list, stream).code() == grpc.StatusCode.NOT_FOUND


def test_resubmission_with_the_same_request_id_returns_the_same_job(stubs):
    rid = uuid.uuid4().hex
    spec = parse_spec(BASE)
    first = submit(stubs, spec, rid)
    second = submit(stubs, spec, rid)
    assert first.id == second.id
    listed = stubs.jobs.ListJobs(job_pb2.ListJobsRequest(page_size=1000)).jobs
    assert sum(j.request_id == rid for j in listed) == 1
    wait_job(stubs, first.id)


def test_list_jobs_filters_by_state_and_pages(stubs):
    ids = {submit(stubs, parse_spec(BASE)).id for _ in range(3)}
    for job_id in ids:
        wait_job(stubs, job_id)
    seen, token = [], ""
    while True:
        page = stubs.jobs.ListJobs(job_pb2.ListJobsRequest(page_size=2, page_token=token))
        seen += [j.id for j in page.jobs]
        token = page.next_page_token
        if not token:
            break
    assert ids <= set(seen) and len(seen) == len(set(seen))
    done = stubs.jobs.ListJobs(job_pb2.ListJobsRequest(state=job_pb2.JOB_STATE_SUCCEEDED,
                                                       page_size=1000)).jobs
    assert ids <= {j.id for j in done}
    assert all(j.state == job_pb2.JOB_STATE_SUCCEEDED for j in done)
    err = rpc_error(stubs.jobs.ListJobs, job_pb2.ListJobsRequest(page_size=5000))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_size" in err.details()


def test_cancel_a_running_job(stubs):
    spec = example("digits_lenet5", training={"epochs": 2000}, scaling={"num_workers": 1},
                   name="cancel-me")
    spec.ClearField("deploy")
    job = submit(stubs, spec)
    for event in stubs.jobs.WatchJob(job_pb2.WatchJobRequest(job_id=job.id), timeout=120):
        if event.HasField("epoch"):
            break
    cancelled = stubs.jobs.CancelJob(job_pb2.CancelJobRequest(job_id=job.id))
    assert cancelled.cancel_requested
    done = wait_job(stubs, job.id, timeout=60)
    assert JobState(done.state) == JobState.CANCELLED
    assert done.epoch < 2000 and not done.model_name
    err = rpc_error(stubs.jobs.CancelJob, job_pb2.CancelJobRequest(job_id=job.id))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_health_and_reflection(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "trainserve.v1.JobService"):
        resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    reply = next(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        list_services="")]), timeout=5))
    names = {s.name for s in reply.list_services_response.service}
    assert {"trainserve.v1.JobService", "trainserve.v1.ModelService",
            "trainserve.v1.DeploymentService", "grpc.health.v1.Health"} <= names


def test_job_survives_an_api_server_kill(stack, stubs):
    job = submit(stubs, example("xor_mlp", training={"epochs": 40}))
    stack.kill("api")
    time.sleep(0.5)
    stack.start("api")
    done = wait_job(stubs, job.id, timeout=180)  # the channel reconnects by itself
    assert JobState(done.state) == JobState.SUCCEEDED, done.message
    listed = stubs.jobs.ListJobs(job_pb2.ListJobsRequest(page_size=1000)).jobs
    assert job.id in {j.id for j in listed}
