"""The stack's trackers through the dispatcher's job runner and the worker's own code, with a
real Redis: a job whose spec names no tracking is logged to the stack's (authenticating)
MLflow server and gets TensorBoard event files, its plots among both; the credentials never
reach anything a user can read (every Redis key: the job's record, events and worker logs;
every file of the job). A job with `tracking: {}` opts out.

The MLflow server is the small one of tests/unit/test_tracking_auth.py (the real server is in
test_tracking_mlflow.py); the worker's code runs in this process, as in a pooled Ray worker."""
from __future__ import annotations

import uuid

import pytest
from google.protobuf import json_format
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.unit.test_tracking_auth import SECRET, TinyMlflow, credentials_file
from trainserve.core.pb import spec_pb2
from trainserve.core.state import JobState
from trainserve.core.tracking import StackTracking
from trainserve.dispatch.runner import JobRunner
from trainserve.registry.service import DeploymentsCore
from trainserve.runtime import launch
from trainserve.store.jobs import JobStore
from trainserve.store.models import ModelStore
from trainserve.training.validate import check_spec

pytestmark = pytest.mark.integration


@pytest.fixture
def mlflow_server():
    server = TinyMlflow(expected=f"Bearer {SECRET}")
    yield server
    server.close()


def _runner(redis_client, redis_server, tmp_path, stack: StackTracking):
    store = JobStore(redis_client)
    runner = JobRunner(store, ModelStore(redis_client), DeploymentsCore(redis_client),
                       redis_server.url, str(tmp_path / "storage"),
                       run_job=lambda ctx, **_: launch._fast_path_task(ctx), tracking=stack)
    return store, runner


def _submit(store, tracking: dict | None):
    doc = {"name": f"xor-{uuid.uuid4().hex[:6]}", "dataset": {"name": "xor", "num_samples": 64},
           "model": {"mlp": {"hidden": [8]}}, "training": {"epochs": 3}}
    if tracking is not None:
        doc["tracking"] = tracking
    spec = check_spec(json_format.ParseDict(doc, spec_pb2.JobSpec()))
    return store.submit(spec, uuid.uuid4().hex, owner="alice")[0]


def _everything_in(r) -> bytes:
    """Every value of every Redis key, as one byte string."""
    out = []
    for key in r.scan_iter(count=1000):
        kind = r.type(key).decode()
        if kind == "string":
            out.append(r.get(key))
        elif kind == "hash":
            out += [k + b"=" + v for k, v in r.hgetall(key).items()]
        elif kind == "list":
            out += r.lrange(key, 0, -1)
        elif kind == "set":
            out += list(r.smembers(key))
        elif kind == "zset":
            out += r.zrange(key, 0, -1)
        elif kind == "stream":
            out += [k + b"=" + v for _, entry in r.xrange(key) for k, v in entry.items()]
    return b"\n".join(out)


def test_a_job_naming_no_tracker_uses_the_stacks_and_never_shows_its_credentials(
        redis_client, redis_server, tmp_path, mlflow_server):
    stack = StackTracking(mlflow_uri=mlflow_server.uri, tensorboard=True,
                          credentials_file=credentials_file(
                              tmp_path, f"MLFLOW_TRACKING_TOKEN={SECRET}\n"))
    store, runner = _runner(redis_client, redis_server, tmp_path, stack)
    job = _submit(store, None)
    assert runner.run(job.id) == JobState.SUCCEEDED, store.get(job.id).message
    done = store.get(job.id)
    assert done.tracking["mlflow_uri"] == mlflow_server.uri
    assert set(mlflow_server.headers) == {f"Bearer {SECRET}"}
    run = mlflow_server.runs[done.tracking["mlflow_run_id"]]
    assert run["status"] == "FINISHED" and run["params"]["training.epochs"] == "3"
    plots = {path.rsplit("/", 1)[-1] for path in mlflow_server.artifacts}
    assert {"curves.png", "confusion_matrix.png"} <= plots, plots
    acc = EventAccumulator(str(tmp_path / "storage" / "jobs" / job.id / "tensorboard"),
                           size_guidance={"images": 0})
    acc.Reload()
    assert {"plots/curves", "plots/confusion_matrix"} <= set(acc.Tags()["images"])
    assert [e.step for e in acc.Scalars("train_loss")] == [1, 2, 3]
    # The secret: nowhere in Redis (record, events, worker logs), nor in the job's files.
    assert b"MLflow: run" in _everything_in(redis_client)
    assert SECRET.encode() not in _everything_in(redis_client)
    for path in (tmp_path / "storage").rglob("*"):
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path


def test_a_job_with_an_empty_tracking_opts_out_of_the_stacks(redis_client, redis_server,
                                                            tmp_path, mlflow_server):
    stack = StackTracking(mlflow_uri=mlflow_server.uri, tensorboard=True)
    store, runner = _runner(redis_client, redis_server, tmp_path, stack)
    job = _submit(store, {})
    assert runner.run(job.id) == JobState.SUCCEEDED, store.get(job.id).message
    assert not mlflow_server.headers and not store.get(job.id).tracking
    assert not (tmp_path / "storage" / "jobs" / job.id / "tensorboard").exists()
