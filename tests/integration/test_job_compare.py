"""Per-epoch curves, comparisons and label filters through the real job API (real gRPC, Redis,
dispatcher, Ray): a user's two small XOR jobs (3 epochs, differing in learning rate and
dropout) have curves equal to their epoch events, compare field by field, and are found by
their label; another user gets NOT_FOUND for them, as for GetJob."""
from __future__ import annotations

import json

import grpc
import pytest
from typer.testing import CliRunner

from tests.integration.helpers import example, rpc_error, wait_job, watch
from trainserve.core.pb import job_pb2

pytestmark = pytest.mark.integration

NOT_FOUND, INVALID = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def two_jobs(people):
    """Alice's two finished jobs, labelled suite=<tag>: (lr 0.05, no dropout), (lr 0.01,
    dropout 0.2)."""
    alice, _, tag = people
    specs = [example("xor_mlp", name=f"cmp-{tag}", labels={"suite": tag},
                     training={"epochs": 3}, optimizer={"lr": lr}, model={"mlp": {"dropout": d}})
             for lr, d in ((0.05, 0.0), (0.01, 0.2))]
    jobs = [alice.submit(spec) for spec in specs]
    done = [wait_job(alice, job.id, timeout=240) for job in jobs]
    assert all(j.state == job_pb2.JOB_STATE_SUCCEEDED for j in done), [j.message for j in done]
    return done


def test_curves_are_the_epoch_events(stack, people, two_jobs):
    alice, _, _ = people
    job = two_jobs[0]
    epochs = [e.epoch for e in watch(alice, job.id) if e.HasField("epoch")]
    assert [e.epoch for e in epochs] == [1, 2, 3]
    got = alice.jobs.GetJobCurves(job_pb2.GetJobCurvesRequest(job_id=job.id), timeout=10)
    assert got.stride == 1 and not got.trials
    assert set(got.metrics) == {name for e in epochs for name in e.metrics}
    for name, curve in got.metrics.items():
        assert list(curve.epochs) == [1, 2, 3]
        assert list(curve.values) == [e.metrics[name] for e in epochs]
    from trainserve.client import Client
    with Client(stack.config.api_address, token=alice.token) as sdk:
        data = sdk.curves(job.id)
    assert data["metrics"]["val_loss"] == [(e.epoch, e.metrics["val_loss"]) for e in epochs]


def test_compare_shows_best_epochs_and_exactly_the_fields_that_differ(people, two_jobs):
    alice, _, _ = people
    ids = [j.id for j in two_jobs]
    got = alice.jobs.CompareJobs(job_pb2.CompareJobsRequest(job_ids=ids), timeout=10)
    assert [j.job_id for j in got.jobs] == ids
    assert {d.path: list(d.values) for d in got.differences} == {
        "optimizer.lr": ["0.05", "0.01"], "model.mlp.dropout": ["0.0", "0.2"]}
    for row, job in zip(got.jobs, two_jobs):
        assert dict(row.final_metrics) == dict(job.metrics) and row.epochs == 3
        curve = alice.jobs.GetJobCurves(job_pb2.GetJobCurvesRequest(job_id=job.id),
                                        timeout=10).metrics["val_loss"]
        best = min(zip(curve.values, curve.epochs))  # lowest loss, first epoch on a tie
        assert (row.best["val_loss"].value, row.best["val_loss"].epoch) == best
        assert row.best["val_loss"].mode == "min" and row.best["val_accuracy"].mode == "max"
    err = rpc_error(alice.jobs.CompareJobs, job_pb2.CompareJobsRequest(job_ids=ids[:1]),
                    timeout=10)
    assert err.code() == INVALID and err.details().startswith("job_ids")


def test_cli_compare_and_jobs_by_label(stack, people, two_jobs, monkeypatch):
    alice, _, tag = people
    monkeypatch.setenv("TRAINSERVE_API", stack.config.api_address)
    monkeypatch.setenv("TRAINSERVE_TOKEN", alice.token)
    monkeypatch.setenv("COLUMNS", "200")
    from trainserve.cli.main import app
    ids = [j.id for j in two_jobs]
    shown = CliRunner().invoke(app, ["compare", *ids])
    assert shown.exit_code == 0, shown.output
    assert "optimizer.lr" in shown.stdout and "model.mlp.dropout" in shown.stdout
    listed = CliRunner().invoke(app, ["jobs", "-l", f"suite={tag}", "-o", "json"])
    assert [j["id"] for j in json.loads(listed.stdout)["jobs"]] == ids[::-1]


def test_label_filter_pages_and_keeps_to_the_owner(stubs, people, two_jobs):
    alice, bob, tag = people
    ids = [j.id for j in two_jobs][::-1]  # newest first
    other = alice.submit(example("xor_mlp", name=f"cmp-{tag}", labels={"suite": "other"},
                                 training={"epochs": 1}))
    seen, token = [], ""
    while True:
        page = alice.jobs.ListJobs(job_pb2.ListJobsRequest(
            labels=[f"suite={tag}"], page_size=1, page_token=token), timeout=10)
        seen += [j.id for j in page.jobs]
        token = page.next_page_token
        if not token:
            break
    assert seen == ids
    both = alice.jobs.ListJobs(job_pb2.ListJobsRequest(
        labels=[f"suite={tag}", "suite=nope"]), timeout=10).jobs
    assert not both
    assert [j.id for j in stubs.jobs.ListJobs(job_pb2.ListJobsRequest(
        labels=[f"suite={tag}"]), timeout=10).jobs] == ids  # the admin sees every user's
    assert not bob.jobs.ListJobs(job_pb2.ListJobsRequest(labels=[f"suite={tag}"]),
                                 timeout=10).jobs
    err = rpc_error(alice.jobs.ListJobs, job_pb2.ListJobsRequest(labels=["suite"]), timeout=10)
    assert err.code() == INVALID and err.details().startswith("labels[0]")
    wait_job(alice, other.id)


def test_another_user_gets_not_found(people, two_jobs):
    _, bob, _ = people
    ids = [j.id for j in two_jobs]
    err = rpc_error(bob.jobs.GetJobCurves, job_pb2.GetJobCurvesRequest(job_id=ids[0]),
                    timeout=10)
    assert err.code() == NOT_FOUND and ids[0] in err.details()
    err = rpc_error(bob.jobs.CompareJobs, job_pb2.CompareJobsRequest(job_ids=ids), timeout=10)
    assert err.code() == NOT_FOUND and ids[0] in err.details()
