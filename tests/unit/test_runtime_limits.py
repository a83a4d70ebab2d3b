"""The runtime limits of a job without servers: `training.max_restarts` and
`training.max_duration_s` validation, the launcher's stop decisions and the lease renewal's
judgement of a lost lease."""
from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from trainserve.core import errors
from trainserve.dispatch.dispatcher import Dispatcher
from trainserve.core.spec import parse_spec
from trainserve.store.queue import LEASE_SECONDS, Lease
from trainserve.runtime.launch import _Stops
from trainserve.training.validate import MAX_JOB_DURATION_S, MAX_RESTARTS, check_spec


def _spec(**training):
    return parse_spec({"dataset": {"name": "xor"}, "model": {"mlp": {}},
                       "training": {"epochs": 2, **training}})


def test_unset_limits_stay_unset_for_the_server_defaults():
    spec = check_spec(_spec())
    assert not spec.training.HasField("max_restarts")
    assert spec.training.max_duration_s == 0


@pytest.mark.parametrize("restarts", [0, 3, MAX_RESTARTS])
def test_max_restarts_within_bounds_is_kept(restarts):
    assert check_spec(_spec(max_restarts=restarts)).training.max_restarts == restarts


@pytest.mark.parametrize("restarts", [-1, MAX_RESTARTS + 1])
def test_max_restarts_out_of_bounds_is_refused_with_its_field(restarts):
    with pytest.raises(errors.InvalidArgument) as err:
        check_spec(_spec(max_restarts=restarts))
    assert err.value.field == "spec.training.max_restarts"
    assert f"[0, {MAX_RESTARTS}]" in err.value.message


@pytest.mark.parametrize("seconds", [0.5, 3600, MAX_JOB_DURATION_S])
def test_a_duration_up_to_the_maximum_is_kept(seconds):
    assert check_spec(_spec(max_duration_s=seconds)).training.max_duration_s == seconds


@pytest.mark.parametrize("seconds,words", [
    (MAX_JOB_DURATION_S + 1, "the server's maximum"), (-1, ">= 0"),
    (float("inf"), ">= 0"), (float("nan"), ">= 0")])
def test_a_duration_beyond_the_maximum_or_not_a_duration_is_refused(seconds, words):
    spec = _spec()
    spec.training.max_duration_s = seconds  # set on the message: YAML refuses inf/nan itself
    with pytest.raises(errors.InvalidArgument) as err:
        check_spec(spec)
    assert err.value.field == "spec.training.max_duration_s"
    assert words in err.value.message


def test_every_example_validates_with_the_limits():
    from pathlib import Path

    from trainserve.core.spec import load_spec_file
    examples = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
    assert examples
    for path in examples:
        spec = load_spec_file(path)
        if spec.dataset.name and not spec.HasField("search"):
            try:
                check_spec(spec)
            except errors.InvalidArgument as exc:  # only uploads the examples name
                assert "max_" not in (exc.field or ""), (path, exc)


# --- the launcher's stop decisions -------------------------------------------------------------

def test_a_past_deadline_stops_the_run_and_fails_it_with_the_limit():
    stops = _Stops(lambda: False, deadline=time.time() - 1, limit_s=3.0)
    assert stops.why() == "deadline"
    with pytest.raises(errors.TrainingError, match="exceeded its wall-clock limit of 3 s"):
        stops.ended("deadline")


def test_a_cancel_comes_before_the_deadline_and_ends_cancelled():
    stops = _Stops(lambda: True, deadline=time.time() - 1, limit_s=3.0)
    assert stops.why() == "cancel" and stops.ended("cancel").status == "cancelled"
    assert _Stops(lambda: False, deadline=time.time() + 60).why() == ""
    assert _Stops(lambda: False).why() == ""


def test_a_failing_cancel_check_is_no_cancel():
    def broken():
        raise ConnectionError("redis gone")
    assert _Stops(broken).why() == ""


# --- lease renewal ----------------------------------------------------------------------------

class _Queue:
    def __init__(self, answer):
        self.answer = answer

    def renew_lease(self, job_id):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def _renew(answer, since: float = 0.0) -> Lease:
    lease = Lease("j-1", "d-1", 1, renewed_at=time.monotonic() - since)
    Dispatcher._renew(SimpleNamespace(queue=_Queue(answer)), lease)
    return lease


def test_a_renewed_lease_is_kept():
    lease = _renew(1, since=5)
    assert not lease.lost.is_set() and time.monotonic() - lease.renewed_at < 1


def test_a_lease_gone_or_someone_elses_is_lost():
    assert _renew(0).lost.is_set()


def test_a_renewal_after_the_lease_ran_out_is_lost_even_if_redis_agrees():
    # e.g. this process was paused past its lease and the lease key reappeared since
    assert _renew(1, since=LEASE_SECONDS + 1).lost.is_set()


def test_an_unreachable_redis_loses_the_lease_only_once_it_must_have_expired():
    down = ConnectionError("redis unreachable")
    assert not _renew(down, since=5).lost.is_set()
    assert _renew(down, since=LEASE_SECONDS).lost.is_set()
