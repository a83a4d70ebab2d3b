"""The worker's reporter: the training core's `Reporter` backed by the store."""
from __future__ import annotations

from typing import TYPE_CHECKING

from trainserve.training.reporting import NullReporter, Reporter

if TYPE_CHECKING:
    from trainserve.runtime.context import JobContext


def make_reporter(ctx: "JobContext") -> Reporter:
    """The job's reporter: `FencedReporter(ctx.redis_url, ctx.job_id, ctx.fence)` for a job
    run under a dispatcher's lease (its writes are refused, and it asks to stop, once
    another dispatcher took the job over), `RedisReporter` for an unfenced one, or a
    `NullReporter` when `ctx.redis_url` is None. Imports the store lazily, inside the worker
    that uses it."""
    if ctx.redis_url is None:
        return NullReporter()
    if ctx.fence:
        from trainserve.store.fencing import FencedReporter
        return FencedReporter(ctx.redis_url, ctx.job_id, ctx.fence)
    from trainserve.store.events import RedisReporter
    return RedisReporter(ctx.redis_url, ctx.job_id)
