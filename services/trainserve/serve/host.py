"""Where models run: the multiplexed `ModelHost` Serve deployment, and `LocalBackend`, the
same behaviour in-process (tests, tools).

A model is keyed by `<model_name>:<version>`. The host loads it on first use and keeps up
to `MAX_MODELS_PER_REPLICA` of them per replica (least recently used leave first), so fifty
small models share one process instead of needing fifty; Serve routes a model's requests to
the replicas that already hold it.
"""
from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from ray import serve

from trainserve.serve.config import DEFAULT_LOADER
from trainserve.serve.predictor import Loader, Predictor, import_loader, load_predictor

# Course-sized models weigh kilobytes to a few megabytes each.
MAX_MODELS_PER_REPLICA = 64


@serve.deployment(name="model-host", max_ongoing_requests=32,
                  ray_actor_options={"num_cpus": 0})
class ModelHost:
    """Runs model versions, each loaded on demand from its artifact directory."""

    def __init__(self, loader: str = DEFAULT_LOADER, torch_threads: int = 1):
        torch.set_num_threads(torch_threads)
        self._loader_path = loader
        # model id -> artifact dir, told by each call: the multiplexed loader sees only the id.
        self._dirs: dict[str, str] = {}

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
                      parameters: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Every output of the request's model for a validated request."""
        predictor = await self._model(artifact_dir)
        return predictor.run(inputs, parameters)


class LocalBackend:
    """The model host's behaviour in this process, for tests and single-process tools."""

    def __init__(self, loader: Loader, max_models: int = MAX_MODELS_PER_REPLICA):
        self._loader, self._max = loader, max_models
        self._models: OrderedDict[str, Predictor] = OrderedDict()
        self.loads = 0  # how many times a model was loaded (tests check the caching)

    def _get(self, model_id: str, artifact_dir: str) -> Predictor:
        if model_id in self._models:
            self._models.move_to_end(model_id)
        else:
            self._models[model_id] = load_predictor(artifact_dir, self._loader)
            self.loads += 1
            if len(self._models) > self._max:
                self._models.popitem(last=False)
        return self._models[model_id]

    async def load(self, model_id: str, artifact_dir: str) -> None:
        self._get(model_id, artifact_dir)

    async def predict(self, model_id: str, artifact_dir: str, inputs: dict[str, np.ndarray],
                      parameters: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        return self._get(model_id, artifact_dir).run(inputs, parameters)
