"""A hostile tenant at the job API's door (real gRPC over sockets, real Redis, real tokens):
a spec bloated with unknown fields or too many bytes, a stolen request id, a flood of queued
jobs, a flood of open streams and a self-raised priority are each refused with a clear error,
per user, while other users carry on; a finished job's event and log streams expire.

Most tests run the job API alone (no dispatcher: jobs stay QUEUED); the last one runs a real
job to its end on the `stack`."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from tests.integration.helpers import example, wait_job
# `users`: (admin, alice, bob) on a fresh job API with authentication and default limits.
from tests.integration.test_api_tenancy import As, users  # noqa: F401
from trainserve.api.servicers import USER_MAX_STREAMS
from trainserve.jobs.service import MAX_SPEC_BYTES
from trainserve.core.state import JobState
from trainserve.core.pb import job_pb2
from trainserve.store.events import EventLog
from trainserve.store import keys
from trainserve.store.jobs import REQUEST_ID_TTL_S, RETENTION_S
from trainserve.store.logs import JobLogs

pytestmark = pytest.mark.integration

SUBMIT = "/trainserve.v1.JobService/SubmitJob"


def _refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field, encoded by hand."""
    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def _raw_submit(who: As, spec_bytes: bytes, request_id: str = "raw"):
    """SubmitJob with a spec given as bytes, through a raw call (no client-side parsing)."""
    call = who.channel.unary_unary(SUBMIT)  # no serializers: bytes in, bytes out
    body = _field(1, spec_bytes) + _field(2, request_id.encode())
    return job_pb2.Job.FromString(call(body, timeout=30))


def _mine(who: As) -> list[job_pb2.Job]:
    return list(who.jobs.ListJobs(job_pb2.ListJobsRequest(), timeout=10).jobs)


def test_unknown_fields_are_refused_and_nothing_is_stored(users):
    _, alice, _ = users
    spec = example("xor_mlp").SerializeToString()
    bloat = spec + _field(999, b"\0" * (2 << 20))  # 2 MiB the server would store unread
    err = _refused(lambda: _raw_submit(alice, bloat))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Under the message limit, an unknown field is refused by where it is, at any depth.
    err = _refused(lambda: _raw_submit(alice, spec + _field(999, b"\0" * (512 << 10))))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "spec: unknown field number 999"
    training = example("xor_mlp").training.SerializeToString() + _field(999, b"x")
    err = _refused(lambda: _raw_submit(alice, spec + _field(7, training)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "spec.training: unknown field number 999"
    assert _mine(alice) == []
    assert _raw_submit(alice, spec).user == "alice"  # the same bytes without the bloat


def test_an_oversized_spec_is_refused_naming_the_limit(users):
    _, alice, _ = users
    spec = example("xor_mlp")
    for i in range(2000):
        spec.labels[f"label-{i:05d}"] = "v" * 40
    assert spec.ByteSize() > MAX_SPEC_BYTES
    err = _refused(lambda: alice.submit(spec))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"limit of {MAX_SPEC_BYTES} bytes" in err.details()
    assert _mine(alice) == []


def test_a_request_id_is_its_owners_own_and_expires(users, redis_client):
    _, alice, bob = users
    hers = alice.submit(example("xor_mlp", name="alice-xor"), request_id="predictable-1")
    his = bob.submit(example("xor_mlp", name="bob-xor"), request_id="predictable-1")
    assert his.id != hers.id and (his.user, his.spec.name) == ("bob", "bob-xor")
    err = _refused(lambda: bob.jobs.GetJob(job_pb2.GetJobRequest(job_id=hers.id), timeout=10))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    # Each owner's retry still returns their own job.
    again = alice.submit(example("xor_mlp", name="alice-xor"), request_id="predictable-1")
    assert again.id == hers.id
    assert bob.submit(example("xor_mlp", name="bob-xor"), request_id="predictable-1").id == his.id
    ttl = redis_client.ttl(keys.request("alice", "predictable-1"))
    assert 0 < ttl <= REQUEST_ID_TTL_S


def test_queued_jobs_per_user_are_capped_atomically(users, redis_client):
    admin, alice, bob = users
    redis_client.hset(keys.quota("alice"), "queued", 3)

    def one(i):
        try:
            return alice.submit(example("xor_mlp", name="alice-xor"), request_id=f"q{i}")
        except grpc.RpcError as err:
            return err

    with ThreadPoolExecutor(10) as pool:
        got = list(pool.map(one, range(10)))
    accepted = [g for g in got if isinstance(g, job_pb2.Job)]
    refused = [g for g in got if isinstance(g, grpc.RpcError)]
    assert len(accepted) == 3 and len(refused) == 7
    assert {e.code() for e in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert "user 'alice' has 3 queued jobs, the limit" in refused[0].details()
    # A retry of an accepted submission is no new job: it is answered, not refused.
    assert alice.submit(example("xor_mlp", name="alice-xor"),
                        request_id=accepted[0].request_id).id == accepted[0].id
    # A job that leaves the queue frees its place.
    alice.jobs.CancelJob(job_pb2.CancelJobRequest(job_id=accepted[0].id), timeout=10)
    assert alice.submit(example("xor_mlp", name="alice-xor")).user == "alice"
    assert _refused(lambda: alice.submit(example("xor_mlp", name="alice-xor"))).code() \
        == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Other users are not held back, nor is an admin (who may queue for her past the limit).
    assert bob.submit(example("xor_mlp", name="bob-xor")).user == "bob"
    assert admin.submit(example("xor_mlp", name="alice-xor"), user="alice").user == "alice"


def test_open_streams_per_user_are_capped_and_freed(users):
    _, alice, bob = users
    job = alice.submit(example("xor_mlp", name="alice-xor"))  # stays queued: no dispatcher
    req = job_pb2.WatchJobRequest(job_id=job.id)
    streams = []
    for _ in range(USER_MAX_STREAMS):
        call = alice.jobs.WatchJob(req, timeout=60)
        next(call)  # the "queued" event: the stream is open on the server
        streams.append(call)
    extra = alice.jobs.WatchJob(req, timeout=60)
    err = _refused(lambda: next(extra))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"the limit ({USER_MAX_STREAMS}" in err.details()
    logs = alice.jobs.StreamLogs(job_pb2.StreamLogsRequest(job_id=job.id, follow=True),
                                 timeout=60)
    assert _refused(lambda: next(logs)).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Another user is served meanwhile, quickly.
    t0 = time.perf_counter()
    assert [j.id for j in _mine(bob)] == []
    assert time.perf_counter() - t0 < 2.0
    # A client that goes away gives its slot back.
    streams.pop().cancel()
    deadline = time.time() + 10
    while True:
        again = alice.jobs.WatchJob(req, timeout=60)
        try:
            next(again)
            break
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and time.time() < deadline
            time.sleep(0.1)
    for call in [*streams, again]:
        call.cancel()


def test_only_an_admin_raises_a_priority(users):
    admin, alice, _ = users
    err = _refused(lambda: alice.submit(example("xor_mlp", name="alice-xor", priority=5)))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "spec.priority" in err.details()
    assert alice.submit(example("xor_mlp", name="alice-xor", priority=-5)).priority == -5
    assert admin.submit(example("xor_mlp", name="alice-xor", priority=5),
                        user="alice").priority == 5


def test_a_cancelled_jobs_events_expire(users, redis_client):
    _, alice, _ = users
    job = alice.submit(example("xor_mlp", name="alice-xor"))
    assert redis_client.ttl(EventLog.key(job.id)) == -1  # kept while the job is live
    alice.jobs.CancelJob(job_pb2.CancelJobRequest(job_id=job.id), timeout=10)
    assert 0 < redis_client.ttl(EventLog.key(job.id)) <= RETENTION_S
    assert alice.jobs.GetJob(job_pb2.GetJobRequest(job_id=job.id), timeout=10).id == job.id


def test_a_finished_jobs_event_and_log_streams_expire_on_the_stack(stack, stubs):
    from trainserve.store.redis import connect
    job = stubs.jobs.SubmitJob(job_pb2.SubmitJobRequest(spec=example("xor_mlp")), timeout=30)
    done = wait_job(stubs, job.id, timeout=300)
    assert JobState(done.state) == JobState.SUCCEEDED
    r = connect(stack.config.redis_url)
    assert r.xlen(EventLog.key(job.id)) > 0
    assert 0 < r.ttl(EventLog.key(job.id)) <= RETENTION_S
    if r.exists(JobLogs.key(job.id)):
        assert 0 < r.ttl(JobLogs.key(job.id)) <= RETENTION_S
    # The job itself stays listed.
    assert stubs.jobs.GetJob(job_pb2.GetJobRequest(job_id=job.id), timeout=10).id == job.id
