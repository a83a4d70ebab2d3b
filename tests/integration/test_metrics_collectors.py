"""The job API's scrape-time collectors against a real redis-server: jobs by state and kind,
the queue's depth and its oldest job's age, dispatcher liveness, running trainings' latest epoch and running
searches' trials — written by the store's own writers, read back through a real registry."""
from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from trainserve.api.metrics import JobStateCollector, TrainingCollector
from trainserve.core.state import JobState
from trainserve.store.keys import DISPATCHER_READY
from trainserve.core.pb import job_pb2, spec_pb2
from trainserve.store.events import RedisReporter
from trainserve.store.jobs import JobStore
from trainserve.store.queue import JobQueue
from trainserve.store.trials import TrialStore

pytestmark = pytest.mark.integration


def _spec(name: str, search: bool = False) -> spec_pb2.JobSpec:
    spec = spec_pb2.JobSpec(name=name)
    spec.training.epochs = 5
    if search:
        spec.search.num_samples = 2
    return spec


def _scrape(*collectors) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} from the registry's text exposition."""
    registry = CollectorRegistry()
    for c in collectors:
        registry.register(c)
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def _named(samples: dict, name: str) -> dict[tuple, float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def test_jobs_by_state_and_kind_queue_and_dispatcher(redis_client):
    store = JobStore(redis_client)
    queue = JobQueue(redis_client, "c1")
    before = time.time()
    a = store.submit(_spec("a"), "r-a")[0]
    b = store.submit(_spec("b"), "r-b")[0]
    s = store.submit(_spec("s", search=True), "r-s")[0]
    collector = JobStateCollector(redis_client)

    got = _scrape(collector)
    jobs = _named(got, "trainserve_jobs")
    assert jobs[(("kind", "training"), ("state", "queued"))] == 2
    assert jobs[(("kind", "search"), ("state", "queued"))] == 1
    assert jobs[(("kind", "search"), ("state", "running"))] == 0
    assert got[("trainserve_queue_depth", ())] == 3
    age = got[("trainserve_queue_oldest_waiting_age_seconds", ())]
    assert 0 <= age <= time.time() - before + 1
    assert got[("trainserve_dispatcher_ready", ())] == 0

    # A dispatcher starts the first job (it leaves the queue); the search is cancelled.
    assert queue.start(a.id)
    store.transition(s.id, JobState.CANCELLED)
    redis_client.set(DISPATCHER_READY, "c1", ex=10)
    got = _scrape(collector)
    jobs = _named(got, "trainserve_jobs")
    assert jobs[(("kind", "training"), ("state", "queued"))] == 1
    assert jobs[(("kind", "training"), ("state", "running"))] == 1
    assert jobs[(("kind", "search"), ("state", "cancelled"))] == 1
    assert got[("trainserve_queue_depth", ())] == 1
    assert got[("trainserve_dispatcher_ready", ())] == 1

    # Nothing waits: the age is 0.
    assert queue.start(b.id)
    got = _scrape(collector)
    assert got[("trainserve_queue_depth", ())] == 0
    assert got[("trainserve_queue_oldest_waiting_age_seconds", ())] == 0


def test_running_training_exports_its_latest_epoch_until_it_ends(redis_client, redis_server):
    store = JobStore(redis_client)
    job = store.submit(_spec("xor"), "r-x")[0]
    store.transition(job.id, JobState.RUNNING)
    collector = TrainingCollector(redis_client)
    assert not _named(_scrape(collector), "trainserve_training_epoch")  # no epoch yet

    reporter = RedisReporter(redis_server.url, job.id)
    reporter.epoch(1, 5, {"train_loss": 0.9, "val_loss": 1.0, "train_accuracy": 0.5,
                          "lr": 0.05}, 1000.0, 0.5)
    reporter.log("between epochs")
    reporter.epoch(2, 5, {"train_loss": 0.4, "val_loss": 0.6, "train_accuracy": 0.75,
                          "val_accuracy": 0.7, "lr": 0.025, "gpu_utilization": 0.8,
                          "gpu_memory_bytes": 2048.0}, 1500.0, 1.25)
    got = _scrape(collector)
    job_labels = (("job_id", job.id), ("job_name", "xor"))
    assert got[("trainserve_training_epoch", job_labels)] == 2
    assert got[("trainserve_training_planned_epochs", job_labels)] == 5
    assert got[("trainserve_training_samples_per_second", job_labels)] == 1500.0
    assert got[("trainserve_training_elapsed_seconds", job_labels)] == 1.25
    assert got[("trainserve_training_learning_rate", job_labels)] == 0.025
    assert got[("trainserve_training_gpu_utilization_ratio", job_labels)] == 0.8
    assert got[("trainserve_training_gpu_memory_bytes", job_labels)] == 2048.0
    assert abs(got[("trainserve_training_last_epoch_timestamp_seconds", job_labels)]
               - time.time()) < 30
    loss = _named(got, "trainserve_training_loss")
    assert loss == {(*job_labels, ("split", "train")): 0.4, (*job_labels, ("split", "val")): 0.6}
    metric = _named(got, "trainserve_training_metric")
    assert metric == {(*job_labels, ("metric", "accuracy"), ("split", "train")): 0.75,
                      (*job_labels, ("metric", "accuracy"), ("split", "val")): 0.7}

    store.transition(job.id, JobState.SUCCEEDED)
    got = _scrape(collector)
    assert not [k for k in got if k[0].startswith("trainserve_training_")]


def test_cpu_training_has_no_gpu_series(redis_client, redis_server):
    store = JobStore(redis_client)
    job = store.submit(_spec("cpu"), "r-c")[0]
    store.transition(job.id, JobState.RUNNING)
    RedisReporter(redis_server.url, job.id).epoch(1, 5, {"train_loss": 0.9}, 10.0, 0.1)
    got = _scrape(TrainingCollector(redis_client))
    assert _named(got, "trainserve_training_epoch")
    assert not _named(got, "trainserve_training_gpu_utilization_ratio")
    assert not _named(got, "trainserve_training_gpu_memory_bytes")


def test_running_search_exports_its_trials(redis_client):
    store = JobStore(redis_client)
    job = store.submit(_spec("tune", search=True), "r-t")[0]
    store.transition(job.id, JobState.RUNNING)
    trials = TrialStore(redis_client)
    trials.record(job.id, job_pb2.Trial(id="t1", state="finished", epochs=3,
                                        metrics={"val_loss": 0.2, "epoch": 3.0}), "ended")
    trials.record(job.id, job_pb2.Trial(id="t2", state="running", epochs=1,
                                        metrics={"val_loss": 0.7}), "reported")
    trials.record(job.id, job_pb2.Trial(id="t3", state="running"), "started")
    got = _scrape(TrainingCollector(redis_client))
    labels = (("job_id", job.id), ("job_name", "tune"))
    assert _named(got, "trainserve_search_trials") == {(*labels, ("state", "finished")): 1,
                                                       (*labels, ("state", "running")): 2}
    assert _named(got, "trainserve_search_trial_epoch")[(*labels, ("trial", "t1"))] == 3
    assert _named(got, "trainserve_search_trial_metric") == {
        (*labels, ("metric", "val_loss"), ("trial", "t1")): 0.2,
        (*labels, ("metric", "val_loss"), ("trial", "t2")): 0.7}
    assert not _named(got, "trainserve_training_epoch")  # a search has no epochs of its own


def test_a_redis_outage_counts_an_error_and_scrapes_nothing():
    import redis
    from trainserve.api.metrics import REDIS_ERRORS
    dead = redis.Redis(port=1, socket_connect_timeout=0.2)  # nothing listens on port 1
    before = REDIS_ERRORS._value.get()
    got = _scrape(JobStateCollector(dead), TrainingCollector(dead))
    assert not [k for k in got if k[0].startswith("trainserve_")]
    assert REDIS_ERRORS._value.get() == before + 2
