"""launch/reporting without a Ray cluster: job context, reporters, readable errors."""
import os
import sys
import types

import pytest

from trainserve.core import errors
from trainserve.core.pb import spec_pb2
from trainserve.runtime.context import TRAIN_POLL_S, JobContext, poll_workers_often
from trainserve.runtime.launch import readable_error
from trainserve.runtime.reporting import make_reporter
from trainserve.training.reporting import CancelFileReporter, ListReporter, NullReporter, Reporter


def _ctx(**kw):
    spec = spec_pb2.JobSpec()
    spec.dataset.name = "xor"
    return JobContext(**({"job_id": "j1", "spec": spec, "redis_url": None,
                          "storage_dir": "/tmp/ts"} | kw))


def test_job_context_serializes_the_spec_and_applies_scaling_defaults():
    ctx = _ctx()
    assert isinstance(ctx.spec, bytes) and ctx.job_spec().dataset.name == "xor"
    assert ctx.scaling() == (1, 1.0, False)
    assert str(ctx.paths.checkpoints) == "/tmp/ts/jobs/j1/checkpoints"
    spec = ctx.job_spec()
    spec.scaling.num_workers, spec.scaling.cpus_per_worker = 2, 0.5
    assert _ctx(spec=spec.SerializeToString()).scaling() == (2, 0.5, False)
    assert _ctx(spec=spec, cpus_per_worker=2.0).scaling() == (2, 2.0, False)


def test_job_context_refuses_a_job_id_that_is_not_a_directory_name():
    with pytest.raises(ValueError):
        _ = _ctx(job_id="../x").paths


def test_reporters_satisfy_the_protocol():
    for rep in (NullReporter(), ListReporter(), CancelFileReporter(NullReporter(), "/x")):
        assert isinstance(rep, Reporter)


def test_make_reporter_without_redis_is_null():
    assert isinstance(make_reporter(_ctx()), NullReporter)


def test_make_reporter_builds_the_redis_reporter_lazily(monkeypatch):
    calls = []
    fake = types.ModuleType("trainserve.store.events")
    fake.RedisReporter = lambda url, job_id: calls.append((url, job_id)) or "redis-reporter"
    monkeypatch.setitem(sys.modules, "trainserve.store.events", fake)
    assert make_reporter(_ctx(redis_url="redis://h:1")) == "redis-reporter"
    assert calls == [("redis://h:1", "j1")]


def test_cancel_file_reporter(tmp_path):
    inner = ListReporter()
    rep = CancelFileReporter(inner, tmp_path / "cancel")
    rep.log("hello", level="warning")
    rep.epoch(1, 2, {"a": 1.0}, 10.0, 0.5)
    assert inner.logs == [("warning", "hello")] and inner.epochs[0].metrics == {"a": 1.0}
    assert not rep.cancel_requested()
    (tmp_path / "cancel").touch()
    assert rep.cancel_requested()
    inner2 = ListReporter(cancel=True)
    assert CancelFileReporter(inner2, tmp_path / "none").cancel_requested()


def test_readable_error_unwraps_ray_and_ray_train_errors():
    from ray.exceptions import RayTaskError
    from ray.train import ControllerError, WorkerGroupError
    ours = errors.TrainingError("training diverged in epoch 2")
    assert readable_error(WorkerGroupError("x", {1: ValueError("b"), 0: ours})) == ours.message
    assert readable_error(ControllerError(RuntimeError("no\nmore"))) == \
        "training failed: RuntimeError: no"
    wrapped = RayTaskError("fn", "Traceback (most recent call last): ...", ours)
    assert readable_error(wrapped) == ours.message
    assert readable_error(KeyError("k")) == "training failed: KeyError: 'k'"


def test_ray_train_runs_poll_their_workers_every_half_second_unless_the_cluster_says(
        monkeypatch):
    var = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
    monkeypatch.delenv(var, raising=False)
    poll_workers_often()
    assert float(os.environ[var]) == TRAIN_POLL_S == 0.5
    # Ray Train passes the variable on from the process that calls fit().
    from ray.train.v2._internal.constants import get_env_vars_to_propagate
    assert get_env_vars_to_propagate()[var] == "0.5"
    monkeypatch.setenv(var, "3")
    poll_workers_often()
    assert os.environ[var] == "3"
