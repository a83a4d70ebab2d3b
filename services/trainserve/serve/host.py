"""Where models run: `LocalBackend`, in the process that answers the request (the gateway
replica by default, tests, tools), and the multiplexed `ModelHost` Serve deployment behind
the gateway (`ServeConfig.colocate_models = False`).

A model is keyed by `<model_name>:<version>`. The host loads it on first use and keeps up
to `MAX_MODELS_PER_REPLICA` of them per replica (least recently used leave first), so fifty
small models share one process instead of needing fifty; Serve routes a model's requests to
the replicas that already hold it.

With an endpoint's dynamic batching on (`Batching`, from its deployment's options), a model's
concurrent requests run as one forward pass (`serve.batching`); `stats()` tells how many
requests each pass merged.
"""
from __future__ import annotations

import asyncio
import gc
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from ray import serve

from trainserve.serve.batching import BatchObserver, Batcher, batchable
from trainserve.serve.config import DEFAULT_LOADER
from trainserve.serve.metrics import RayServingMetrics
from trainserve.serve.predictor import Loader, Predictor, import_loader, load_predictor

# Course-sized models weigh kilobytes to a few megabytes each.
MAX_MODELS_PER_REPLICA = 64
# Requests a replica takes at once (`ServeConfig.max_ongoing_requests` overrides it):
# a batch can only merge requests that have reached the replica.
MAX_ONGOING_REQUESTS = 256


async def run_request(batcher: Batcher, model_id: str, predictor: Predictor,
                      inputs: dict[str, np.ndarray], parameters: dict[str, Any] | None,
                      batching: Any = None) -> dict[str, np.ndarray]:
    """One request's outputs: merged with others of the model when `batching` (an endpoint's
    `Batching`) is on and the request may share a pass, else run alone."""
    if batching is not None and batching.enabled and batchable(predictor.task, inputs,
                                                               parameters):
        return await batcher.submit(model_id, inputs, predictor.run, batching.max_batch_size,
                                    batching.wait_ms)
    return batcher.run_alone(model_id, inputs, predictor.run, parameters)


@serve.deployment(name="model-host", max_ongoing_requests=MAX_ONGOING_REQUESTS,
                  ray_actor_options={"num_cpus": 0})
class ModelHost:
    """Runs model versions, each loaded on demand from its artifact directory."""

    def __init__(self, loader: str = DEFAULT_LOADER, torch_threads: int = 1):
        torch.set_num_threads(torch_threads)
        self._loader_path = loader
        # model id -> artifact dir, told by each call: the multiplexed loader sees only the id.
        self._dirs: dict[str, str] = {}
        self._batcher = Batcher(RayServingMetrics().batch)
        freeze_startup_heap()

    @serve.multiplexed(max_num_models_per_replica=MAX_MODELS_PER_REPLICA)
    async def get_model(self, model_id: str) -> Predictor:
        loader = import_loader(self._loader_path)
        return await asyncio.to_thread(load_predictor, self._dirs[model_id], loader)

    async def _model(self, artifact_dir: str) -> Predictor:
        model_id = serve.get_multiplexed_model_id()
        self._dirs[model_id] = artifact_dir
        return await self.get_model(model_id)

    async def load(self, artifact_dir: str) -> None:
        """Load the request's model (`multiplexed_model_id`) if this replica lacks it."""
        await self._model(artifact_dir)

    async def predict(self, artifact_dir: str, inputs: dict[str, np.ndarray],
                      parameters: dict[str, Any] | None = None, batching: Any = None
                      ) -> dict[str, np.ndarray]:
        """Every output of the request's model for a validated request; `batching` (the
        endpoint's `Batching`) may merge it with concurrent ones."""
        predictor = await self._model(artifact_dir)
        return await run_request(self._batcher, serve.get_multiplexed_model_id(), predictor,
                                 inputs, parameters, batching)

    async def stats(self) -> dict[str, dict[str, dict[int, int]]]:
        """This replica's batch sizes: {"batch_sizes": {model id: {requests merged into one
        forward pass: how many passes}}}."""
        return {"batch_sizes": self._batcher.sizes()}


class LocalBackend:
    """The model host's behaviour in this process: the gateway replica's own models when
    models are colocated with it (`ServeConfig.colocate_models`), and tests and tools.

    Up to `max_models` are kept, least recently used leave first. A model loads in a thread,
    once however many requests for it arrive meanwhile, so the event loop keeps answering.
    """

    def __init__(self, loader: Loader, max_models: int = MAX_MODELS_PER_REPLICA,
                 on_batch: BatchObserver | None = None):
        self._loader, self._max = loader, max_models
        self._models: OrderedDict[str, Predictor] = OrderedDict()
        self._loading: dict[str, asyncio.Future] = {}
        self.loads = 0  # how many times a model was loaded (tests check the caching)
        self.batcher = Batcher(on_batch)

    async def _get(self, model_id: str, artifact_dir: str) -> Predictor:
        predictor = self._models.get(model_id)
        if predictor is not None:
            self._models.move_to_end(model_id)
            return predictor
        pending = self._loading.get(model_id)
        if pending is None:
            pending = asyncio.ensure_future(
                asyncio.to_thread(load_predictor, artifact_dir, self._loader))
            self._loading[model_id] = pending
            pending.add_done_callback(lambda f: self._loaded(model_id, f))
        return await asyncio.shield(pending)

    def _loaded(self, model_id: str, future: asyncio.Future) -> None:
        self._loading.pop(model_id, None)
        if future.cancelled() or future.exception() is not None:
            return
        self._models[model_id] = future.result()
        self.loads += 1
        while len(self._models) > self._max:
            self._models.popitem(last=False)

    def loaded(self) -> list[str]:
        """The model ids held now, least recently used first."""
        return list(self._models)

    async def load(self, model_id: str, artifact_dir: str) -> None:
        await self._get(model_id, artifact_dir)

    async def predict(self, model_id: str, artifact_dir: str, inputs: dict[str, np.ndarray],
                      parameters: dict[str, Any] | None = None, batching: Any = None
                      ) -> dict[str, np.ndarray]:
        predictor = await self._get(model_id, artifact_dir)
        return await run_request(self.batcher, model_id, predictor, inputs, parameters,
                                 batching)

    async def stats(self) -> dict[str, dict[str, dict[int, int]]]:
        return {"batch_sizes": self.batcher.sizes()}


def colocated_backend(loader_path: str, torch_threads: int,
                      on_batch: BatchObserver | None = None) -> LocalBackend:
    """The backend of a gateway replica that runs the models itself."""
    torch.set_num_threads(torch_threads)
    backend = LocalBackend(import_loader(loader_path), on_batch=on_batch)
    freeze_startup_heap()
    return backend


def freeze_startup_heap() -> None:
    """Keep what start-up allocated (torch, Ray, Serve: millions of objects) out of the
    garbage collector's full passes. Without it every pass walks them all, a pause of tens of
    milliseconds that every request in flight waits out: it doubled the replica's p99 under
    load (bench/README.md, serve). Objects made later (models, requests) are collected as
    before."""
    gc.collect()
    gc.freeze()
