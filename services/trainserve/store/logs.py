"""Per-job worker logs (`ts:logs:<id>`): the lines a job's training processes wrote, each with
the worker's rank, read by JobService.StreamLogs.

Workers write through a `LogSink`, which buffers lines and sends them in one pipelined XADD
batch about every `FLUSH_S`, so a chatty training loop costs no round trip per line. The
stream is capped (`MAXLEN`, approximate): a job's log keeps its latest lines; once the job is
finished the stream expires (`store.jobs.RETENTION_S`, set by the terminal transition).
"""
from __future__ import annotations

import threading
from typing import Callable, Iterator

import redis

from trainserve.core.pb import job_pb2
from trainserve.store import keys
from trainserve.store.redis import connect

MAXLEN = 10000        # lines kept per job
FLUSH_S = 0.25        # a sink sends its buffered lines this often
MAX_LINE = 4000       # characters kept of one line


class JobLogs:
    def __init__(self, client: redis.Redis):
        self.r = client

    key = staticmethod(keys.logs)

    def append(self, job_id: str, lines: list[job_pb2.JobLogLine]) -> None:
        """Add `lines` (their `id` is assigned by Redis) in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for line in lines:
            if not line.HasField("time"):
                line.time.GetCurrentTime()
            pipe.xadd(self.key(job_id), {"pb": line.SerializeToString()}, maxlen=MAXLEN,
                      approximate=True)
        pipe.execute()

    def read_after(self, job_id: str, after: str = "", block_ms: int | None = None,
                   count: int = 500) -> list[job_pb2.JobLogLine]:
        """Lines after id `after` (all when empty); waits up to `block_ms` for the first."""
        got = self.r.xread({self.key(job_id): after or "0-0"}, block=block_ms, count=count)
        return [_decode(eid, fields) for eid, fields in got[0][1]] if got else []

    def follow(self, job_id: str, after: str = "", follow: bool = True,
               is_done: Callable[[], bool] | None = None,
               block_ms: int = 1000) -> Iterator[job_pb2.JobLogLine]:
        """The lines after `after`; with `follow`, then live lines until `is_done()` is true
        and no line arrived for `block_ms` (the workers flush before the job ends)."""
        last = after
        while True:
            batch = self.read_after(job_id, last, block_ms if follow else None)
            for line in batch:
                last = line.id
                yield line
            if not batch and (not follow or is_done is None or is_done()):
                return


def _decode(eid: bytes, fields: dict) -> job_pb2.JobLogLine:
    line = job_pb2.JobLogLine.FromString(fields[b"pb"])
    line.id = eid.decode()
    return line


class LogSink:
    """Buffers a worker's lines for one job and sends them from a background thread.

    Thread-safe; `close()` sends what is left. A Redis error drops the batch (the job's log is
    best effort and must never fail the training)."""

    def __init__(self, redis_url: str, job_id: str, rank: int = 0):
        self.logs, self.job_id, self.rank = JobLogs(connect(redis_url)), job_id, rank
        self._buffer: list[job_pb2.JobLogLine] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"log-sink-{job_id}",
                                        daemon=True)
        self._thread.start()

    def write(self, text: str, source: str, level: str = "info") -> None:
        line = job_pb2.JobLogLine(rank=self.rank, source=source, level=level,
                                  text=text[:MAX_LINE])
        line.time.GetCurrentTime()
        with self._lock:
            self._buffer.append(line)

    def flush(self) -> None:
        with self._lock:
            batch, self._buffer = self._buffer, []
        if batch:
            try:
                self.logs.append(self.job_id, batch)
            except redis.RedisError:
                pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_S):
            self.flush()

