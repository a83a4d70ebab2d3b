"""A job's live epochs, state changes and log lines as one Server-Sent Events stream.

Two SDK streams feed it, each on a thread of its own (they block): `Client.watch` (WatchJob,
history then live events) and `Client.logs(follow=True)` (StreamLogs). Both run on a client
made for this one response, so that closing it when the browser goes away (or the response
ends) cancels both streams at once: an abandoned page holds none of the user's API streams.
"""
from __future__ import annotations

import asyncio
import json
import threading
from typing import Any, AsyncIterator, Callable, Iterable

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from trainserve.console.views import event_json, log_json
from trainserve.core import errors

HEARTBEAT_S = 15.0
_END = object()


def sse(kind: str, data: Any) -> str:
    """One Server-Sent Event: `event: <kind>` and its JSON on one `data:` line."""
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class EventStream(StreamingResponse):
    """A `text/event-stream` response that runs `cleanup` however it ends (finished, or the
    browser gone: Starlette cancels the stream then)."""

    def __init__(self, content: AsyncIterator[str], cleanup: Callable[[], None]):
        super().__init__(content, media_type="text/event-stream",
                         headers={"X-Accel-Buffering": "no"})
        self._cleanup = cleanup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._cleanup()


def job_stream(request: Request, client: Any, job_id: str, since_epoch: int,
               after_log: str) -> EventStream:
    """The live stream of job `job_id` for `client` (its own, closed at the end): epoch
    events past `since_epoch` (the page drew those already), every state change and trial
    event, and the log lines after `after_log`; then one `end` event."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def put(item) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, item)

    feeds = [
        _feed(lambda: _events(client.watch(job_id), since_epoch), put),
        _feed(lambda: (("log", log_json(line)) for line in
                       client.logs(job_id, follow=True, after_id=after_log)), put),
    ]
    return EventStream(_relay(request, queue, len(feeds)), client.close)


def _events(events: Iterable, since_epoch: int) -> Iterable[tuple[str, Any]]:
    for event in events:
        item = event_json(event)
        if item is None or (item[0] == "epoch" and item[1]["epoch"] <= since_epoch):
            continue
        yield item


def _feed(produce: Callable[[], Iterable[tuple[str, Any]]], put: Callable) -> threading.Thread:
    """A daemon thread putting what `produce()` yields, then `_END` (after an error: an
    `problem` event first, unless the stream was closed under it)."""
    def run() -> None:
        try:
            for item in produce():
                put(item)
        except errors.Cancelled:
            pass
        except errors.TrainserveError as exc:
            put(("problem", {"message": str(exc)}))
        except Exception as exc:  # noqa: BLE001 - a closed channel ends the feed quietly
            if "closed" not in str(exc).lower():
                put(("problem", {"message": f"{type(exc).__name__}: {exc}"}))
        finally:
            put(_END)
    thread = threading.Thread(target=run, name="console-feed", daemon=True)
    thread.start()
    return thread


async def _relay(request: Request, queue: asyncio.Queue, feeds: int) -> AsyncIterator[str]:
    """The events of `feeds` feeds as they come, a comment every HEARTBEAT_S (it also tells
    a browser that went away), and `end` once every feed ended."""
    yield ": live\n\n"
    while feeds:
        try:
            item = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
        except asyncio.TimeoutError:
            if await request.is_disconnected():
                return
            yield ": heartbeat\n\n"
            continue
        if item is _END:
            feeds -= 1
        else:
            yield sse(*item)
    yield sse("end", {})
