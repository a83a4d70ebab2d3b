"""Dynamic batching: concurrent requests for one model that arrive within a short wait run as
one forward pass.

Serve's `@serve.batch` groups the calls of one method with one fixed setting; the model host
serves many models (multiplexed) with settings per endpoint, so it queues requests per model
here. A queue opens with its first request and runs when it holds `max_batch_size` instances
or `wait_ms` after it opened, whichever comes first: the requests' input batches are
concatenated, the model runs once, and each request gets its own rows of every output.

Only requests whose answer is row by row may share a pass: tasks whose outputs have one row
per input instance, and no request parameters (a seed, a temperature: those change the
computation for the whole pass). Everything else runs alone.

Plain asyncio, no Serve or torch: the model host and `LocalBackend` use it alike.
"""
from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from trainserve.serve.task_io import NUM_SAMPLES

# Tasks whose outputs have one row per input instance, computed from that instance alone.
ROW_WISE_TASKS = frozenset({"classification", "regression", "reconstruction", "seq2seq"})

Outputs = dict[str, np.ndarray]
RunBatch = Callable[[dict[str, np.ndarray]], Outputs]
BatchObserver = Callable[[str, int], None]


def batchable(task: str, inputs: dict[str, np.ndarray], parameters: dict[str, Any] | None
              ) -> bool:
    """Whether a validated request may share a forward pass with others of its model."""
    if task not in ROW_WISE_TASKS or parameters or len(inputs) != 1:
        return False
    (name, x), = inputs.items()
    return name != NUM_SAMPLES and x.ndim >= 1 and x.dtype != object


@dataclass
class _Queue:
    """Requests waiting to run together: same model, input name, datatype and row shape."""
    model_id: str
    name: str
    run: RunBatch
    items: list[tuple[np.ndarray, asyncio.Future]] = field(default_factory=list)
    rows: int = 0
    timer: asyncio.TimerHandle | None = None


class Batcher:
    """Per-model queues of requests that run as one forward pass (see the module docstring).

    `sizes()` counts the passes run per model id by how many requests each merged (a request
    that runs alone counts as 1); `on_batch(model_id, requests)` is told of every pass.
    """

    def __init__(self, on_batch: BatchObserver | None = None):
        self._queues: dict[tuple, _Queue] = {}
        self._sizes: dict[str, Counter[int]] = {}
        self._on_batch = on_batch

    async def submit(self, model_id: str, inputs: dict[str, np.ndarray], run: RunBatch,
                     max_batch_size: int, wait_ms: float) -> Outputs:
        """The outputs of one request (a single input batch), run with others of
        `model_id` that arrive within `wait_ms`, at most `max_batch_size` instances in all.
        `run` computes a merged batch (the first request's `run` serves the whole queue)."""
        (name, x), = inputs.items()
        if len(x) >= max_batch_size:  # too big to share: runs alone, now
            return self.run_alone(model_id, inputs, run)
        key = (model_id, name, x.dtype.str, x.shape[1:])
        queue = self._queues.get(key)
        if queue is not None and queue.rows + len(x) > max_batch_size:
            self._flush(key, queue)
            queue = None
        loop = asyncio.get_running_loop()
        if queue is None:
            queue = self._queues[key] = _Queue(model_id, name, run)
            queue.timer = loop.call_later(max(wait_ms, 0.0) / 1000, self._flush, key, queue)
        future = loop.create_future()
        queue.items.append((x, future))
        queue.rows += len(x)
        if queue.rows >= max_batch_size:
            self._flush(key, queue)
        return await future

    def run_alone(self, model_id: str, inputs: dict[str, np.ndarray], run: Callable[..., Outputs],
                  *args: Any) -> Outputs:
        """Run one request by itself (`run(inputs, *args)`), counted as a pass of size 1."""
        self._record(model_id, 1)
        return run(inputs, *args)

    def sizes(self) -> dict[str, dict[int, int]]:
        """Per model id: {requests merged into one pass: how many such passes ran}."""
        return {model_id: dict(sorted(c.items())) for model_id, c in self._sizes.items()}

    def pending(self) -> int:
        """Requests waiting in a queue now."""
        return sum(len(q.items) for q in self._queues.values())

    def _flush(self, key: tuple, queue: _Queue) -> None:
        if self._queues.get(key) is queue:
            del self._queues[key]
        if queue.timer is not None:
            queue.timer.cancel()
        items, queue.items = queue.items, []
        if not items:
            return
        self._record(queue.model_id, len(items))
        try:
            batch = np.concatenate([x for x, _ in items]) if len(items) > 1 else items[0][0]
            parts = split_rows(queue.run({queue.name: batch}), [len(x) for x, _ in items])
        except Exception as exc:  # every request of the pass gets the error
            for _, future in items:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), part in zip(items, parts):
            if not future.done():  # its caller may have gone
                future.set_result(part)

    def _record(self, model_id: str, requests: int) -> None:
        self._sizes.setdefault(model_id, Counter())[requests] += 1
        if self._on_batch is not None:
            self._on_batch(model_id, requests)


def split_rows(outputs: Outputs, counts: list[int]) -> list[Outputs]:
    """`outputs` of a merged batch cut back into per-request outputs of `counts` rows."""
    total = sum(counts)
    for name, value in outputs.items():
        if len(value) != total:
            raise ValueError(f"output {name!r} has {len(value)} rows for a batch of {total} "
                             f"instances: it cannot be split per request")
    bounds = np.cumsum(counts)[:-1]
    split = {name: np.split(value, bounds) for name, value in outputs.items()}
    return [{name: parts[i] for name, parts in split.items()} for i in range(len(counts))]
