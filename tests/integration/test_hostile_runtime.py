"""A job never runs twice at once, never restarts forever and never runs forever.

First the fencing scripts and the runner's bookkeeping against a real redis-server (training
replaced by a fake where it is not the point); then the real stack: a dispatcher paused
(SIGSTOP) past its lease while a second one resumes its job, a job whose dispatcher keeps
dying, and jobs past their wall-clock limit.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from trainserve.dispatch.runner import JobRunner
from trainserve.core.state import JobState
from trainserve.core.pb import job_pb2, spec_pb2
from trainserve.registry.service import DeploymentsCore
from trainserve.store import fencing
from trainserve.store.events import EventLog
from trainserve.store import keys
from trainserve.store.jobs import JobStore, Superseded
from trainserve.store.logs import JobLogs
from trainserve.store.models import ModelStore
from trainserve.store.queue import JobQueue, Lease

pytestmark = pytest.mark.integration


def _job(store: JobStore, name: str = "fenced", **training):
    spec = spec_pb2.JobSpec(name=name)
    spec.training.epochs = 5
    for k, v in training.items():
        setattr(spec.training, k, v)
    return store.submit(spec, f"r-{name}-{time.monotonic_ns()}")[0]


def _epoch_event(job_id: str, epoch: int) -> job_pb2.JobEvent:
    return job_pb2.JobEvent(job_id=job_id, epoch=job_pb2.EpochMetrics(
        epoch=epoch, total_epochs=5, metrics={"train_loss": 1.0 / epoch}))


def _takeover(r, job_id: str) -> int:
    """The first dispatcher's lease lapses and a second takes the job: the new token."""
    r.delete(keys.lease(job_id))
    return JobQueue(r, "dispatcher-2").acquire_lease(job_id)


# --- the fencing scripts ---------------------------------------------------------------------

def test_each_lease_taken_comes_with_a_larger_token(redis_client):
    store = JobStore(redis_client)
    job = _job(store)
    q1, q2 = JobQueue(redis_client, "dispatcher-1"), JobQueue(redis_client, "dispatcher-2")
    first = q1.start(job.id)
    assert first == 1 == fencing.newest(redis_client, job.id)
    assert not q2.acquire_lease(job.id)  # held: no token either
    assert fencing.take(redis_client, job.id, "dispatcher-2") == 0  # not its lease
    second = _takeover(redis_client, job.id)
    assert second == 2 == fencing.newest(redis_client, job.id)
    assert fencing.take(redis_client, job.id, "dispatcher-1") == 0  # q1 lost it


def test_a_superseded_worker_writes_nothing_and_is_told_to_stop(redis_client, redis_server):
    store = JobStore(redis_client)
    job = _job(store)
    old = JobQueue(redis_client, "dispatcher-1").start(job.id)
    stale = fencing.FencedReporter(redis_server.url, job.id, old)
    stale.epoch(1, 5, {"train_loss": 1.0})  # still the newest token: written
    assert store.get(job.id).epoch == 1 and not stale.cancel_requested()
    new = _takeover(redis_client, job.id)
    current = fencing.FencedReporter(redis_server.url, job.id, new)
    current.epoch(2, 5, {"train_loss": 0.5})
    events_before = redis_client.xlen(EventLog.key(job.id))
    stale.epoch(3, 5, {"train_loss": 0.1})
    stale.log("a line from the superseded run")
    assert redis_client.xlen(EventLog.key(job.id)) == events_before
    assert store.get(job.id).epoch == 2  # the progress is the current run's
    assert stale.cancel_requested() and not current.cancel_requested()
    # Worker logs: the stale sink's batch is refused whole, the current one's lands.
    for token, text in ((old, "stale line"), (new, "current line")):
        sink = fencing.FencedLogSink(redis_server.url, job.id, 0, token)
        sink.write(text, "stdout")
        sink.close()
    lines = [line.text for line in JobLogs(redis_client).read_after(job.id)]
    assert lines == ["current line"]
    assert int(redis_client.hget(keys.job(job.id), fencing.REFUSED_FIELD)) == 3
    # Every entry in the events carries the token it was written under, in order.
    tokens = [int(f[b"fence"]) for _, f in redis_client.xrange(EventLog.key(job.id))
              if b"fence" in f]
    assert tokens == [old, new]


def test_a_checked_superseded_token_stops_a_worker_between_writes(redis_client, redis_server):
    store = JobStore(redis_client)
    job = _job(store)
    old = JobQueue(redis_client, "dispatcher-1").start(job.id)
    stale = fencing.FencedReporter(redis_server.url, job.id, old)
    assert not stale.cancel_requested()
    _takeover(redis_client, job.id)
    time.sleep(0.6)  # the reporter asks Redis at most every 0.5 s
    assert stale.cancel_requested()  # without having written anything since


def test_the_final_transition_of_a_superseded_dispatcher_is_refused(redis_client):
    store = JobStore(redis_client)
    job = _job(store)
    old = JobQueue(redis_client, "dispatcher-1").start(job.id)
    new = _takeover(redis_client, job.id)
    with pytest.raises(Superseded):
        store.transition(job.id, JobState.SUCCEEDED, "stale", fence=old)
    assert JobState(store.get(job.id).state) == JobState.RUNNING
    store.transition(job.id, JobState.SUCCEEDED, "done", fence=new)
    assert JobState(store.get(job.id).state) == JobState.SUCCEEDED


def test_an_epoch_report_costs_one_round_trip(redis_client, redis_server):
    """The fenced report is one EVALSHA, as the unfenced one was one MULTI/EXEC pipeline."""
    store = JobStore(redis_client)
    job = _job(store)
    token = JobQueue(redis_client, "dispatcher-1").start(job.id)
    reporter = fencing.FencedReporter(redis_server.url, job.id, token)
    reporter.epoch(1, 5, {"train_loss": 1.0})  # loads the script
    before = _calls(redis_client)
    for epoch in range(2, 12):
        reporter.epoch(epoch, 100, {"train_loss": 1.0})
    after = _calls(redis_client)
    assert after.get("evalsha", 0) - before.get("evalsha", 0) == 10
    assert after.get("eval", 0) == before.get("eval", 0)


def _calls(r) -> dict:
    return {k.split("_", 1)[1]: v["calls"] for k, v in r.info("commandstats").items()}


# --- the runner: restarts and lost leases ------------------------------------------------------

@dataclass
class FakeResult:
    status: str = "succeeded"
    metrics: dict = field(default_factory=lambda: {"test_accuracy": 0.9})
    artifact_dir: str = ""
    dataset_hash: str = "abc"


def _runner(r, tmp_path, fake, **kw):
    store = JobStore(r)
    return store, JobRunner(store, ModelStore(r), DeploymentsCore(r), "redis://unused",
                            str(tmp_path / "storage"), run_job=fake, **kw)


def _orphan(r, store, job_id: str, times: int) -> Lease:
    """The job started by one dispatcher and resumed `times - 1` times, every one of which
    died; returns the lease of the dispatcher that finds it orphaned now."""
    q = JobQueue(r, "dispatcher-1")
    assert q.start(job_id)
    store.update(job_id, attempts=times, run_by="dispatcher-1")
    r.delete(keys.lease(job_id))
    token = JobQueue(r, "dispatcher-2").acquire_lease(job_id)
    return Lease(job_id, "dispatcher-2", token)


def test_an_orphan_out_of_restarts_fails_with_the_reason(redis_client, tmp_path):
    ran = []
    store, runner = _runner(redis_client, tmp_path,
                            lambda ctx, **_: ran.append(ctx) or FakeResult())
    job = _job(store, max_restarts=1)
    lease = _orphan(redis_client, store, job.id, times=2)
    assert runner.run(job.id, lease=lease) == JobState.FAILED
    done = store.get(job.id)
    assert not ran and done.attempts == 2
    assert "started 2 time(s) and resumed 1 time(s)" in done.message, done.message
    assert "training.max_restarts = 1" in done.message
    assert "dispatcher dispatcher-1 stopped renewing its lease" in done.message


def test_an_orphan_within_its_restarts_is_resumed_under_the_new_token(redis_client, tmp_path):
    ran = []
    store, runner = _runner(redis_client, tmp_path,
                            lambda ctx, **_: ran.append(ctx) or FakeResult(status="cancelled"))
    job = _job(store)  # max_restarts unset: 3
    lease = _orphan(redis_client, store, job.id, times=3)
    assert runner.run(job.id, lease=lease) == JobState.CANCELLED
    assert [c.fence for c in ran] == [lease.fence] and ran[0].attempt == 4
    resumed = [e.log.text for e in store.events.history(job.id) if e.HasField("log")]
    assert any("resuming (attempt 4)" in t and "dispatcher-1" in t for t in resumed), resumed


def test_zero_restarts_fails_the_first_orphan(redis_client, tmp_path):
    store, runner = _runner(redis_client, tmp_path, lambda ctx, **_: FakeResult())
    job = _job(store, max_restarts=0)
    lease = _orphan(redis_client, store, job.id, times=1)
    assert runner.run(job.id, lease=lease) == JobState.FAILED
    assert "training.max_restarts = 0" in store.get(job.id).message


def test_a_runner_that_lost_its_lease_records_no_outcome(redis_client, tmp_path):
    holder = {}

    def fake(ctx, superseded=None, **_):
        holder["lease"].lost.set()  # the lease loop found the lease gone mid-run
        assert superseded()
        return FakeResult(status="cancelled")

    store, runner = _runner(redis_client, tmp_path, fake)
    job = _job(store)
    token = JobQueue(redis_client, "dispatcher-1").start(job.id)
    holder["lease"] = Lease(job.id, "dispatcher-1", token)
    assert runner.run(job.id, started=True, lease=holder["lease"]) == JobState.RUNNING
    assert JobState(store.get(job.id).state) == JobState.RUNNING


def test_the_runner_passes_the_wall_clock_limit_from_the_first_start(redis_client, tmp_path):
    seen = {}

    def fake(ctx, deadline=None, limit_s=0.0, **_):
        seen.update(deadline=deadline, limit=limit_s)
        return FakeResult(status="cancelled")

    store, runner = _runner(redis_client, tmp_path, fake, max_duration_s=3600.0)
    asks_less, asks_none = _job(store, "less", max_duration_s=30.0), _job(store, "none")
    for job, limit in ((asks_less, 30.0), (asks_none, 3600.0)):
        token = JobQueue(redis_client, "d").start(job.id)
        started = store.get(job.id).started_at.ToNanoseconds() / 1e9
        runner.run(job.id, started=True, lease=Lease(job.id, "d", token))
        assert seen["limit"] == limit and seen["deadline"] == pytest.approx(started + limit)


def test_a_job_resumed_after_its_limit_fails_without_training(redis_client, tmp_path):
    ran = []
    store, runner = _runner(redis_client, tmp_path, lambda ctx, **kw: ran.append(1))
    job = _job(store, max_duration_s=5.0)
    lease = _orphan(redis_client, store, job.id, times=1)
    store.update(job.id, started_at=repr(time.time() - 60))
    assert runner.run(job.id, lease=lease) == JobState.FAILED
    assert not ran
    assert store.get(job.id).message == "the job exceeded its wall-clock limit of 5 s"


# --- the real stack ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runtime_stack(fault_stack):
    """Its dispatcher gets paused and killed here."""
    return fault_stack


def _long_xor(name: str, **training):
    """Thousands of short epochs: runs until stopped."""
    from trainserve.core.spec import parse_spec
    return parse_spec({
        "name": name, "dataset": {"name": "xor", "num_samples": 64},
        "model": {"mlp": {"hidden": [8]}},
        "training": {"epochs": 100000, "batch_size": 16, "checkpoint_every_s": 1, **training}})


def _until(what, timeout: float, every: float = 0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = what()
        if got:
            return got
        time.sleep(every)
    raise TimeoutError(f"not true within {timeout}s: {what}")


class _SecondDispatcher:
    """Another dispatcher process on the same Redis and Ray (no Serve of its own, no metrics
    port), with the consumer name `consumer`; killed (its whole session) on exit."""

    def __init__(self, stack, consumer: str):
        import subprocess
        cmd, env, _ = stack.launch("dispatcher")
        cmd = cmd[:cmd.index("--consumer")] + ["--consumer", consumer, "--no-serve"]
        cmd[cmd.index("--metrics-port") + 1] = "0"
        self.log = stack.config.state_dir / "logs" / f"{consumer}.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        import os
        import signal
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)


def _fenced_entries(r, job_id: str) -> list[tuple[int, job_pb2.JobEvent]]:
    """(token, event) of every event a job's runner or workers wrote under a lease."""
    return [(int(f[b"fence"]), job_pb2.JobEvent.FromString(f[b"pb"]))
            for _, f in r.xrange(EventLog.key(job_id)) if b"fence" in f]


def test_a_paused_dispatcher_cannot_write_to_the_job_another_resumed(runtime_stack):
    import os
    import signal

    from tests.integration.helpers import submit, wait_job
    from trainserve.core.pb import job_pb2 as pb

    stack, r = runtime_stack, runtime_stack.redis
    job = submit(stack.stubs, _long_xor("fenced-pause"))
    _until(lambda: r.hget(keys.job(job.id), "epoch") not in (None, b"0"), 180)
    first = stack.pid("dispatcher")
    assert fencing.newest(r, job.id) == 1
    os.kill(first, signal.SIGSTOP)  # its worker (a Ray worker process) trains on
    try:
        with _SecondDispatcher(stack, "second-dispatcher"):
            # Within a lease (15 s) of the pause, the second takes the job over.
            _until(lambda: r.hget(keys.job(job.id), "run_by") == b"second-dispatcher", 120)
            assert fencing.newest(r, job.id) == 2
            # The paused dispatcher's worker trains on, but its next write is refused and it
            # stops on its own.
            _until(lambda: int(r.hget(keys.job(job.id), fencing.REFUSED_FIELD) or 0) >= 1, 60)
            # Ray keeps the CPUs a paused driver leased: the second's run may have to wait for
            # the first to wake up, which then finds its lease lost and stops (no record).
            os.kill(first, signal.SIGCONT)
            _until(lambda: b"lost its lease" in _log_tail(stack), 30)
            _until(lambda: sum(t == 2 and e.HasField("epoch")
                               for t, e in _fenced_entries(r, job.id)) >= 5, 120)
            stack.stubs.jobs.CancelJob(pb.CancelJobRequest(job_id=job.id), timeout=30)
            done = wait_job(stack.stubs, job.id, timeout=120)
    finally:
        os.kill(first, signal.SIGCONT)
    assert JobState(done.state) == JobState.CANCELLED, done.message
    assert done.attempts == 2
    entries = _fenced_entries(r, job.id)
    tokens = [t for t, _ in entries]
    assert tokens == sorted(tokens), "a write of the superseded run came after the takeover"
    assert set(tokens) == {1, 2}
    terminal = [e for e in EventLog(r).history(job.id)
                if e.HasField("state") and JobState(e.state.state).is_terminal]
    assert len(terminal) == 1  # ended once, by the dispatcher that held the lease
    assert stack.is_running("dispatcher")  # the first dispatcher lives on, minus the job


def _log_tail(stack) -> bytes:
    return stack.log_path("dispatcher").read_bytes()[-20000:]


def test_a_job_whose_dispatcher_keeps_dying_fails_once_out_of_restarts(runtime_stack):
    from tests.integration.helpers import submit, wait_job, wait_paused
    from trainserve.core.faults import ANY, arm

    stack, r = runtime_stack, runtime_stack.redis
    paused = arm(stack.faults, ANY, "checkpoint-write-2")
    spec = _long_xor("out-of-restarts", max_restarts=0, checkpoint_every_s=0, epochs=20)
    job = submit(stack.stubs, spec)
    wait_paused(paused)  # mid epoch 2's checkpoint
    assert stack.kill("dispatcher")
    stack.start("dispatcher", timeout=180)
    done = wait_job(stack.stubs, job.id, timeout=120)
    assert JobState(done.state) == JobState.FAILED, done.message
    assert done.attempts == 1
    assert "resumed 0 time(s), its limit (training.max_restarts = 0)" in done.message
    assert "stopped renewing its lease" in done.message, done.message


def test_a_job_past_its_wall_clock_limit_is_stopped_and_failed(runtime_stack):
    from tests.integration.helpers import submit, wait_job

    stack = runtime_stack
    job = submit(stack.stubs, _long_xor("time-limited", max_duration_s=4))
    done = wait_job(stack.stubs, job.id, timeout=120)
    assert JobState(done.state) == JobState.FAILED, done.message
    assert done.message == "the job exceeded its wall-clock limit of 4 s"
    ran = done.finished_at.ToNanoseconds() / 1e9 - done.started_at.ToNanoseconds() / 1e9
    assert 4 <= ran < 4 + 12, ran  # stopped within a poll and the workers' grace
    assert done.epoch < 100000


def test_a_search_counts_its_whole_run_against_the_limit(runtime_stack):
    from tests.integration.helpers import submit, wait_job
    from trainserve.core.spec import parse_spec

    spec = _long_xor("time-limited-search", max_duration_s=10)
    spec.MergeFrom(parse_spec({"search": {
        "space": {"optimizer.lr": "choice([0.01, 0.02])"}, "metric": "val_loss",
        "mode": "min", "num_samples": 2, "trial_resources": {"cpus": 0.5}}}))
    job = submit(runtime_stack.stubs, spec)
    done = wait_job(runtime_stack.stubs, job.id, timeout=180)
    assert JobState(done.state) == JobState.FAILED, done.message
    assert done.message == "the job exceeded its wall-clock limit of 10 s"
    ran = done.finished_at.ToNanoseconds() / 1e9 - done.started_at.ToNanoseconds() / 1e9
    assert 10 <= ran < 10 + 25, ran


def test_a_wall_clock_limit_above_the_servers_maximum_is_refused(runtime_stack):
    import grpc

    from tests.integration.helpers import rpc_error, submit

    err = rpc_error(submit, runtime_stack.stubs, _long_xor("too-long", max_duration_s=90000))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("spec.training.max_duration_s"), err.details()
    assert "86400" in err.details()
    err = rpc_error(submit, runtime_stack.stubs, _long_xor("restarts", max_restarts=11))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("spec.training.max_restarts"), err.details()
