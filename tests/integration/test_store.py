"""The Redis store against a real redis-server: records, indexes, queue, events, models."""
import threading

import pytest

from trainserve.core.errors import FailedPrecondition, NotFound
from trainserve.core.state import JobState
from trainserve.core.pb import spec_pb2
from trainserve.store import keys
from trainserve.store.jobs import JobStore
from trainserve.store.models import ModelStore
from trainserve.store.queue import JobQueue

pytestmark = pytest.mark.integration


def _spec(epochs=3):
    spec = spec_pb2.JobSpec(name="m")
    spec.training.epochs = epochs
    return spec


def test_submit_is_idempotent_per_request_id(redis_client):
    store = JobStore(redis_client)
    a, created_a = store.submit(_spec(), "req-1")
    b, created_b = store.submit(_spec(epochs=99), "req-1")
    assert created_a and not created_b
    assert a.id == b.id and b.spec.training.epochs == 3
    assert JobState(a.state) == JobState.QUEUED


def test_concurrent_submissions_with_one_request_id_make_one_job(redis_client):
    store = JobStore(redis_client)
    ids = []
    threads = [threading.Thread(target=lambda: ids.append(store.submit(_spec(), "same")[0].id))
               for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1
    assert len(store.list()[0]) == 1


def test_state_machine_is_checked(redis_client):
    store = JobStore(redis_client)
    job, _ = store.submit(_spec(), "r")
    with pytest.raises(FailedPrecondition, match="QUEUED; cannot become SUCCEEDED"):
        store.transition(job.id, JobState.SUCCEEDED)
    store.transition(job.id, JobState.RUNNING)
    done = store.transition(job.id, JobState.SUCCEEDED, "ok", model_name="m", model_version=2)
    assert done.model_version == 2 and done.finished_at.seconds > 0
    with pytest.raises(FailedPrecondition):
        store.transition(job.id, JobState.FAILED)
    with pytest.raises(NotFound):
        store.transition("j-missing", JobState.RUNNING)


def test_list_pages_newest_first_and_filters_by_state(redis_client):
    store = JobStore(redis_client)
    ids = [store.submit(_spec(), f"r{i}")[0].id for i in range(7)]
    store.transition(ids[0], JobState.CANCELLED)
    seen, token = [], ""
    while True:
        page, token = store.list(page_size=3, page_token=token)
        seen += [j.id for j in page]
        if not token:
            break
    assert seen == ids[::-1]
    assert [j.id for j in store.list(JobState.CANCELLED)[0]] == [ids[0]]
    assert len(store.list(JobState.QUEUED)[0]) == 6


def test_events_replay_history_then_stop_at_terminal(redis_client):
    store = JobStore(redis_client)
    job, _ = store.submit(_spec(), "r")
    store.transition(job.id, JobState.RUNNING)
    store.events.log(job.id, "hello")
    store.transition(job.id, JobState.FAILED, "boom")
    events = list(store.events.follow(job.id))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds == ["state", "state", "log", "state"]
    assert events[-1].state.message == "boom"
    after = list(store.events.follow(job.id, after=events[1].event_id))
    assert len(after) == 2


def test_cancel_queued_job_is_immediate_and_running_job_is_flagged(redis_client):
    store = JobStore(redis_client)
    a, _ = store.submit(_spec(), "a")
    assert JobState(store.request_cancel(a.id).state) == JobState.CANCELLED
    b, _ = store.submit(_spec(), "b")
    store.transition(b.id, JobState.RUNNING)
    flagged = store.request_cancel(b.id)
    assert flagged.cancel_requested and store.cancel_requested(b.id)
    with pytest.raises(FailedPrecondition, match="already CANCELLED"):
        store.request_cancel(a.id)


def test_a_started_job_is_leased_once_and_orphaned_when_its_lease_lapses(redis_client):
    store = JobStore(redis_client)
    job, _ = store.submit(_spec(), "r")
    q1, q2 = JobQueue(redis_client, "dispatcher-1"), JobQueue(redis_client, "dispatcher-2")
    assert q1.waiting() == [job.id]
    assert q1.start(job.id)
    assert not q2.start(job.id)  # started once: it left the queue with q1's lease
    assert q1.waiting() == [] and store.get(job.id).attempts == 1
    assert JobState(store.get(job.id).state) == JobState.RUNNING
    assert q2.orphans() == [] and not q2.acquire_lease(job.id)
    redis_client.delete(keys.lease(job.id))  # its dispatcher died: the lease expired
    assert q2.orphans() == [job.id]
    assert q2.acquire_lease(job.id) and not q1.acquire_lease(job.id)
    assert not q1.renew_lease(job.id) and q2.renew_lease(job.id)


def test_model_versions_are_allocated_once_per_job(redis_client):
    models = ModelStore(redis_client)
    assert models.allocate_version("m", "j-1") == 1
    assert models.allocate_version("m", "j-1") == 1
    assert models.allocate_version("m", "j-2") == 2
    with pytest.raises(NotFound):
        models.get("m")  # allocated but not yet written
    with pytest.raises(NotFound, match="not found"):
        models.get("other")
