"""The job queue: queued jobs in the sorted set `ts:pending`, ranked by priority with aging and
FIFO within a priority (`jobs.scheduling`); leases on running jobs; per-user quotas.

A job leaves the queue only by the atomic transition out of QUEUED (`JobStore.transition`),
which for a start also takes the job's lease. While a job runs, its dispatcher renews the
lease; a RUNNING job without a lease belongs to a dead dispatcher and is resumed by whichever
dispatcher notices first (`orphans`). Each lease taken comes with a fencing token
(`store.fencing`), so a dispatcher that merely stalled past its lease can no longer write.
Nothing about the queue lives in a process's memory.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import redis

from trainserve.core.errors import FailedPrecondition
from trainserve.core.scheduling import Candidate, Need, Quota, Running
from trainserve.core.state import JobState
from trainserve.store import fencing, keys
from trainserve.store.jobs import JobStore

GROUP = "dispatchers"  # the consumer group of the stream the queue used to be
LEASE_SECONDS = 15

# Set the waiting reason only while the job is still queued (it may have started meanwhile).
_SET_REASON = """
if redis.call('HGET', KEYS[1], 'state') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'queue_reason', ARGV[2], 'message', ARGV[2])
  return 1
end
return 0
"""
_IF_OWNER = ("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call({op}) "
             "else return 0 end")

__all__ = ["GROUP", "LEASE_SECONDS", "JobQueue", "Lease", "quota_of", "cluster_and_quota",
           "cluster_resources", "waiting_count", "oldest_waiting_age"]


@dataclass
class Lease:
    """A job this dispatcher runs: the fencing token its lease came with, when the lease was
    last renewed (`time.monotonic()`), and `lost`, set once it is known (or must be assumed)
    to have expired: the job's run must then stop and record nothing."""
    job_id: str
    owner: str
    fence: int
    renewed_at: float = field(default_factory=time.monotonic)
    lost: threading.Event = field(default_factory=threading.Event)


def quota_of(client: redis.Redis, user: str) -> Quota:
    """The user's quota: `ts:quota:default` (the dispatcher publishes its flags there) with
    the non-zero fields of `ts:quota:<user>` (set by an operator) on top."""
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.QUOTA_DEFAULT)
    pipe.hgetall(keys.quota(user or "-"))
    return _quota(*pipe.execute())


def cluster_and_quota(client: redis.Redis, user: str) -> tuple[dict, Quota]:
    """(`cluster_resources`, `quota_of(user)`) in one round trip: what admitting a job reads."""
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.CLUSTER)
    pipe.hgetall(keys.QUOTA_DEFAULT)
    pipe.hgetall(keys.quota(user or "-"))
    cluster, default, own = pipe.execute()
    return _resources(cluster), _quota(default, own)


def cluster_resources(client: redis.Redis) -> dict:
    """Resources the dispatcher last published ({"CPU": 2.0, ...}); empty if none yet."""
    return _resources(client.hgetall(keys.CLUSTER))


def _resources(raw: dict) -> dict:
    return {k.decode(): float(v) for k, v in raw.items() if k.decode().isupper()}


def _quota(default: dict, own: dict) -> Quota:
    return Quota.from_fields(default).merged(Quota.from_fields(own) if own else None)


def waiting_count(client: redis.Redis) -> int:
    """Jobs queued and not started."""
    return int(client.zcard(keys.PENDING))


def oldest_waiting_age(client: redis.Redis, now: float | None = None) -> float:
    """Seconds the longest-waiting queued job has waited (0 when none waits)."""
    pipe = client.pipeline(transaction=False)
    pipe.zrange(keys.jobs_in(JobState.QUEUED), 0, 0)  # ids sort by creation time
    (first,) = pipe.execute()
    if not first:
        return 0.0
    ms = int(first[0].decode()[2:13], 16)
    return max(0.0, (now if now is not None else time.time()) - ms / 1000)


class JobQueue:
    def __init__(self, client: redis.Redis, consumer: str, store: JobStore | None = None):
        self.r = client
        self.consumer = consumer
        self.store = store or JobStore(client)
        self._set_reason = client.register_script(_SET_REASON)
        self._renew = client.register_script(_IF_OWNER.format(
            op="'EXPIRE', KEYS[1], ARGV[2]"))
        self._release = client.register_script(_IF_OWNER.format(op="'DEL', KEYS[1]"))

    # -- what waits, in order --------------------------------------------------------------
    def waiting(self, limit: int = 1000, offset: int = 0) -> list[str]:
        """Queued job ids in the order they are to start (before quotas and resources)."""
        return [i.decode() for i in self.r.zrange(keys.PENDING, offset, offset + limit - 1)]

    def depth(self) -> int:
        return waiting_count(self.r)

    def candidates(self, limit: int = 1000) -> list[Candidate]:
        ids = self.waiting(limit)
        return [Candidate(i, user, need) for i, user, need in zip(ids, *self._needs(ids))]

    def running(self) -> list[Running]:
        ids = [i.decode() for i in self.r.zrange(keys.jobs_in(JobState.RUNNING), 0, -1)]
        return [Running(i, user, need) for i, user, need in zip(ids, *self._needs(ids))]

    def _needs(self, ids: list[str]) -> tuple[list[str], list[Need]]:
        pipe = self.r.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(keys.job(job_id), "owner", "cpus", "gpus")
        users, needs = [], []
        for owner, cpus, gpus in pipe.execute():
            users.append((owner or b"").decode())
            needs.append(Need(float(cpus or 1.0), float(gpus or 0.0)))
        return users, needs

    def set_reasons(self, reasons: dict[str, str]) -> None:
        """Record why each of these queued jobs waits (GetJob's `queue_reason`)."""
        pipe = self.r.pipeline(transaction=False)
        queued = str(int(JobState.QUEUED))
        for job_id, reason in reasons.items():
            self._set_reason(keys=[keys.job(job_id)], args=[queued, reason], client=pipe)
        pipe.execute()

    # -- starting and resuming ---------------------------------------------------------------
    def start(self, job_id: str) -> int:
        """QUEUED -> RUNNING with this consumer's lease, atomically, then the lease's fencing
        token (`store.fencing`). Returns the token, or 0 if the job is no longer queued
        (cancelled, or another dispatcher started it) or the lease was lost before the token
        was taken (the job is then an orphan that recovery resumes)."""
        attempts = int(self.r.hget(keys.job(job_id), "attempts") or 0)
        try:
            self.store.transition(job_id, JobState.RUNNING, "running",
                                  lease_owner=self.consumer, lease_s=LEASE_SECONDS,
                                  attempts=attempts + 1)
        except FailedPrecondition:
            return 0
        return fencing.take(self.r, job_id, self.consumer)

    def orphans(self) -> list[str]:
        """RUNNING jobs that no dispatcher holds a lease on (theirs died)."""
        ids = [i.decode() for i in self.r.zrange(keys.jobs_in(JobState.RUNNING), 0, -1)]
        if not ids:
            return []
        pipe = self.r.pipeline(transaction=False)
        for job_id in ids:
            pipe.exists(keys.lease(job_id))
        return [i for i, held in zip(ids, pipe.execute()) if not held]

    def migrate_stream(self) -> int:
        """Queue the QUEUED jobs of the stream the queue used to be (an upgrade from a
        version before priorities); idempotent. Returns how many it added."""
        if not self.r.exists(keys.QUEUE):
            return 0
        added = 0
        for _, fields in self.r.xrange(keys.QUEUE):
            job_id = fields.get(b"job_id", b"").decode()
            state = self.r.hget(keys.job(job_id), "state")
            if state is not None and int(state) == JobState.QUEUED:
                ms = int(job_id[2:13], 16)
                added += self.r.zadd(keys.PENDING, {job_id: float(ms)}, nx=True)
        return added

    # -- leases and the scheduler lock -------------------------------------------------------
    def acquire_lease(self, job_id: str, owner: str | None = None) -> int:
        """Take the job's lease and a new fencing token in one step; the token, or 0 when
        another holds the lease."""
        return fencing.acquire(self.r, job_id, owner or self.consumer, LEASE_SECONDS)

    def renew_lease(self, job_id: str, owner: str | None = None) -> bool:
        # Renew only our own lease; a stale owner must not extend someone else's.
        return bool(self._renew(keys=[keys.lease(job_id)],
                                args=[owner or self.consumer, LEASE_SECONDS]))

    def release_lease(self, job_id: str, owner: str | None = None) -> None:
        self._release(keys=[keys.lease(job_id)], args=[owner or self.consumer])

    def lock_scheduler(self, ttl_s: int = 10) -> bool:
        """One dispatcher schedules at a time, so two never both fill the same free CPUs."""
        return bool(self.r.set(keys.SCHEDULER, self.consumer, nx=True, ex=ttl_s))

    def unlock_scheduler(self) -> None:
        self._release(keys=[keys.SCHEDULER], args=[self.consumer])

    def publish_default_quota(self, quota: Quota) -> None:
        self.r.hset(keys.QUOTA_DEFAULT, mapping={
            "jobs": str(quota.jobs), "cpus": repr(quota.cpus), "gpus": repr(quota.gpus)})
