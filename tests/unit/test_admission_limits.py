"""Admission limits without servers: a spec carrying unknown fields or too many bytes is
refused naming where and the limit, every example passes at the defaults, only an admin raises
a priority, the per-user stream slots are counted and freed, and a per-user `queued` quota is
read back."""
from __future__ import annotations

from pathlib import Path

import pytest

from trainserve.api.servicers import StreamSlots
from trainserve.core.errors import InvalidArgument, PermissionDenied, ResourceExhausted
from trainserve.core.scheduling import Quota
from trainserve.jobs.service import MAX_SPEC_BYTES, _check_scheduling_fields, check_spec_size
from trainserve.core.spec import load_spec_file
from trainserve.core.pb import spec_pb2
from trainserve.core.tenancy import Principal

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ALICE, ADMIN = Principal("alice", "user"), Principal("root", "admin")
UNKNOWN_999 = bytes([0xB8, 0x3E, 0x01])  # field 999, varint 1
# A whole job id (`j-`, 11 + 8 hex digits): the servicer looks up no prefix for it.
WHOLE_ID = "j-19af3c2b1d40000002a"


def _with_unknown(msg):
    """A copy of `msg` that carries an unknown field, as a newer (or hostile) client sends."""
    return type(msg).FromString(msg.SerializeToString() + UNKNOWN_999)


def test_every_example_passes_at_the_default_cap_with_room_to_spare():
    sizes = [load_spec_file(p).ByteSize() for p in EXAMPLES.glob("*.yaml")]
    assert sizes and max(sizes) * 50 < MAX_SPEC_BYTES
    for path in EXAMPLES.glob("*.yaml"):
        check_spec_size(load_spec_file(path), MAX_SPEC_BYTES)


@pytest.mark.parametrize("where", ["spec", "spec.training", "spec.model.mlp",
                                   "spec.search.scheduler", "spec.model.transfer"])
def test_an_unknown_field_at_any_depth_is_refused_naming_its_path(where):
    spec = load_spec_file(EXAMPLES / "xor_mlp.yaml")
    if where == "spec":
        spec = _with_unknown(spec)
    else:
        parent, name = spec, None
        for name in where.split(".")[1:-1]:
            parent = getattr(parent, name)
        leaf = where.split(".")[-1]
        getattr(parent, leaf).CopyFrom(_with_unknown(getattr(parent, leaf)))
    with pytest.raises(InvalidArgument) as err:
        check_spec_size(spec, MAX_SPEC_BYTES)
    assert err.value.field == where
    assert "unknown field number 999" in str(err.value)


def test_an_oversized_spec_is_refused_naming_the_limit():
    spec = load_spec_file(EXAMPLES / "xor_mlp.yaml")
    spec.description = "x" * (MAX_SPEC_BYTES + 1)
    with pytest.raises(ResourceExhausted) as err:
        check_spec_size(spec, MAX_SPEC_BYTES)
    assert f"limit of {MAX_SPEC_BYTES} bytes" in err.value.message
    check_spec_size(spec, 0)  # 0: no limit


def test_only_an_admin_raises_a_priority_anyone_lowers_one():
    spec = spec_pb2.JobSpec(priority=1)
    with pytest.raises(PermissionDenied) as err:
        _check_scheduling_fields(spec, ALICE)
    assert "spec.priority" in err.value.message
    _check_scheduling_fields(spec, ADMIN)
    _check_scheduling_fields(spec_pb2.JobSpec(priority=-50), ALICE)
    _check_scheduling_fields(spec_pb2.JobSpec(), ALICE)
    with pytest.raises(InvalidArgument):  # the range still holds, for admins too
        _check_scheduling_fields(spec_pb2.JobSpec(priority=101), ADMIN)


def test_stream_slots_are_per_user_and_freed_when_a_stream_ends():
    slots = StreamSlots(2)
    with slots.hold("alice"), slots.hold("alice"):
        with pytest.raises(ResourceExhausted) as err:
            with slots.hold("alice"):
                pass
        assert "user 'alice' has 2 open" in err.value.message
        with slots.hold("bob"):
            pass
    with pytest.raises(RuntimeError):
        with slots.hold("alice"):
            raise RuntimeError("the stream failed")
    assert slots.open == {}
    with slots.hold("alice"), slots.hold("alice"):
        pass


def test_stream_slots_have_a_total_for_all_users():
    slots = StreamSlots(2, total=3)
    with slots.hold("alice"), slots.hold("alice"), slots.hold("bob"):
        with pytest.raises(ResourceExhausted) as err:
            with slots.hold("carol"):
                pass
        assert "3 open WatchJob/StreamLogs streams, its limit (max_streams)" in err.value.message
    with slots.hold("carol"):
        pass


def test_live_streams_never_delay_other_calls():
    """Streams step on a pool of their own: with the short calls' only thread free, GetJob
    answers at once while three watches block a second per step."""
    import asyncio
    import time
    from concurrent.futures import ThreadPoolExecutor

    from trainserve.api.auth import acting_as
    from trainserve.api.servicers import JobServicer, _Blocking
    from trainserve.core.pb import job_pb2

    def slow_events():
        while True:
            time.sleep(1.0)  # what the store's follow() does when nothing happens
            yield job_pb2.JobEvent()

    class Core:
        class store:
            class events:
                follow = staticmethod(lambda *a, **k: slow_events())

        def get(self, job_id, caller):
            return job_pb2.Job(id=job_id)

        def is_terminal(self, job_id):
            return False

    servicer = JobServicer(Core(), _Blocking(ThreadPoolExecutor(1)), StreamSlots(),
                           _Blocking(ThreadPoolExecutor(3)))
    request = job_pb2.WatchJobRequest(job_id=WHOLE_ID)

    async def scenario():
        async def watch():
            async for _ in servicer.WatchJob(request, None):
                pass
        watches = [asyncio.create_task(watch()) for _ in range(3)]
        await asyncio.sleep(0.2)
        started = time.perf_counter()
        await servicer.GetJob(job_pb2.GetJobRequest(job_id=WHOLE_ID), None)
        took = time.perf_counter() - started
        for w in watches:
            w.cancel()
        await asyncio.gather(*watches, return_exceptions=True)
        return took

    with acting_as(ALICE):
        assert asyncio.run(scenario()) < 0.5


def test_the_queued_quota_is_read_and_merged():
    default = Quota.from_fields({b"jobs": b"4"})
    own = Quota.from_fields({b"queued": b"3"})
    assert default.merged(own) == Quota(jobs=4, queued=3)
    assert default.merged(None).queued == 0


def test_trainserve_up_passes_only_the_limits_it_is_given(tmp_path):
    from trainserve.local import Config
    from trainserve.local import LocalStack
    plain = LocalStack(Config(state_dir=tmp_path))
    assert not [a for a in plain.launch("api").argv + plain.launch("dispatcher").argv
                if a.startswith(("--user-max", "--job-retention"))]
    cfg = Config.from_env({"TRAINSERVE_USER_MAX_QUEUED": "7"}, state_dir=tmp_path,
                          user_max_streams=2, user_max_jobs=1, job_retention_s=0)
    stack = LocalStack(cfg)
    assert {"--user-max-queued=7", "--user-max-streams=2", "--job-retention-s=0"} \
        <= set(stack.launch("api").argv)
    assert {"--user-max-jobs=1", "--job-retention-s=0"} <= set(stack.launch("dispatcher").argv)


def test_renderings_are_capped_per_user_on_a_pool_of_their_own():
    """Two slow plot renderings of alice's hold her share: her third is refused at once,
    bob's runs, and a short call answers meanwhile though the short calls have one thread."""
    import asyncio
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from trainserve.api.auth import acting_as
    from trainserve.api.servicers import JobServicer, Rendering, RenderSlots, _Blocking
    from trainserve.core.pb import job_pb2

    release = threading.Event()

    class Artifacts:
        def list(self, job_id, caller):
            release.wait(5)  # a long rendering
            return []

    class Core:
        def get(self, job_id, caller):
            return job_pb2.Job(id=job_id)

    servicer = JobServicer(Core(), _Blocking(ThreadPoolExecutor(1)), StreamSlots(), None,
                           Rendering(RenderSlots(2, 3), _Blocking(ThreadPoolExecutor(3))))
    servicer.artifacts = Artifacts()
    request = job_pb2.ListArtifactsRequest(job_id=WHOLE_ID)

    async def as_user(p, call):
        with acting_as(p):
            return await call()

    async def scenario():
        render = lambda: servicer.ListArtifacts(request, None)  # noqa: E731
        held = [asyncio.create_task(as_user(ALICE, render)) for _ in range(2)]
        await asyncio.sleep(0.2)
        with pytest.raises(ResourceExhausted) as err:
            await as_user(ALICE, render)
        assert "user 'alice' has 2 plot renderings or model exports in progress" in \
            err.value.message and "user_max_renders" in err.value.message
        bobs = asyncio.create_task(as_user(Principal("bob", "user"), render))
        await asyncio.sleep(0.2)
        with pytest.raises(ResourceExhausted, match=r"this server has 3 .*\(max_renders\)"):
            await as_user(Principal("carol", "user"), render)
        started = time.perf_counter()
        await as_user(ALICE,
                      lambda: servicer.GetJob(job_pb2.GetJobRequest(job_id=WHOLE_ID), None))
        took = time.perf_counter() - started
        release.set()
        await asyncio.gather(*held, bobs)
        return took

    assert asyncio.run(scenario()) < 0.5
