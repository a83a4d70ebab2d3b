"""`InferenceService`: the operations of the inference protocol, shared by REST and gRPC.

It resolves the endpoint, validates the request against the model's signature, asks a
`Backend` (the multiplexed model host on Serve, or an in-process one) for the outputs, and
builds the response. Transports only convert wire formats and map `errors` to status codes.

`caller` (a `serve.auth.Grant`, given when inference auth is on) is who asks: an endpoint
it may not use answers as an unknown one (`resolver`). None: no owner check (auth off).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Awaitable, Callable, Protocol

import numpy as np

import trainserve
from trainserve.core.errors import ModelNotReady, NotFound, TrainserveError
from trainserve.serve.dataplane import (InferRequest, InferResponse, ModelMetadata,
                                        build_response)
from trainserve.serve.metrics import OK, NullMetrics, ServingMetrics
from trainserve.serve.resolver import Batching, Caller, Endpoint
from trainserve.serve.task_io import ATTENTION

log = logging.getLogger(__name__)

SERVER_NAME = "trainserve"
# Triton's name for the binary tensor extension of the REST protocol.
EXTENSIONS = ("binary_tensor_data",)
PLATFORM = "pytorch"
# The endpoint label of requests whose endpoint name resolved to nothing (or was never read).
UNRESOLVED = "(unresolved)"


class Backend(Protocol):
    """Where models run. `model_id` is `<model_name>:<version>`."""

    async def load(self, model_id: str, artifact_dir: str) -> None: ...

    async def predict(self, model_id: str, artifact_dir: str, inputs: dict[str, np.ndarray],
                      parameters: dict[str, Any], batching: Batching | None = None
                      ) -> dict[str, np.ndarray]:
        """The outputs; with `batching` on, possibly computed with concurrent requests."""
        ...


class Resolver(Protocol):
    async def resolve(self, name: str, fresh: bool = False, canary: bool | None = None,
                      caller: Caller | None = None) -> Endpoint: ...


async def _always_ready() -> bool:
    return True


def status_code(exc: BaseException | None) -> str:
    """The gRPC status name a request ends with (`errors` map theirs; others are INTERNAL)."""
    if exc is None:
        return OK
    return exc.grpc_code if isinstance(exc, TrainserveError) else "INTERNAL"


class InferenceService:
    def __init__(self, resolver: Resolver, backend: Backend,
                 ready_check: Callable[[], Awaitable[bool]] = _always_ready,
                 metrics: ServingMetrics | None = None):
        self._resolver, self._backend, self._ready_check = resolver, backend, ready_check
        self.metrics = metrics or NullMetrics()

    async def server_ready(self) -> bool:
        """Whether requests can be answered: the endpoint records are reachable."""
        return await self._ready_check()

    def server_metadata(self) -> dict:
        return {"name": SERVER_NAME, "version": trainserve.__version__,
                "extensions": list(EXTENSIONS)}

    async def endpoint(self, name: str, version: str = "",
                       caller: Caller | None = None) -> Endpoint:
        """The endpoint `name`, checking that `caller` may use it and that it serves
        `version` when one is given."""
        ep = await self._resolver.resolve(name, caller=caller)
        if version not in ("", str(ep.version)):
            raise NotFound(f"model {name!r} has no version {version!r}; "
                           f"it serves version {ep.version}")
        return ep

    async def model_metadata(self, name: str, version: str = "",
                             caller: Caller | None = None) -> ModelMetadata:
        ep = await self.endpoint(name, version, caller)
        sig = ep.signature
        return ModelMetadata(name, (str(ep.version),), PLATFORM, sig.inputs, sig.outputs)

    async def model_ready(self, name: str, version: str = "",
                          caller: Caller | None = None) -> bool:
        """True once the model is loaded (loading it if needed); NotFound if unknown."""
        ep = await self.endpoint(name, version, caller)
        try:
            await self._backend.load(ep.model_id, ep.artifact_dir)
        except ModelNotReady as exc:
            log.warning("model %s not ready: %s", ep.model_id, exc)
            return False
        return True

    async def infer(self, name: str, version: str, request: InferRequest,
                    caller: Caller | None = None) -> InferResponse:
        """The response to one request; counted and timed in `metrics`, errors included."""
        started, model_id, error = time.perf_counter(), "", None
        try:
            ep = await self.endpoint(name, version, caller)
            model_id = ep.model_id
            return await self._infer(ep, name, request)
        except BaseException as exc:
            error = exc
            raise
        finally:
            # A name no endpoint resolved to is the client's text: one label for all of them,
            # or anyone could grow the metrics without bound by asking for made-up names.
            self.metrics.request(name if model_id else UNRESOLVED, model_id,
                                 status_code(error), time.perf_counter() - started)

    def refused(self, name: str, exc: BaseException) -> None:
        """Count a request for endpoint `name` that its transport refused before `infer`
        (malformed JSON or protobuf); not resolved, so under the `UNRESOLVED` label."""
        self.metrics.request(UNRESOLVED, "", status_code(exc), 0.0)

    async def _infer(self, ep: Endpoint, name: str, request: InferRequest) -> InferResponse:
        inputs = ep.signature.validate_inputs(request)
        parameters = ep.signature.validate_parameters(request)
        specs = ep.signature.select_outputs(request.outputs, inputs)
        if any(s.name == ATTENTION for s in specs):
            # Told as a parameter, so the backend's call stays one shape and the request,
            # having one, runs alone (`serve.batching`). Requests cannot set it: parameters
            # are only those the model reads.
            parameters = {**parameters, ATTENTION: True}
        values = await self._backend.predict(ep.model_id, ep.artifact_dir, inputs, parameters,
                                             ep.batching)
        missing = [s.name for s in specs if s.name not in values]
        if missing:  # the registry's output spec and the predictor disagree
            raise TrainserveError(f"model {ep.model_id} produced no output {missing}")
        return build_response(name, str(ep.version), request.id, specs, values)

    async def warm(self, name: str, canary: bool = False) -> str:
        """Load the model behind `name` (its stable version, or the canary being rolled out)
        now, bypassing the resolution cache; its model id."""
        ep = await self._resolver.resolve(name, fresh=True, canary=canary)
        await self._backend.load(ep.model_id, ep.artifact_dir)
        return ep.model_id
