"""The job runner's bookkeeping against real Redis, with training replaced by a fake (the
trainer itself is tested on a real Ray cluster in test_spine.py)."""
import json
from dataclasses import dataclass, field

import pytest

from trainserve.core import errors
from trainserve.dispatch.runner import JobRunner
from trainserve.core.state import JobState
from trainserve.core.pb import spec_pb2
from trainserve.registry.service import DeploymentsCore
from trainserve.store.jobs import JobStore
from trainserve.store.models import ModelStore

pytestmark = pytest.mark.integration


@dataclass
class FakeResult:
    status: str = "succeeded"
    metrics: dict = field(default_factory=lambda: {"test_accuracy": 0.98})
    artifact_dir: str = ""
    dataset_hash: str = "abc"


def _artifact(tmp_path):
    d = tmp_path / "artifact"
    d.mkdir()
    (d / "model.safetensors").write_bytes(b"weights")
    (d / "meta.json").write_text(json.dumps({
        "task": "classification", "class_names": ["0", "1"], "input_shape": [2],
        "output_dim": 2, "preprocessing": {"kind": "none", "shift": [], "scale": []},
        "metrics": {"test_accuracy": 0.98}, "dataset_hash": "abc"}))
    return str(d)


def _runner(redis_client, tmp_path, fake):
    store = JobStore(redis_client)
    return store, JobRunner(store, ModelStore(redis_client), DeploymentsCore(redis_client),
                            "redis://unused", str(tmp_path / "storage"), run_job=fake)


def _submit(store, deploy=False):
    spec = spec_pb2.JobSpec(name="xor-mlp")
    spec.training.epochs = 2
    if deploy:
        spec.deploy.name = "xor"
    return store.submit(spec, f"r-{deploy}")[0]


def test_success_registers_one_version_even_when_run_twice(redis_client, tmp_path):
    art = _artifact(tmp_path)
    store, runner = _runner(redis_client, tmp_path, lambda ctx: FakeResult(artifact_dir=art))
    job = _submit(store, deploy=True)
    assert runner.run(job.id) == JobState.SUCCEEDED
    done = store.get(job.id)
    assert (done.model_name, done.model_version, done.deployment) == ("xor-mlp", 1, "xor")
    assert done.metrics["test_accuracy"] == pytest.approx(0.98)
    # A duplicate delivery of the same entry neither re-trains nor re-registers.
    assert runner.run(job.id) == JobState.SUCCEEDED
    assert [mv.version for mv in ModelStore(redis_client).versions("xor-mlp")] == [1]
    mv = ModelStore(redis_client).get("xor-mlp")
    assert mv.job_id == job.id and list(mv.outputs[0].shape) == [-1, 2]


def test_resumed_job_after_crash_keeps_its_version(redis_client, tmp_path):
    art = _artifact(tmp_path)
    store, runner = _runner(redis_client, tmp_path, lambda ctx: FakeResult(artifact_dir=art))
    job = _submit(store)
    store.transition(job.id, JobState.RUNNING, attempts=1)   # a dispatcher started it...
    ModelStore(redis_client).allocate_version("xor-mlp", job.id)  # ...registered, then died
    assert runner.run(job.id) == JobState.SUCCEEDED
    done = store.get(job.id)
    assert done.attempts == 2 and done.model_version == 1


def test_training_error_fails_the_job_with_its_message(redis_client, tmp_path):
    def fail(ctx):
        raise errors.TrainingError("loss is NaN at epoch 3; lower the learning rate")
    store, runner = _runner(redis_client, tmp_path, fail)
    job = _submit(store)
    assert runner.run(job.id) == JobState.FAILED
    assert "lower the learning rate" in store.get(job.id).message


def test_unexpected_error_fails_instead_of_hanging(redis_client, tmp_path):
    store, runner = _runner(redis_client, tmp_path, lambda ctx: 1 / 0)
    job = _submit(store)
    assert runner.run(job.id) == JobState.FAILED
    assert "internal error" in store.get(job.id).message


def test_cancelled_result_and_cancel_before_start(redis_client, tmp_path):
    store, runner = _runner(redis_client, tmp_path, lambda ctx: FakeResult(status="cancelled"))
    job = _submit(store)
    assert runner.run(job.id) == JobState.CANCELLED
    other = store.submit(spec_pb2.JobSpec(name="x"), "other")[0]
    store.request_cancel(other.id)
    assert runner.run(other.id) == JobState.CANCELLED


def test_a_model_name_another_user_holds_fails_the_job_and_registers_nothing(redis_client,
                                                                            tmp_path):
    """The dispatcher registers as the job's owner: a model name claimed meanwhile by another
    user (a job queued before claims existed) is never written into."""
    from trainserve.store.names import MODEL, NameClaims
    art = _artifact(tmp_path)
    store, runner = _runner(redis_client, tmp_path, lambda ctx: FakeResult(artifact_dir=art))
    job = _submit(store)
    NameClaims(redis_client).claim([(MODEL, "xor-mlp")], "mallory")
    assert runner.run(job.id) == JobState.FAILED
    done = store.get(job.id)
    assert "spec.name: model name 'xor-mlp' belongs to another user" in done.message
    assert ModelStore(redis_client).versions("xor-mlp") == [] and done.model_version == 0


def test_an_endpoint_name_another_user_holds_is_not_taken_over(redis_client, tmp_path):
    """The model is the job's owner's and the job succeeds, but the endpoint stays with the
    user who holds its name: the deploy failure is an event and `deployment` stays empty."""
    from trainserve.core.pb import deployment_pb2
    from trainserve.store.deployments import DeploymentStore
    theirs = deployment_pb2.Deployment(name="xor", model_name="m", model_version=1,
                                       user="mallory")
    DeploymentStore(redis_client).put(theirs)  # a record from before claims: lazily hers
    art = _artifact(tmp_path)
    store, runner = _runner(redis_client, tmp_path, lambda ctx: FakeResult(artifact_dir=art))
    job = _submit(store, deploy=True)
    assert runner.run(job.id) == JobState.SUCCEEDED
    done = store.get(job.id)
    assert (done.model_name, done.model_version, done.deployment) == ("xor-mlp", 1, "")
    assert DeploymentStore(redis_client).get("xor") == theirs
    failed = [e.log.text for e in store.events.history(job.id) if "deploy failed" in e.log.text]
    assert failed and "endpoint name 'xor' belongs to another user" in failed[0]
