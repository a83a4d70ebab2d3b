"""Per-job event streams (`ts:events:<id>`): state changes, per-epoch metrics and log lines.

Watchers read the history with XRANGE and then block on XREAD, so a late watcher sees
everything from the start; the stream id is the event id clients resume from. Every append is
capped at `MAXLEN` events; once the job is finished the stream expires
(`store.jobs.RETENTION_S`, set by the terminal transition).
"""
from __future__ import annotations

import json
import time
from typing import Iterator

import redis

from trainserve.core.state import JobState
from trainserve.core.pb import job_pb2
from trainserve.store import keys
from trainserve.store.redis import connect

MAXLEN = 20000


def state_event(job_id: str, state: JobState, message: str, now: float) -> job_pb2.JobEvent:
    event = job_pb2.JobEvent(job_id=job_id, state=job_pb2.StateChanged(state=int(state),
                                                                       message=message))
    event.time.FromNanoseconds(int(now * 1e9))
    return event


class EventLog:
    def __init__(self, client: redis.Redis):
        self.r = client

    key = staticmethod(keys.events)

    def append(self, event: job_pb2.JobEvent) -> str:
        if not event.HasField("time"):
            event.time.GetCurrentTime()
        return self.r.xadd(self.key(event.job_id), {"pb": event.SerializeToString()},
                           maxlen=MAXLEN, approximate=True).decode()

    def log(self, job_id: str, text: str, level: str = "info") -> str:
        return self.append(job_pb2.JobEvent(job_id=job_id,
                                            log=job_pb2.LogLine(level=level, text=text)))

    def history(self, job_id: str, after: str = "") -> list[job_pb2.JobEvent]:
        lower = f"({after}" if after else "-"
        return [_decode(job_id, eid, fields) for eid, fields in
                self.r.xrange(self.key(job_id), lower, "+")]

    def read_after(self, job_id: str, after: str, block_ms: int = 1000,
                   count: int = 100) -> list[job_pb2.JobEvent]:
        """Events after `after` ("0-0" for all), waiting up to `block_ms` for the first."""
        got = self.r.xread({self.key(job_id): after or "0-0"}, block=block_ms, count=count)
        return [_decode(job_id, eid, f) for eid, f in got[0][1]] if got else []

    def follow(self, job_id: str, after: str = "", block_ms: int = 1000,
               is_done=None) -> Iterator[job_pb2.JobEvent]:
        """History after `after`, then live events. Stops after a terminal state event, or when
        `is_done()` turns true while no event arrives (a job that ended before we looked)."""
        last = after or "0-0"
        while True:
            batch = self.read_after(job_id, last, block_ms)
            if not batch and is_done is not None and is_done():
                return
            for event in batch:
                last = event.event_id
                yield event
                if is_terminal_event(event):
                    return


def _decode(job_id: str, eid: bytes, fields: dict) -> job_pb2.JobEvent:
    event = job_pb2.JobEvent.FromString(fields[b"pb"])
    event.job_id = job_id
    event.event_id = eid.decode()
    return event


def is_terminal_event(event: job_pb2.JobEvent) -> bool:
    return event.HasField("state") and JobState(event.state.state).is_terminal


class RedisReporter:
    """The training loop's `Reporter` (see training/reporting.py), built inside a Ray worker.

    Epoch metrics go to the event stream and to the job record (so GetJob shows progress);
    cancellation is a flag set by CancelJob.
    """

    def __init__(self, redis_url: str, job_id: str):
        self.job_id = job_id
        self.r = connect(redis_url)
        self.events = EventLog(self.r)
        self._last_cancel_check = 0.0
        self._cancelled = False

    def epoch(self, epoch: int, total_epochs: int, metrics: dict, samples_per_second: float = 0.0,
              elapsed_seconds: float = 0.0) -> None:
        clean = {k: float(v) for k, v in metrics.items()}
        event = job_pb2.JobEvent(job_id=self.job_id, epoch=job_pb2.EpochMetrics(
            epoch=epoch, total_epochs=total_epochs, metrics=clean,
            samples_per_second=samples_per_second, elapsed_seconds=elapsed_seconds))
        pipe = self.r.pipeline(transaction=True)
        event.time.GetCurrentTime()
        pipe.xadd(self.events.key(self.job_id), {"pb": event.SerializeToString()},
                  maxlen=MAXLEN, approximate=True)
        pipe.hset(keys.job(self.job_id), mapping={
            "epoch": str(epoch), "total_epochs": str(total_epochs), "metrics": json.dumps(clean)})
        pipe.execute()

    def log(self, text: str, level: str = "info") -> None:
        self.events.log(self.job_id, text, level)

    def cancel_requested(self) -> bool:
        # Called every few batches; one Redis round trip per 0.5 s at most.
        now = time.monotonic()
        if not self._cancelled and now - self._last_cancel_check > 0.5:
            self._last_cancel_check = now
            self._cancelled = bool(self.r.exists(keys.cancel(self.job_id)))
        return self._cancelled
