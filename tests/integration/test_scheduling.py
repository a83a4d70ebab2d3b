"""Scheduling against real Redis: admission at submission, priority then FIFO, quotas and the
waiting reasons GetJob shows, through the real dispatcher's scheduler. Only the training is a
stand-in (it blocks until the test lets it finish); training itself is tested elsewhere."""
import threading
import time

import pytest

from tests.integration.helpers import example
from trainserve.core.errors import InvalidArgument
from trainserve.jobs.service import JobsCore
from trainserve.core.state import JobState
from trainserve.core.tenancy import Principal
from trainserve.store import keys
from trainserve.training.results import TrainResult

pytestmark = pytest.mark.integration


class Gate:
    """run_job stand-in: each job blocks until released, then reports 'cancelled' (no model
    to register)."""

    def __init__(self):
        self.started: list[str] = []
        self.events: dict[str, threading.Event] = {}

    def __call__(self, ctx, **_):  # e.g. superseded=: the run's lease check
        self.started.append(ctx.job_id)
        self.events.setdefault(ctx.job_id, threading.Event()).wait(30)
        return TrainResult("cancelled")

    def release(self, job_id):
        self.events.setdefault(job_id, threading.Event()).set()


class _Core:
    """JobsCore as the API calls it for an admin (raising priorities) submitting as `owner`."""

    def __init__(self, core: JobsCore):
        self.core = core

    def submit(self, spec, request_id, owner=""):
        return self.core.submit(spec, request_id, owner, Principal(owner, "admin"))

    def get(self, job_id):
        return self.core.get(job_id, Principal("admin", "admin"))


@pytest.fixture(scope="module")
def dispatcher(redis_server, tmp_path_factory):
    from trainserve.dispatch.dispatcher import Dispatcher, DispatcherConfig
    d = Dispatcher(DispatcherConfig(redis_url=redis_server.url, start_serve=False,
                                    storage_dir=str(tmp_path_factory.mktemp("storage")),
                                    consumer="test-dispatcher"))
    return d


@pytest.fixture
def sched(dispatcher, redis_client):
    gate = Gate()
    dispatcher.runner._run_job = gate
    dispatcher.running.clear()
    dispatcher._reasons.clear()
    redis_client.hset(keys.CLUSTER, mapping={"CPU": "2.0", "GPU": "0.0"})
    yield dispatcher, _Core(JobsCore(redis_client)), gate
    for job_id in list(gate.events) + gate.started:
        gate.release(job_id)


def _spec(priority=0, workers=1):
    spec = example("xor_mlp")
    spec.priority = priority
    spec.scaling.num_workers = workers
    return spec


def _wait_idle(dispatcher, job_id, timeout=10):
    deadline = time.time() + timeout
    while job_id in dispatcher.running and time.time() < deadline:
        time.sleep(0.02)


def test_priority_first_then_fifo_and_the_rest_waits_with_a_reason(sched):
    d, core, gate = sched
    low1 = core.submit(_spec(0), "low1")[0]
    high = core.submit(_spec(5), "high")[0]
    low2 = core.submit(_spec(0), "low2")[0]
    urgent = core.submit(_spec(9), "urgent")[0]
    assert d.queue.waiting() == [urgent.id, high.id, low1.id, low2.id]
    assert d.schedule_once() == [urgent.id, high.id]  # 2 CPUs: two 1-CPU jobs
    waiting = core.get(low1.id)
    assert JobState(waiting.state) == JobState.QUEUED
    assert waiting.queue_reason == "waiting for resources: needs 1 CPUs, 0 free"
    assert waiting.message == waiting.queue_reason and waiting.priority == 0
    gate.release(high.id)
    _wait_idle(d, high.id)
    assert d.schedule_once() == [low1.id]
    started = core.get(low1.id)
    assert JobState(started.state) == JobState.RUNNING and started.queue_reason == ""
    assert started.attempts == 1
    assert "needs 1 CPUs, 0 free" in core.get(low2.id).queue_reason


def test_a_big_job_is_not_overtaken_by_smaller_later_ones(sched):
    d, core, gate = sched
    small1 = core.submit(_spec(), "s1")[0]
    big = core.submit(_spec(workers=2), "big")[0]
    small2 = core.submit(_spec(), "s2")[0]
    assert d.schedule_once() == [small1.id]  # 1 CPU left: the big job's, not small2's
    assert "after the jobs ahead of it" in core.get(small2.id).queue_reason
    gate.release(small1.id)
    _wait_idle(d, small1.id)
    assert d.schedule_once() == [big.id]
    gate.release(big.id)
    _wait_idle(d, big.id)
    assert d.schedule_once() == [small2.id]


def test_per_user_quotas_hold_back_only_that_users_jobs(sched, redis_client):
    d, core, gate = sched
    redis_client.hset(keys.QUOTA_DEFAULT, mapping={"jobs": "1"})
    a1 = core.submit(_spec(), "a1", owner="alice")[0]
    a2 = core.submit(_spec(), "a2", owner="alice")[0]
    theirs = _spec()
    theirs.name = "bob-xor"  # the model name xor-mlp is alice's now
    b1 = core.submit(theirs, "b1", owner="bob")[0]
    assert d.schedule_once() == [a1.id, b1.id]
    assert core.get(a2.id).queue_reason == ("waiting for the quota of user 'alice': 1 of 1 "
                                            "jobs running")
    assert core.get(a1.id).user == "alice"
    redis_client.hset(keys.quota("alice"), mapping={"jobs": "2"})  # an operator raises it
    assert d.schedule_once() == [] and "needs 1 CPUs" in core.get(a2.id).queue_reason


def test_jobs_that_could_never_start_are_refused_at_submission(sched, redis_client):
    d, core, gate = sched
    cases = [(_spec(workers=3), "spec.scaling.num_workers", "cluster has 2"),
             (_spec(priority=101), "spec.priority", "[-100, 100]")]
    spec = _spec()
    spec.scaling.max_failures = -1
    cases.append((spec, "spec.scaling.max_failures", "[0, 100]"))
    for spec, field, words in cases:
        with pytest.raises(InvalidArgument) as err:
            core.submit(spec, "x")
        assert err.value.field == field and words in err.value.message
    redis_client.hset(keys.quota("carol"), mapping={"cpus": "1"})
    with pytest.raises(InvalidArgument, match="user 'carol' may hold at most 1") as err:
        core.submit(_spec(workers=2), "c", owner="carol")
    assert err.value.field == "spec.scaling.num_workers"
    with pytest.raises(InvalidArgument) as err:
        core.submit(_spec(), "c", owner="carol/../x")
    assert err.value.field == "user"
    assert d.queue.waiting() == []


def test_jobs_queued_in_the_old_stream_are_moved_into_the_queue(sched, redis_client):
    d, core, gate = sched
    job = core.submit(_spec(), "old")[0]
    redis_client.zrem(keys.PENDING, job.id)  # as a version with the stream queue left it
    redis_client.xadd(keys.QUEUE, {"job_id": job.id, "priority": "0"})
    assert d.queue.waiting() == []
    assert d.queue.migrate_stream() == 1 and d.queue.migrate_stream() == 0
    assert d.queue.waiting() == [job.id]
