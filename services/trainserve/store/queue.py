"""The job queue: a Redis stream read by the consumer group `dispatchers` (at-least-once).

An entry stays pending until the dispatcher that runs the job acknowledges it at a terminal
state. While a job runs, its dispatcher renews a lease key; an entry whose job has no lease
belongs to a dead dispatcher and is claimed by whichever dispatcher notices first.
"""
from __future__ import annotations

from dataclasses import dataclass

import redis

from trainserve.store.jobs import QUEUE
from trainserve.store.redis import PREFIX, ensure_group

GROUP = "dispatchers"
LEASE_SECONDS = 15


@dataclass(frozen=True)
class QueueEntry:
    entry_id: str
    job_id: str


def lease_key(job_id: str) -> str:
    return f"{PREFIX}lease:{job_id}"


class JobQueue:
    def __init__(self, client: redis.Redis, consumer: str):
        self.r = client
        self.consumer = consumer
        ensure_group(client, QUEUE, GROUP)

    def read(self, count: int = 1, block_ms: int = 1000) -> list[QueueEntry]:
        """New entries for this consumer (they become pending until `ack`)."""
        got = self.r.xreadgroup(GROUP, self.consumer, {QUEUE: ">"}, count=count, block=block_ms)
        return [_entry(eid, f) for eid, f in got[0][1]] if got else []

    def pending(self, count: int = 100) -> list[QueueEntry]:
        """Every pending entry, of any consumer, oldest first."""
        rows = self.r.xpending_range(QUEUE, GROUP, min="-", max="+", count=count)
        ids = [row["message_id"] for row in rows]
        entries = []
        for eid in ids:
            got = self.r.xrange(QUEUE, eid, eid)
            if got:
                entries.append(_entry(*got[0]))
            else:  # trimmed away: nothing to run, drop it
                self.r.xack(QUEUE, GROUP, eid)
        return entries

    def claim(self, entry: QueueEntry) -> None:
        self.r.xclaim(QUEUE, GROUP, self.consumer, min_idle_time=0, message_ids=[entry.entry_id])

    def ack(self, entry: QueueEntry) -> None:
        self.r.xack(QUEUE, GROUP, entry.entry_id)

    def depth(self) -> int:
        """Entries not yet delivered plus those delivered and not acknowledged."""
        info = self.r.xinfo_groups(QUEUE)
        group = next((g for g in info if g["name"] in (GROUP, GROUP.encode())), None)
        lag = (group or {}).get("lag") or 0
        return int(lag) + int((group or {}).get("pending") or 0)

    # Leases: who runs a job right now.
    def acquire_lease(self, job_id: str, owner: str) -> bool:
        return bool(self.r.set(lease_key(job_id), owner, nx=True, ex=LEASE_SECONDS))

    def renew_lease(self, job_id: str, owner: str) -> bool:
        # Renew only our own lease; a stale owner must not extend someone else's.
        script = ("if redis.call('GET', KEYS[1]) == ARGV[1] then "
                  "return redis.call('EXPIRE', KEYS[1], ARGV[2]) else return 0 end")
        return bool(self.r.eval(script, 1, lease_key(job_id), owner, LEASE_SECONDS))

    def release_lease(self, job_id: str, owner: str) -> None:
        script = ("if redis.call('GET', KEYS[1]) == ARGV[1] then "
                  "return redis.call('DEL', KEYS[1]) else return 0 end")
        self.r.eval(script, 1, lease_key(job_id), owner)


def _entry(eid: bytes, fields: dict) -> QueueEntry:
    return QueueEntry(eid.decode(), fields[b"job_id"].decode())
