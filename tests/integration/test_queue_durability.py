"""The job API and Redis under load and crashes, on a stack of their own (redis-server and the
job API, no dispatcher, so the queue is not consumed): a burst of 1000 submissions from 20
clients, every one accepted exactly once and queued in priority order, FIFO within a priority;
SIGKILL of the API and of redis-server mid-burst loses no acknowledged submission or state
change, and clients that saw UNAVAILABLE succeed by retrying with the same request id."""
from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from tests.conftest import free_port
from trainserve.core.spec import parse_spec
from trainserve.core.state import JobState
from trainserve.core.pb import job_pb2
from trainserve.store import keys
from trainserve.store.queue import JobQueue
from trainserve.store.redis import connect

pytestmark = pytest.mark.integration
SPEC = parse_spec({"dataset": {"name": "xor"}, "model": {"mlp": {}},
                   "training": {"epochs": 1}})


@pytest.fixture(scope="module")
def api_stack():
    from trainserve.local import Config, port_settings
    from trainserve.local import LocalStack
    from trainserve.core.pb import job_pb2_grpc

    root = Path(tempfile.mkdtemp(prefix="ts-qd-"))
    cfg = Config(state_dir=root / "state", ray_temp_dir=str(root / "ray"), ray_num_cpus=1,
                 **{f: free_port() for f in port_settings()})
    stack = LocalStack(cfg)
    try:
        stack.up(["redis", "api"], timeout=120)
        channel = stack.api_channel()
        stack.jobs = job_pb2_grpc.JobServiceStub(channel)
        stack.redis = connect(cfg.redis_url)
        yield stack
    finally:
        stack.down()
        shutil.rmtree(root, ignore_errors=True)


def _submit_retrying(stack, spec, request_id, seen: list, timeout: float = 90):
    """Submit until acknowledged, retrying with the same request id on UNAVAILABLE."""
    deadline = time.time() + timeout
    while True:
        try:
            return stack.jobs.SubmitJob(job_pb2.SubmitJobRequest(
                spec=spec, request_id=request_id), timeout=10)
        except grpc.RpcError as err:
            if err.code() not in (grpc.StatusCode.UNAVAILABLE,
                                  grpc.StatusCode.DEADLINE_EXCEEDED) or time.time() > deadline:
                raise
            seen.append(err.code())
            time.sleep(0.1)


def _spec(priority: int):
    spec = job_pb2.SubmitJobRequest().spec
    spec.CopyFrom(SPEC)
    spec.priority = priority
    return spec


def _all_jobs(stack) -> list[job_pb2.Job]:
    jobs, token = [], ""
    while True:
        page = stack.jobs.ListJobs(job_pb2.ListJobsRequest(page_size=1000, page_token=token),
                                   timeout=30)
        jobs += page.jobs
        token = page.next_page_token
        if not token:
            return jobs


def _burst(stack, n, clients, priority_of, during=None):
    """n submissions from `clients` threads; returns ({request id: job}, errors seen)."""
    rids = [f"burst-{uuid.uuid4().hex}" for _ in range(n)]
    acked: dict[str, job_pb2.Job] = {}
    seen: list = []
    lock = threading.Lock()

    def one(i):
        job = _submit_retrying(stack, _spec(priority_of(i)), rids[i], seen)
        with lock:
            acked[rids[i]] = job

    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(one, i) for i in range(n)]
        if during:
            during(acked)
        for f in futures:
            f.result()
    return acked, seen


def test_a_burst_of_1000_from_20_clients_is_accepted_once_and_queued_in_order(api_stack):
    stack = api_stack
    before = {j.id for j in _all_jobs(stack)}
    t0 = time.perf_counter()
    acked, _ = _burst(stack, 1000, 20, priority_of=lambda i: (i * 7) % 3 - 1)
    rate = 1000 / (time.perf_counter() - t0)
    print(f"\n1000 submissions from 20 clients: {rate:.0f}/s")
    ids = {j.id for j in acked.values()}
    assert len(ids) == 1000
    # Retrying any of them returns the same job, and creates nothing.
    for rid in list(acked)[:50]:
        assert stack.jobs.SubmitJob(job_pb2.SubmitJobRequest(spec=_spec(5), request_id=rid),
                                    timeout=10).id == acked[rid].id
    listed = [j for j in _all_jobs(stack) if j.id not in before]
    assert sorted(j.id for j in listed) == sorted(ids)
    assert all(JobState(j.state) == JobState.QUEUED for j in listed)
    # The queue yields by priority, then in the order submissions were accepted (ids are
    # allotted in that order by the submit script).
    order = [i for i in JobQueue(stack.redis, "probe").waiting(5000) if i in ids]
    prio = {j.id: j.priority for j in acked.values()}
    assert order == sorted(ids, key=lambda i: (-prio[i], i))
    assert [prio[i] for i in order[:1]] == [1] and prio[order[-1]] == -1


def test_api_killed_mid_burst_loses_no_acknowledged_submission(api_stack):
    stack = api_stack

    def crash(acked):
        while len(acked) < 50:
            time.sleep(0.01)
        assert stack.kill("api")
        time.sleep(1.0)
        stack.start("api", timeout=60)

    acked, seen = _burst(stack, 300, 8, priority_of=lambda i: 0, during=crash)
    assert grpc.StatusCode.UNAVAILABLE in seen, "the kill did not hit any call"
    assert len({j.id for j in acked.values()}) == 300
    listed = {j.request_id: j.id for j in _all_jobs(stack) if j.request_id in acked}
    assert listed == {rid: job.id for rid, job in acked.items()}


def test_redis_killed_mid_burst_loses_no_acknowledged_write(api_stack):
    stack = api_stack
    first = _submit_retrying(stack, _spec(0), f"before-{uuid.uuid4().hex}", [])
    cancelled = stack.jobs.CancelJob(job_pb2.CancelJobRequest(job_id=first.id), timeout=10)
    assert JobState(cancelled.state) == JobState.CANCELLED

    def crash(acked):
        while len(acked) < 50:
            time.sleep(0.01)
        assert stack.kill("redis")
        time.sleep(1.0)
        stack.start("redis", timeout=60)

    acked, seen = _burst(stack, 300, 8, priority_of=lambda i: i % 2, during=crash)
    assert grpc.StatusCode.UNAVAILABLE in seen, "the kill did not hit any call"
    r = connect(stack.config.redis_url)
    listed = {j.request_id: j for j in _all_jobs(stack)}
    assert {rid: listed[rid].id for rid in acked} == {rid: j.id for rid, j in acked.items()}
    assert JobState(listed[first.request_id].state) == JobState.CANCELLED
    queued = set(JobQueue(r, "probe").waiting(10000))
    assert {j.id for j in acked.values()} <= queued and first.id not in queued


def test_the_caller_owns_the_job_and_its_quota_refuses_what_could_never_run(api_stack):
    stack = api_stack  # the API checks tokens: these calls are the admin's, for a user
    mine, theirs = _spec(3), _spec(0)
    mine.name, theirs.name = "alice-xor", "bob-xor"  # a model name is its first owner's
    job = stack.jobs.SubmitJob(job_pb2.SubmitJobRequest(spec=mine, request_id="u1",
                                                        user="alice"), timeout=10)
    assert (job.user, job.priority, job.message) == ("alice", 3, "queued")
    other = stack.jobs.SubmitJob(job_pb2.SubmitJobRequest(spec=theirs, request_id="u2",
                                                          user="bob"), timeout=10)
    assert other.user == "bob"
    stack.redis.hset(keys.quota("alice"), mapping={"cpus": "1"})
    try:
        big = _spec(0)
        big.name = "alice-xor"
        big.scaling.num_workers = 2
        with pytest.raises(grpc.RpcError) as err:
            stack.jobs.SubmitJob(job_pb2.SubmitJobRequest(spec=big, request_id="u3",
                                                          user="alice"), timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "spec.scaling.num_workers" in err.value.details()
        assert "user 'alice' may hold at most 1" in err.value.details()
        big.priority = 500
        with pytest.raises(grpc.RpcError) as err:
            stack.jobs.SubmitJob(job_pb2.SubmitJobRequest(spec=big, request_id="u4"),
                                 timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details().startswith("spec.priority")
    finally:
        stack.redis.delete(keys.quota("alice"))
