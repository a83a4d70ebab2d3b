"""Deleting jobs, model versions and datasets (`jobs.service`, `registry.service`,
`registry.datasets`, `store`) against a real redis-server: what still references a thing
refuses its deletion with FAILED_PRECONDITION naming the referrer; a deletion removes every
key and file kept for the thing; another user gets NOT_FOUND; CompareJobs on one search's id
shows its trials."""
from __future__ import annotations

import pytest

from tests.unit.test_model_aliases import ADMIN, ALICE, BOB, register
from trainserve.core import errors
from trainserve.core.pb import dataset_pb2, job_pb2
from trainserve.core.spec import parse_spec
from trainserve.core.state import JobState
from trainserve.jobs.service import JobsCore
from trainserve.registry.datasets import DatasetsCore
from trainserve.registry.service import DeploymentsCore, ModelsCore
from trainserve.registry.versions import model_dir
from trainserve.store.datasets import DatasetStore
from trainserve.store.jobs import JobStore
from trainserve.store.logs import JobLogs
from trainserve.store.models import ModelStore
from trainserve.store.trials import TrialStore
from trainserve.training.paths import JobPaths

XOR = {"name": "digits", "dataset": {"name": "xor"}, "model": {"mlp": {"hidden": [8]}},
       "optimizer": {"name": "adam", "lr": 0.05}, "training": {"epochs": 3}}


def a_job(client, state: JobState, owner: str = "alice", request_id: str = "r-1", **spec):
    """A job of `owner` moved to `state`, with an event and a log line."""
    store = JobStore(client)
    job, _ = store.submit(parse_spec({**XOR, **spec}), request_id, owner=owner)
    if state != JobState.QUEUED:
        store.transition(job.id, JobState.RUNNING)
        JobLogs(client).append(job.id, [job_pb2.JobLogLine(text="hello")])
        store.events.log(job.id, "training")
    if state.is_terminal:
        store.transition(job.id, state)
    return store.get(job.id)


def keys_of(client, job_id: str) -> list[str]:
    found = [k.decode() for k in client.scan_iter(f"*{job_id}*")]
    indexed = [k.decode() for k in client.scan_iter("ts:*") if client.type(k) == b"zset"
               and client.zscore(k, job_id) is not None]
    return sorted(found + indexed)


# -- jobs ---------------------------------------------------------------------------------------

def test_a_finished_job_is_removed_with_everything_kept_for_it(redis_client, tmp_path):
    job = a_job(redis_client, JobState.FAILED)
    root = JobPaths.of(tmp_path, job.id).root
    (root / "checkpoints").mkdir(parents=True)
    (root / "curves.png").write_bytes(b"png")
    assert keys_of(redis_client, job.id)
    core = JobsCore(redis_client, str(tmp_path))
    assert core.delete(job.id, ALICE).id == job.id
    assert keys_of(redis_client, job.id) == []
    assert not root.exists()
    with pytest.raises(errors.NotFound):
        core.delete(job.id, ALICE)  # gone: a retry says so
    again, created = JobStore(redis_client).submit(parse_spec(XOR), "r-1", owner="alice")
    assert created and again.id != job.id  # its request id names no deleted job


@pytest.mark.parametrize("state", [JobState.QUEUED, JobState.RUNNING])
def test_an_unfinished_job_is_refused(redis_client, state):
    job = a_job(redis_client, state)
    with pytest.raises(errors.FailedPrecondition, match="cancel it first"):
        JobsCore(redis_client).delete(job.id, ALICE)
    assert JobStore(redis_client).get(job.id).state == int(state)


def test_a_job_whose_version_is_registered_is_refused_naming_it(redis_client):
    job = a_job(redis_client, JobState.SUCCEEDED)
    store = ModelStore(redis_client)
    version = store.allocate_version("digits", job.id)  # registered, not yet on the job
    register_version(redis_client, version)
    core = JobsCore(redis_client)
    with pytest.raises(errors.FailedPrecondition, match="digits:1"):
        core.delete(job.id, ALICE)
    ModelsCore(redis_client).delete_version("digits", 1, ALICE)
    core.delete(job.id, ALICE)


def register_version(client, version: int, name: str = "digits"):
    from trainserve.core.pb import model_pb2
    ModelStore(client).put(model_pb2.ModelVersion(name=name, version=version, user="alice"))


def test_another_user_gets_not_found_an_admin_deletes(redis_client):
    job = a_job(redis_client, JobState.CANCELLED)
    core = JobsCore(redis_client)
    with pytest.raises(errors.NotFound, match=job.id):
        core.delete(job.id, BOB)
    assert core.delete(job.id, ADMIN).user == "alice"


# -- model versions -----------------------------------------------------------------------------

def test_a_served_version_is_refused_naming_the_endpoint(redis_client, tmp_path):
    register(redis_client, n=3, artifact="")
    for v in (1, 2, 3):
        model_dir(tmp_path, "digits", v).mkdir(parents=True)
    models, deps = ModelsCore(redis_client, str(tmp_path)), DeploymentsCore(redis_client)
    deps.deploy("web", "digits", 1, None, ALICE)
    deps.rollout("web", "", 2, 10, ALICE)
    with pytest.raises(errors.FailedPrecondition, match="endpoint 'web'"):
        models.delete_version("digits", 1, ALICE)
    with pytest.raises(errors.FailedPrecondition, match="endpoint 'web' as its rollout"):
        models.delete_version("digits", 2, ALICE)
    models.set_alias("digits", "production", 3, ALICE)
    models.update_tags("digits", 3, "", {"k": "v"}, [], ALICE)
    gone = models.delete_version("digits", 3, ALICE)
    assert gone.aliases == ["production"] and not model_dir(tmp_path, "digits", 3).exists()
    assert ModelStore(redis_client).aliases("digits") == {}
    assert ModelStore(redis_client).tags("digits", 3) == {}
    with pytest.raises(errors.NotFound, match="no version 3"):
        models.delete_version("digits", 3, ALICE)
    deps.rollback("web", ALICE)
    models.delete_version("digits", 2, ALICE)
    deps.undeploy("web", ALICE)
    models.delete_version("digits", 1, ALICE)
    assert models.list("", ALICE) == [] and ModelStore(redis_client).names() == []
    assert ModelStore(redis_client).allocate_version("digits", "j-new") == 4  # never reused


def test_a_version_a_running_job_starts_from_is_refused(redis_client):
    [mv] = register(redis_client, n=1, artifact="/storage/models/digits/1")
    a_job(redis_client, JobState.RUNNING, name="tuned",
          model={"mlp": {"hidden": [8]}, "transfer": {"model": "digits",
                                                      "artifact_path": mv.artifact_uri}})
    with pytest.raises(errors.FailedPrecondition, match="starts from its weights"):
        ModelsCore(redis_client).delete_version("digits", 1, ALICE)


def test_version_deletion_is_checked_and_owner_only(redis_client):
    register(redis_client, n=1)
    core = ModelsCore(redis_client)
    with pytest.raises(errors.InvalidArgument) as info:
        core.delete_version("digits", 0, ALICE)
    assert info.value.field == "version"
    with pytest.raises(errors.NotFound, match="model 'digits' not found"):
        core.delete_version("digits", 1, BOB)
    assert [mv.version for mv in core.list("digits", ALICE)] == [1]


# -- datasets -----------------------------------------------------------------------------------

def test_a_dataset_an_unfinished_job_trains_on_is_refused(redis_client, tmp_path):
    DatasetStore(redis_client).put(dataset_pb2.Dataset(name="scans", sha256="ab", user="alice"))
    uploaded = {"name": "scans", "uploaded": {"sha256": "ab", "format": "csv", "path": "/x"}}
    job = a_job(redis_client, JobState.QUEUED, dataset=uploaded)
    core = DatasetsCore(redis_client, str(tmp_path))
    with pytest.raises(errors.FailedPrecondition, match=job.id):
        core.delete("scans", ALICE)
    JobStore(redis_client).transition(job.id, JobState.CANCELLED)
    assert core.delete("scans", ALICE).name == "scans"


# -- comparing a search's trials ----------------------------------------------------------------

def test_one_search_id_compares_its_trials(redis_client):
    job = a_job(redis_client, JobState.SUCCEEDED, search={
        "metric": "val_loss", "mode": "min", "num_samples": 2,
        "space": {"optimizer.lr": "loguniform(0.001, 0.1)"}})
    trials = TrialStore(redis_client)
    for tid, lr, losses in (("t1", "0.01", (0.9, 0.5)), ("t2", "0.05", (0.8, 0.3, 0.4))):
        trials.record(job.id, job_pb2.Trial(
            id=tid, state="finished", config={"optimizer.lr": lr}, epochs=len(losses),
            metrics={"test_accuracy": 0.9},
            curve=[job_pb2.TrialPoint(epoch=e, metrics={"val_loss": v})
                   for e, v in enumerate(losses, 1)]), "ended")
    core = JobsCore(redis_client)
    got = core.compare([job.id], ALICE)
    assert [(r.job_id, r.trial_id, r.trial_state, r.epochs) for r in got.jobs] == [
        (job.id, "t1", "finished", 2), (job.id, "t2", "finished", 3)]
    assert got.jobs[1].best["val_loss"].epoch == 2
    assert {d.path: list(d.values) for d in got.differences} == {
        "optimizer.lr": ["0.01", "0.05"]}
    one = core.compare([f"{job.id}/t2", f"{job.id}/t1"], ALICE)
    assert [r.trial_id for r in one.jobs] == ["t2", "t1"]
    with pytest.raises(errors.NotFound, match="no trial 't9'"):
        core.compare([f"{job.id}/t9", f"{job.id}/t1"], ALICE)
    with pytest.raises(errors.NotFound):
        core.compare([job.id], BOB)
    plain = a_job(redis_client, JobState.SUCCEEDED, request_id="r-2")
    with pytest.raises(errors.InvalidArgument, match="not a search") as info:
        core.compare([plain.id], ALICE)
    assert info.value.field == "job_ids"
