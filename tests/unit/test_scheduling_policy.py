"""The scheduling policy (jobs/scheduling.py) as pure decisions: order, quotas, reservation,
aging, and refusals of jobs that could never start."""
import pytest

from trainserve.core.errors import InvalidArgument
from trainserve.core.scheduling import (AGING_S, Candidate, Need, Quota, Running, check_fits,
                                        need_of, plan, queue_score)
from trainserve.core.pb import spec_pb2

CLUSTER = {"CPU": 4.0, "GPU": 0.0}


def _c(job_id, cpus=1.0, user="u"):
    return Candidate(job_id, user, Need(cpus=cpus))


def _unlimited(user):
    return Quota()


def test_starts_in_rank_order_while_resources_and_slots_last():
    got = plan([_c("a"), _c("b", 2), _c("c"), _c("d")], [], CLUSTER, _unlimited, slots=10)
    assert got.start == ["a", "b", "c"]
    assert "needs 1 CPUs, 0 free" in got.reasons["d"]
    got = plan([_c("a"), _c("b")], [], CLUSTER, _unlimited, slots=1)
    assert got.start == ["a"] and got.reasons["b"] == "waiting for a dispatcher slot"


def test_a_big_job_reserves_its_cpus_so_smaller_later_jobs_cannot_overtake_it():
    running = [Running("r", "u", Need(cpus=3))]
    got = plan([_c("big", 4), _c("small", 1)], running, CLUSTER, _unlimited, slots=10)
    assert got.start == []  # 1 CPU is free, but it is the big job's once "r" ends
    assert "needs 4 CPUs, 1 free" in got.reasons["big"]
    assert "after the jobs ahead of it" in got.reasons["small"]
    # Once the running job ends, the big one starts first.
    assert plan([_c("big", 4), _c("small")], [], CLUSTER, _unlimited, 10).start == ["big"]


def test_quota_blocks_only_its_own_user_and_reserves_nothing():
    quota = {"alice": Quota(jobs=1), "bob": Quota(cpus=2)}.get
    running = [Running("r", "alice", Need(cpus=1))]
    queued = [_c("a1", user="alice"), _c("b1", 2, "bob"), _c("b2", 1, "bob"), _c("c1", 1, "carol")]
    got = plan(queued, running, CLUSTER, lambda u: quota(u) or Quota(), slots=10)
    assert got.start == ["b1", "c1"]
    assert got.reasons["a1"] == "waiting for the quota of user 'alice': 1 of 1 jobs running"
    assert "needs 1 CPUs, 2 of 2 in use" in got.reasons["b2"]


def test_aging_ranks_a_long_waiting_low_priority_job_before_newer_urgent_ones():
    old_low = queue_score(0, priority=0)
    assert queue_score(1000, priority=1) < old_low  # a second later, one level higher: first
    assert queue_score(int(AGING_S * 1000) + 1, priority=1) > old_low  # waited out: behind
    assert queue_score(5, 0) > queue_score(4, 0)  # FIFO within a priority


def test_jobs_that_could_never_start_are_refused_with_the_field():
    with pytest.raises(InvalidArgument) as err:
        check_fits(Need(cpus=8), CLUSTER, Quota(), "u")
    assert err.value.field == "spec.scaling.num_workers" and "4 in all" in err.value.message
    with pytest.raises(InvalidArgument) as err:
        check_fits(Need(cpus=1, gpus=1), CLUSTER, Quota(), "u")
    assert err.value.field == "spec.scaling.use_gpu"
    with pytest.raises(InvalidArgument, match="user 'u' may hold at most 2"):
        check_fits(Need(cpus=3), CLUSTER, Quota(cpus=2), "u")
    check_fits(Need(cpus=4), CLUSTER, Quota(cpus=4), "u")


def test_need_of_counts_every_worker():
    spec = spec_pb2.JobSpec()
    assert need_of(spec) == Need(1.0, 0.0)
    spec.scaling.num_workers, spec.scaling.cpus_per_worker, spec.scaling.use_gpu = 3, 0.5, True
    assert need_of(spec) == Need(1.5, 3.0)
