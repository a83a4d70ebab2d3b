"""A job's worker output, captured for `trainserve logs` (JobService.StreamLogs).

`capture_logs(ctx, rank)` is installed by `launch` around the training in each worker (the
fast-path task, every Ray Train rank, a search's driver): for its duration, Python `logging`
records (the `trainserve` loggers at INFO and above, any other at the root's level) and every
line written to `sys.stdout` / `sys.stderr` go to the job's log stream
(`store.logs.LogSink`) with the worker's rank; stdout and stderr still reach the worker's own
output as well. A pooled worker runs one job at a time, so what it prints meanwhile is the
job's. An exception leaving the block is logged with its traceback.
"""
from __future__ import annotations

import contextlib
import io
import logging
import sys
import traceback
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from trainserve.store.logs import LogSink
    from trainserve.runtime.context import JobContext

PACKAGE_LOGGER = "trainserve"


class _LineWriter(io.TextIOBase):
    """A text stream that forwards to `passthrough` and sends each complete line to `sink`."""

    def __init__(self, sink: "LogSink", source: str, passthrough):
        super().__init__()
        self.sink, self.source, self.passthrough = sink, source, passthrough
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.passthrough.write(text)
        *lines, self._partial = (self._partial + text).replace("\r", "\n").split("\n")
        for line in lines:
            if line.strip():
                self.sink.write(line, self.source)
        return len(text)

    def flush(self) -> None:
        self.passthrough.flush()

    def fileno(self) -> int:  # e.g. faulthandler asks for it
        return self.passthrough.fileno()

    @property
    def encoding(self):
        return getattr(self.passthrough, "encoding", "utf-8")

    def finish(self) -> None:
        if self._partial.strip():
            self.sink.write(self._partial, self.source)
        self._partial = ""


class _SinkHandler(logging.Handler):
    def __init__(self, sink: "LogSink"):
        super().__init__(logging.INFO)
        self.sink = sink
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # noqa: BLE001 - logging's own convention
            self.handleError(record)
            return
        for line in text.splitlines() or [""]:
            self.sink.write(line, "logging", record.levelname.lower())


@contextlib.contextmanager
def capture_logs(ctx: "JobContext", rank: int = 0) -> Iterator["LogSink | None"]:
    """Capture this worker's output for job `ctx.job_id` (see the module docstring); yields
    the sink, or None when the job has no Redis (`ctx.redis_url` None: nothing captured)."""
    if ctx.redis_url is None:
        yield None
        return
    from trainserve.store.fencing import FencedLogSink
    from trainserve.store.logs import LogSink
    # Fenced under a dispatcher's lease: a superseded worker's lines are refused.
    sink = FencedLogSink(ctx.redis_url, ctx.job_id, rank, ctx.fence) if ctx.fence \
        else LogSink(ctx.redis_url, ctx.job_id, rank)
    handler, package = _SinkHandler(sink), logging.getLogger(PACKAGE_LOGGER)
    old_level = package.level
    if package.getEffectiveLevel() > logging.INFO:
        package.setLevel(logging.INFO)
    logging.getLogger().addHandler(handler)
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _LineWriter(sink, "stdout", out), _LineWriter(sink, "stderr", err)
    try:
        yield sink
    except BaseException as exc:
        for line in "".join(traceback.format_exception(exc)).splitlines():
            sink.write(line, "stderr", "error")
        raise
    finally:
        for writer in (sys.stdout, sys.stderr):
            if isinstance(writer, _LineWriter):
                writer.finish()
        sys.stdout, sys.stderr = out, err
        logging.getLogger().removeHandler(handler)
        package.setLevel(old_level)
        sink.close()
