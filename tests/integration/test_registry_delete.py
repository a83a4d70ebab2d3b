"""Deleting jobs and model versions through the real job API, and comparing a search's
trials: what still references a thing refuses its deletion (FAILED_PRECONDITION naming the
referrer); a deletion removes the thing's records and files; another user gets NOT_FOUND for
everything of the first one's."""
from __future__ import annotations

import json
import time

import grpc
import pytest

from tests.integration.helpers import example, rpc_error, wait_job
from tests.integration.test_registry_aliases import cli, sdk  # noqa: F401 - fixtures
from trainserve.core.pb import deployment_pb2, job_pb2, model_pb2
from trainserve.core.spec import parse_spec
from trainserve.core.state import JobState

pytestmark = pytest.mark.integration

NOT_FOUND, FAILED = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION


def test_a_served_version_and_its_job_are_kept_until_nothing_refers_to_them(
        stack, people, cli):  # noqa: F811
    alice, bob, tag = people
    name, endpoint = f"del-{tag}", f"del-{tag}"
    job = wait_job(alice, alice.submit(example("xor_mlp", name=name,
                                               training={"epochs": 2})).id, timeout=240)
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.message
    files = stack.config.storage_path / "jobs" / job.id
    version_files = stack.config.storage_path / "models" / name / str(job.model_version)
    assert files.is_dir() and version_files.is_dir()
    with sdk(stack, alice) as ts:
        ts.deploy(name, job.model_version, name=endpoint, timeout=180)
    err = rpc_error(alice.models.DeleteModelVersion, model_pb2.DeleteModelVersionRequest(
        name=name, version=job.model_version), timeout=10)
    assert err.code() == FAILED and f"endpoint {endpoint!r}" in err.details()
    refused = cli(alice.token, "delete", job.id)
    assert refused.exit_code == 1 and f"{name}:{job.model_version}" in refused.stderr
    for method, request in (
            (bob.jobs.DeleteJob, job_pb2.DeleteJobRequest(job_id=job.id)),
            (bob.models.DeleteModelVersion, model_pb2.DeleteModelVersionRequest(
                name=name, version=job.model_version))):
        assert rpc_error(method, request, timeout=10).code() == NOT_FOUND
    alice.deployments.Undeploy(deployment_pb2.UndeployRequest(name=endpoint), timeout=30)
    gone = cli(alice.token, "model", "delete", f"{name}:{job.model_version}")
    assert gone.exit_code == 0, gone.output
    assert not version_files.exists()
    deleted = cli(alice.token, "delete", job.id, "-o", "json")
    assert deleted.exit_code == 0, deleted.output
    assert json.loads(deleted.stdout)["jobs"][0]["id"] == job.id
    assert not files.exists()
    for method, request in ((alice.jobs.GetJob, job_pb2.GetJobRequest(job_id=job.id)),
                            (alice.jobs.GetJobCurves, job_pb2.GetJobCurvesRequest(
                                job_id=job.id)),
                            (alice.jobs.DeleteJob, job_pb2.DeleteJobRequest(job_id=job.id))):
        assert rpc_error(method, request, timeout=10).code() == NOT_FOUND
    listed = alice.jobs.ListJobs(job_pb2.ListJobsRequest(), timeout=10).jobs
    assert job.id not in [j.id for j in listed]


def test_an_unfinished_job_is_refused_until_cancelled(stack, people):  # noqa: F811
    alice, _, tag = people
    job = alice.submit(example("xor_mlp", name=f"long-{tag}", training={"epochs": 100000}))
    err = rpc_error(alice.jobs.DeleteJob, job_pb2.DeleteJobRequest(job_id=job.id), timeout=10)
    assert err.code() == FAILED and "cancel it first" in err.details()
    alice.jobs.CancelJob(job_pb2.CancelJobRequest(job_id=job.id), timeout=10)
    done = wait_job(alice, job.id, timeout=120)
    assert JobState(done.state) == JobState.CANCELLED
    alice.jobs.DeleteJob(job_pb2.DeleteJobRequest(job_id=job.id), timeout=30)
    assert not (stack.config.storage_path / "jobs" / job.id).exists()


def test_compare_one_search_shows_its_trials_side_by_side(people, cli):  # noqa: F811
    alice, bob, tag = people
    spec = parse_spec({"name": f"grid-{tag}", "dataset": {"name": "xor"},
                       "model": {"mlp": {"hidden": [8]}}, "training": {"epochs": 2},
                       "search": {"algorithm": "grid", "metric": "val_loss", "mode": "min",
                                  "space": {"optimizer.lr": "grid([0.01, 0.1])"},
                                  "trial_resources": {"cpus": 0.5}}})
    job = wait_job(alice, alice.submit(spec).id, timeout=300)
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.message
    got = alice.jobs.CompareJobs(job_pb2.CompareJobsRequest(job_ids=[job.id]), timeout=10)
    assert sorted(r.trial_id for r in got.jobs) == sorted(t.id for t in job.trials)
    assert all(r.job_id == job.id and r.trial_state == "finished" and r.epochs == 2
               for r in got.jobs)
    assert [d.path for d in got.differences] == ["optimizer.lr"]
    assert sorted(got.differences[0].values) == ["0.01", "0.1"]
    shown = cli(alice.token, "compare", job.id)
    assert shown.exit_code == 0, shown.output
    assert "TRIAL" in shown.stdout and "optimizer.lr" in shown.stdout
    assert all(t.id in shown.stdout for t in job.trials)
    err = rpc_error(bob.jobs.CompareJobs, job_pb2.CompareJobsRequest(job_ids=[job.id]),
                    timeout=10)
    assert err.code() == NOT_FOUND
