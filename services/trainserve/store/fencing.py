"""Fencing tokens: only the newest holder of a job's lease may write the job's state.

A lease (`store.queue`) expires when its dispatcher stops renewing it: crashed, cut off from
Redis, or merely paused. In the last two cases the old dispatcher and its workers are still
alive when another dispatcher resumes the job. So every lease acquisition also takes a token,
`HINCRBY ts:job:<id> fence 1` (a number that only grows), and every write a job's runner and
workers make (epoch progress, events, worker logs, the final transition) carries the token
of the lease it runs under: a Lua script refuses it, in the same step as the write, when the
job's token is newer. A refused writer learns it has been superseded and stops.

Token 0 means "not fenced" (a job run outside a dispatcher, e.g. by tests): accepted while
no dispatcher ever took the job's lease.
"""
from __future__ import annotations

import json
import time

import redis

from trainserve.core.pb import job_pb2
from trainserve.store import events as _events, keys, logs as _logs
from trainserve.store.jobs import FENCE_FIELD
from trainserve.store.redis import connect

# The job hash field counting the writes refused because a newer token exists.
REFUSED_FIELD = "fenced_writes"

# KEYS: lease, job hash. ARGV: owner, lease seconds, fence field. The lease and a new token
# in one step; 0 when the lease is held (or the job is gone).
_ACQUIRE = """
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', tonumber(ARGV[2])) then return 0 end
return redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
"""

# KEYS: lease, job hash. ARGV: owner, fence field. A new token for the lease this owner holds
# already (taken by the transition that started the job); 0 when the lease is not its own.
# Only lease holders take tokens, so while the owner holds the lease no newer one exists.
_TAKE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
"""

# KEYS: job hash, stream (or ''). ARGV: token, fence field, refused-count field, stream
# MAXLEN, number of job hash field/value pairs n, the n pairs, then stream entries (each a
# serialized message, added as field 'pb' with the token as field 'fence'). Returns 1 when
# written, 0 when refused (a newer token exists), -1 when the job is gone.
_WRITE = """
local cur = redis.call('HMGET', KEYS[1], 'state', ARGV[2])
if not cur[1] then return -1 end
if tonumber(cur[2] or '0') > tonumber(ARGV[1]) then
  redis.call('HINCRBY', KEYS[1], ARGV[3], 1)
  return 0
end
local last = 5 + 2 * tonumber(ARGV[5])
if last > 5 then redis.call('HSET', KEYS[1], unpack(ARGV, 6, last)) end
for i = last + 1, #ARGV do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'pb', ARGV[i], 'fence', ARGV[1])
end
return 1
"""


class Fence:
    """Writes to one job's state under fencing token `token` (see the module docstring).

    `superseded` turns true (and stays) once a write was refused or a check found a newer
    token: the holder must stop working on the job."""

    def __init__(self, client: redis.Redis, job_id: str, token: int):
        self.r, self.job_id, self.token = client, job_id, int(token)
        self.superseded = False
        self._write = client.register_script(_WRITE)

    # -- writes --------------------------------------------------------------------------------
    def write(self, fields: dict | None = None, stream: str = "", entries=(),
              maxlen: int = _events.MAXLEN) -> bool:
        """Set `fields` of the job hash and append `entries` (serialized messages) to
        `stream`, in one step, unless a newer token exists. True when written."""
        pairs = [x for k, v in (fields or {}).items() for x in (k, v)]
        args = [self.token, FENCE_FIELD, REFUSED_FIELD, maxlen, len(pairs) // 2, *pairs,
                *entries]
        done = self._write(keys=[keys.job(self.job_id), stream], args=args)
        if done == 0:
            self.superseded = True
        return done == 1

    def event(self, event: job_pb2.JobEvent, **fields) -> bool:
        """Append `event` to the job's event stream (and set `fields`)."""
        if not event.HasField("time"):
            event.time.GetCurrentTime()
        return self.write(fields, keys.events(self.job_id), [event.SerializeToString()])

    def log(self, text: str, level: str = "info") -> bool:
        """A log line in the job's events (what `trainserve watch` shows)."""
        return self.event(job_pb2.JobEvent(job_id=self.job_id,
                                           log=job_pb2.LogLine(level=level, text=text)))

    def update(self, **fields) -> bool:
        """Set job hash fields (progress, attempts) without touching the state."""
        return self.write({k: _encode(v) for k, v in fields.items()})

    # -- checks --------------------------------------------------------------------------------
    def check(self) -> tuple[bool, bool]:
        """(cancel requested, superseded) in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        pipe.exists(keys.cancel(self.job_id))
        pipe.hget(keys.job(self.job_id), FENCE_FIELD)
        cancelled, newest = pipe.execute()
        if int(newest or 0) > self.token:
            self.superseded = True
        return bool(cancelled), self.superseded

    def is_current(self) -> bool:
        """True while no newer token exists."""
        return not self.check()[1]


def acquire(client: redis.Redis, job_id: str, owner: str, lease_s: int) -> int:
    """Take job `job_id`'s lease for `owner` with a new token; 0 when another holds it."""
    return int(client.register_script(_ACQUIRE)(
        keys=[keys.lease(job_id), keys.job(job_id)], args=[owner, int(lease_s), FENCE_FIELD]))


def take(client: redis.Redis, job_id: str, owner: str) -> int:
    """A new token for the lease `owner` already holds on `job_id`; 0 when it holds none."""
    return int(client.register_script(_TAKE)(
        keys=[keys.lease(job_id), keys.job(job_id)], args=[owner, FENCE_FIELD]))


def newest(client: redis.Redis, job_id: str) -> int:
    """The job's newest token (0: never leased)."""
    return int(client.hget(keys.job(job_id), FENCE_FIELD) or 0)


def _encode(value) -> str | bytes:
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return value if isinstance(value, bytes) else str(value)


class FencedReporter(_events.RedisReporter):
    """The training loop's reporter for a job run under token `token`: epoch progress and log
    lines are fenced writes; `cancel_requested` is also true once the token is superseded, so
    a superseded worker stops within a cancellation poll (about 0.5 s) instead of training on
    beside the job's new run."""

    def __init__(self, redis_url: str, job_id: str, token: int):
        super().__init__(redis_url, job_id)
        self.fence = Fence(self.r, job_id, token)

    def epoch(self, epoch: int, total_epochs: int, metrics: dict,
              samples_per_second: float = 0.0, elapsed_seconds: float = 0.0) -> None:
        clean = {k: float(v) for k, v in metrics.items()}
        event = job_pb2.JobEvent(job_id=self.job_id, epoch=job_pb2.EpochMetrics(
            epoch=epoch, total_epochs=total_epochs, metrics=clean,
            samples_per_second=samples_per_second, elapsed_seconds=elapsed_seconds))
        # One EVALSHA: the same single round trip as the unfenced MULTI/EXEC pipeline.
        self.fence.event(event, epoch=str(epoch), total_epochs=str(total_epochs),
                         metrics=json.dumps(clean))

    def log(self, text: str, level: str = "info") -> None:
        self.fence.log(text, level)

    def cancel_requested(self) -> bool:
        if self.fence.superseded:
            return True
        now = time.monotonic()
        if not self._cancelled and now - self._last_cancel_check > 0.5:
            self._last_cancel_check = now
            cancelled, superseded = self.fence.check()
            self._cancelled = cancelled or superseded
        return self._cancelled or self.fence.superseded


class FencedLogSink(_logs.LogSink):
    """A `LogSink` whose batches are fenced writes (one EVALSHA a batch): a superseded
    worker's output no longer reaches the job's log."""

    def __init__(self, redis_url: str, job_id: str, rank: int, token: int):
        self.fence = Fence(connect(redis_url), job_id, token)  # before the flush thread starts
        super().__init__(redis_url, job_id, rank)

    def flush(self) -> None:
        with self._lock:
            batch, self._buffer = self._buffer, []
        if batch:
            try:
                self.fence.write(None, keys.logs(self.job_id),
                                 [line.SerializeToString() for line in batch],
                                 maxlen=_logs.MAXLEN)
            except redis.RedisError:
                pass  # best effort, as LogSink
