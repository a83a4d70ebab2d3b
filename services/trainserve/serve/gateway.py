"""The ingress of the `trainserve` application: REST (`rest.RestApp`, which Serve calls with
each HTTP request) and gRPC (methods named after the RPCs, which Serve's gRPC proxy calls)
over one `InferenceService`, which runs the models in the replica itself (the default: no
second hop) or asks the model host for outputs through a multiplexed deployment handle.

This module does not import torch or the model host: with the models on a model host, the
gateway replica needs neither.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import Any, Callable

import numpy as np
from ray import serve
from ray.serve.grpc_util import RayServegRPCContext
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import Response

from trainserve.core.errors import TrainserveError
from trainserve.serve.auth import token_auth
from trainserve.serve.config import ServeConfig
from trainserve.serve.grpc_api import GrpcInference
from trainserve.serve.metrics import RayServingMetrics
from trainserve.serve.resolver import Batching, EndpointResolver
from trainserve.serve.rest import build_rest_app
from trainserve.serve.service import InferenceService
from trainserve.store.deployments import DeploymentStore
from trainserve.store.models import ModelStore
from trainserve.store.redis import connect


def unwrap_error(exc: BaseException) -> BaseException:
    """The domain error a remote call raised, out of Ray's wrapper; other errors unchanged."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, TrainserveError) else exc


class HandleBackend:
    """`Backend` over the model host's deployment handle, one multiplexed id per model."""

    def __init__(self, handle: DeploymentHandle):
        self._handle = handle

    async def load(self, model_id: str, artifact_dir: str) -> None:
        await self._call("load", model_id, artifact_dir)

    async def predict(self, model_id: str, artifact_dir: str, inputs: dict[str, np.ndarray],
                      parameters: dict[str, Any], batching: Batching | None = None
                      ) -> dict[str, np.ndarray]:
        return await self._call("predict", model_id, artifact_dir, inputs, parameters, batching)

    async def stats(self) -> dict:
        """The model host's `stats()` (of one replica, when there are several)."""
        try:
            return await self._handle.stats.remote()
        except Exception as exc:
            raise unwrap_error(exc) from None

    async def _call(self, method: str, model_id: str, *args: Any) -> Any:
        handle = self._handle.options(multiplexed_model_id=model_id)
        try:
            return await getattr(handle, method).remote(*args)
        except Exception as exc:
            raise unwrap_error(exc) from None


class RedisReadiness:
    """Server readiness: Redis answers. Checked at most once a second."""

    def __init__(self, client: Any, period_s: float = 1.0):
        self._client, self._period_s = client, period_s
        self._checked_at, self._ok = float("-inf"), False

    async def __call__(self) -> bool:
        if time.monotonic() - self._checked_at >= self._period_s:
            try:
                self._ok = bool(await asyncio.to_thread(self._client.ping))
            except Exception:  # any failure to answer is "not ready"
                self._ok = False
            self._checked_at = time.monotonic()
        return self._ok


class DeferredBackend:
    """A backend built in a thread that starts with the replica: the colocated one imports
    torch (about a second), which the replica's start-up, and so the stack's readiness,
    need not wait for. Calls wait for it."""

    def __init__(self, build: Callable[[], Any]):
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="backend-build")
        self._future = pool.submit(build)
        pool.shutdown(wait=False)  # its thread ends with the build
        self._built: Any = None

    async def backend(self) -> Any:
        if self._built is None:  # once built, no trip through the event loop per call
            self._built = await asyncio.wrap_future(self._future)
        return self._built

    async def load(self, model_id: str, artifact_dir: str) -> None:
        await (await self.backend()).load(model_id, artifact_dir)

    async def predict(self, *args: Any, **kwargs: Any) -> dict[str, np.ndarray]:
        return await (await self.backend()).predict(*args, **kwargs)

    async def stats(self) -> dict:
        return await (await self.backend()).stats()


def _colocated(cfg: ServeConfig, metrics: RayServingMetrics) -> DeferredBackend:
    def build():
        from trainserve.serve.host import colocated_backend  # imports torch
        return colocated_backend(cfg.loader, cfg.torch_threads, metrics.batch)
    return DeferredBackend(build)


@serve.deployment(name="gateway", max_ongoing_requests=256,
                  ray_actor_options={"num_cpus": 0})
class Gateway:
    """The ingress replica: endpoint resolution through Redis, validation, REST and gRPC."""

    def __init__(self, host: DeploymentHandle | None, cfg: ServeConfig):
        self._cfg = cfg
        client = connect(cfg.redis_url)
        resolver = EndpointResolver(DeploymentStore(client), ModelStore(client),
                                    storage_dir=cfg.storage_dir, ttl_s=cfg.resolve_ttl_s,
                                    max_batch_size=cfg.max_batch_size)
        metrics = RayServingMetrics()
        self._backend = HandleBackend(host) if host is not None else _colocated(cfg, metrics)
        self._service = InferenceService(resolver, self._backend, RedisReadiness(client),
                                         metrics)
        self._auth = token_auth(cfg.inference_token_file)
        self._grpc = GrpcInference(self._service, self._auth, cfg.max_request_bytes)
        self._rest = build_rest_app(self._service, self._auth, cfg.max_request_bytes)

    async def __call__(self, request: Request) -> Response:
        """Every HTTP request (Serve's own `__call__` path: no ASGI app on top of it)."""
        return await self._rest.handle(request)

    async def config(self) -> ServeConfig:
        """The configuration this application was deployed with (`ensure_serve` compares)."""
        return self._cfg

    async def warm(self, name: str, canary: bool = False) -> str:
        """Load the model behind endpoint `name` (or its canary) now; its model id. Called by
        `control.warm`."""
        return await self._service.warm(name, canary)

    async def stats(self) -> dict:
        """Where the models run, its counters: {"batch_sizes": {model id: {requests merged
        into one forward pass: how many passes}}} (one replica's, when there are several)."""
        return await self._backend.stats()

    # gRPC: Serve's proxy calls the method named after the RPC, with the request's bytes
    # (see grpc_api.add_inference_servicer).

    async def ServerLive(self, request: bytes, grpc_context: RayServegRPCContext):
        return await self._grpc.call("ServerLive", request, grpc_context)

    async def ServerReady(self, request: bytes, grpc_context: RayServegRPCContext):
        return await self._grpc.call("ServerReady", request, grpc_context)

    async def ServerMetadata(self, request: bytes, grpc_context: RayServegRPCContext):
        return await self._grpc.call("ServerMetadata", request, grpc_context)

    async def ModelMetadata(self, request: bytes, grpc_context: RayServegRPCContext):
        return await self._grpc.call("ModelMetadata", request, grpc_context)

    async def ModelReady(self, request: bytes, grpc_context: RayServegRPCContext):
        return await self._grpc.call("ModelReady", request, grpc_context)

    async def ModelInfer(self, request: bytes, grpc_context: RayServegRPCContext):
        return await self._grpc.call("ModelInfer", request, grpc_context)
