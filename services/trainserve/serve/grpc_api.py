"""The gRPC binding of the inference protocol (`inference.GRPCInferenceService`) over
`InferenceService`: proto <-> domain conversion and the mapping of `errors` to status codes.

`GrpcInference` has one method per RPC taking `(request, context)`; on Serve the gateway's
methods of the same names hand it the request bytes through `call`, with Serve's
`RayServegRPCContext`. Outputs always travel as `raw_output_contents`, as Triton answers,
which standard clients read directly.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Awaitable, Callable, TypeVar

import grpc
import numpy as np
from google.protobuf.message import DecodeError

from trainserve._gen.inference import grpc_predict_v2_pb2 as pb
from trainserve.core.errors import InvalidArgument, NotFound, TrainserveError
from trainserve.serve.auth import Grant, TokenFile, grpc_authorization
from trainserve.serve.bodies import too_large
from trainserve.serve.config import MAX_REQUEST_BYTES
from trainserve.serve.dataplane import (InferInput, InferRequest, InferResponse, ModelMetadata,
                                        RequestedOutput, check_shape, decode_raw, encode_raw,
                                        numpy_dtype)
from trainserve.serve.service import InferenceService

log = logging.getLogger(__name__)

# The InferTensorContents field that carries each datatype (FP16/BF16 travel raw only).
CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
    "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
    "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}

R = TypeVar("R")

SERVICE = "inference.GRPCInferenceService"
# RPC -> (request type, response type).
RPCS = {
    "ServerLive": (pb.ServerLiveRequest, pb.ServerLiveResponse),
    "ServerReady": (pb.ServerReadyRequest, pb.ServerReadyResponse),
    "ServerMetadata": (pb.ServerMetadataRequest, pb.ServerMetadataResponse),
    "ModelMetadata": (pb.ModelMetadataRequest, pb.ModelMetadataResponse),
    "ModelReady": (pb.ModelReadyRequest, pb.ModelReadyResponse),
    "ModelInfer": (pb.ModelInferRequest, pb.ModelInferResponse),
}


def add_inference_servicer(servicer: Any, server: Any) -> None:
    """Register the RPCs of `inference.GRPCInferenceService` on `server`, requests as bytes.

    This is the servicer function Serve's gRPC proxy is given (`gRPCOptions.
    grpc_servicer_functions`): the proxy keeps each method's request deserializer and pickles
    the result to the ingress replica. With no deserializer the proxy forwards the bytes as
    they came, so it neither parses nor pickles protobuf messages (the generated classes are
    not importable under the module names protoc records); the gateway parses each request
    once, in `GrpcInference.call`.
    """
    handlers = {name: grpc.unary_unary_rpc_method_handler(getattr(servicer, name))
                for name in RPCS}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    if hasattr(server, "add_registered_method_handlers"):
        server.add_registered_method_handlers(SERVICE, handlers)


# ---------------------------------------------------------------------------- conversion


def params_from_proto(params: Any) -> dict[str, Any]:
    """A `map<string, InferParameter>` as plain Python values."""
    out = {}
    for key, p in params.items():
        which = p.WhichOneof("parameter_choice")
        out[key] = getattr(p, which) if which else None
    return out


def infer_request_from_proto(req: pb.ModelInferRequest) -> InferRequest:
    raw = list(req.raw_input_contents)
    if raw and len(raw) != len(req.inputs):
        raise InvalidArgument(f"raw_input_contents has {len(raw)} entries for "
                              f"{len(req.inputs)} inputs")
    inputs = []
    for i, t in enumerate(req.inputs):
        shape = check_shape(list(t.shape), f"input {t.name!r}")
        if raw:
            if t.HasField("contents"):
                raise InvalidArgument(f"input {t.name!r}: contents and raw_input_contents "
                                      "are both set")
            data = decode_raw(t.name, t.datatype, shape, raw[i])
        else:
            data = decode_contents(t.name, t.datatype, shape, t.contents)
        inputs.append(InferInput(t.name, t.datatype, shape, data, params_from_proto(t.parameters)))
    outputs = [RequestedOutput(o.name, params_from_proto(o.parameters)) for o in req.outputs]
    return InferRequest(inputs, outputs, req.id, params_from_proto(req.parameters))


def decode_contents(name: str, datatype: str, shape: tuple[int, ...],
                    contents: pb.InferTensorContents) -> np.ndarray:
    """Typed `contents` of an input as an array of `shape`."""
    dtype = numpy_dtype(datatype)
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidArgument(f"input {name!r}: {datatype} must be sent in raw_input_contents")
    values = getattr(contents, field)
    n = math.prod(shape)
    if len(values) != n:
        raise InvalidArgument(f"input {name!r}: shape {list(shape)} holds {n} values, but "
                              f"contents.{field} has {len(values)}")
    if dtype.kind == "f":  # every value fits: read straight from the repeated field
        return np.asarray(values, dtype=dtype).reshape(shape)
    values = list(values)
    if datatype == "BYTES":
        arr = np.empty(n, dtype=object)
        arr[:] = values
        return arr.reshape(shape)
    arr = np.asarray(values)
    if dtype.kind in "iu" and n and (arr.min() < np.iinfo(dtype).min
                                     or arr.max() > np.iinfo(dtype).max):
        raise InvalidArgument(f"input {name!r}: a value is out of range for {datatype}")
    return arr.astype(dtype).reshape(shape)


def infer_response_to_proto(resp: InferResponse) -> pb.ModelInferResponse:
    out = pb.ModelInferResponse(model_name=resp.model_name, model_version=resp.model_version,
                                id=resp.id)
    for o in resp.outputs:
        out.outputs.add(name=o.name, datatype=o.datatype, shape=list(o.shape))
        out.raw_output_contents.append(encode_raw(o.data, o.datatype))
    return out


def metadata_to_proto(md: ModelMetadata) -> pb.ModelMetadataResponse:
    tensor = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(
        name=md.name, versions=list(md.versions), platform=md.platform,
        inputs=[tensor(name=s.name, datatype=s.datatype, shape=list(s.shape)) for s in md.inputs],
        outputs=[tensor(name=s.name, datatype=s.datatype, shape=list(s.shape))
                 for s in md.outputs])


# ------------------------------------------------------------------------------- servicer


class GrpcInference:
    """The six RPCs of `inference.GRPCInferenceService`, each `(request, context) -> reply`.

    `context` needs `set_code` and `set_details` (a grpc.aio context or Serve's
    `RayServegRPCContext`). A failed call sets the status and returns an empty reply.
    With `auth`, every RPC but ServerLive and ServerReady needs the metadata `authorization:
    Bearer <token>` (else UNAUTHENTICATED); the context then also needs
    `invocation_metadata`. An endpoint then answers only its owner's tokens and admins'
    (NOT_FOUND to any other, as for an unknown endpoint).

    `call` refuses a request of more than `max_request_bytes` (RESOURCE_EXHAUSTED). That
    bounds nothing Serve's gRPC server has already received: its own message limit
    (`config.serve_mode_env`) does; this one holds where that was left at Serve's default.
    """

    def __init__(self, service: InferenceService, auth: TokenFile | None = None,
                 max_request_bytes: int = MAX_REQUEST_BYTES):
        self._service = service
        self._auth = auth
        self._max_request_bytes = max_request_bytes

    async def call(self, rpc: str, raw: bytes, context) -> Any:
        """Run `rpc` on a serialized request (what Serve's proxy forwards)."""
        request_type, response_type = RPCS[rpc]
        if len(raw) > self._max_request_bytes:
            exc = too_large(f"the {rpc} request message ({len(raw)} bytes)",
                            self._max_request_bytes)
            context.set_code(grpc.StatusCode[exc.grpc_code])
            context.set_details(exc.message)
            return response_type()
        try:
            request = request_type.FromString(raw)
        except DecodeError as exc:
            context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
            context.set_details(f"cannot parse {request_type.DESCRIPTOR.full_name}: {exc}")
            return response_type()
        return await getattr(self, rpc)(request, context)

    def _authorize(self, context) -> Grant | None:
        """The grant of the call's bearer token (None when auth is off); `Unauthenticated`
        unless the call carries a valid one."""
        if self._auth is None:
            return None
        return self._auth.check(grpc_authorization(context))

    async def ServerLive(self, request: pb.ServerLiveRequest, context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest,
                          context) -> pb.ServerReadyResponse:
        return await _answer(context, pb.ServerReadyResponse, lambda: self._server_ready())

    async def ServerMetadata(self, request: pb.ServerMetadataRequest,
                             context) -> pb.ServerMetadataResponse:
        async def call():
            self._authorize(context)
            return pb.ServerMetadataResponse(**self._service.server_metadata())
        return await _answer(context, pb.ServerMetadataResponse, call)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest,
                            context) -> pb.ModelMetadataResponse:
        async def call():
            caller = self._authorize(context)
            return metadata_to_proto(await self._service.model_metadata(
                request.name, request.version, caller))
        return await _answer(context, pb.ModelMetadataResponse, call)

    async def ModelReady(self, request: pb.ModelReadyRequest, context) -> pb.ModelReadyResponse:
        """Not ready, rather than an error, for an unknown model: clients poll this (and
        tritonclient's `is_model_ready` must return a bool) while a deployment appears."""
        async def call():
            caller = self._authorize(context)
            try:
                ready = await self._service.model_ready(request.name, request.version, caller)
            except NotFound:
                ready = False
            return pb.ModelReadyResponse(ready=ready)
        return await _answer(context, pb.ModelReadyResponse, call)

    async def ModelInfer(self, request: pb.ModelInferRequest, context) -> pb.ModelInferResponse:
        async def call():
            try:
                caller = self._authorize(context)
                parsed = infer_request_from_proto(request)
            except TrainserveError as exc:
                self._service.refused(request.model_name, exc)
                raise
            resp = await self._service.infer(request.model_name, request.model_version, parsed,
                                             caller)
            return infer_response_to_proto(resp)
        return await _answer(context, pb.ModelInferResponse, call)

    async def _server_ready(self) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=await self._service.server_ready())


async def _answer(context, empty: Callable[[], R], call: Callable[[], Awaitable[R]]) -> R:
    """`call()`, or `empty()` with the error's status code and message set on `context`."""
    try:
        return await call()
    except TrainserveError as exc:
        context.set_code(grpc.StatusCode[exc.grpc_code])
        context.set_details(exc.message)
    except Exception:  # a bug, not the caller's fault: log it, tell them nothing more
        log.exception("internal error in a gRPC inference call")
        context.set_code(grpc.StatusCode.INTERNAL)
        context.set_details("internal error")
    return empty()
