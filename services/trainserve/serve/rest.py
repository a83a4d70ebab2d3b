"""The REST binding of the inference protocol: OIP v2 (with Triton's binary tensor extension)
and KServe's v1 `:predict`, as plain Starlette routes over `InferenceService`.

Binary tensor extension: the body is a JSON header of `Inference-Header-Content-Length`
bytes followed by raw tensors; an input whose `parameters.binary_data_size` is set takes its
bytes from there, in input order. Outputs are sent the same way when requested with
`parameters.binary_data: true` or, by default, when the request sets `binary_data_output`.

Bodies are read and inflated within `ServeConfig.max_request_bytes` (`bodies`): 413 beyond.
With inference auth on, a route's token is checked before its body is read, and the token's
grant goes with the request to `InferenceService`, whose endpoints answer only their owner's
tokens and admins' (404 to any other, as for an unknown endpoint).
"""
from __future__ import annotations

import json
import logging
from typing import Any, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from trainserve.core.errors import InvalidArgument, TrainserveError, Unauthenticated
from trainserve.serve.auth import CHALLENGE, OPEN_PATHS, Grant, TokenFile
from trainserve.serve.bodies import inflate, read_capped
from trainserve.serve.config import MAX_REQUEST_BYTES
from trainserve.serve.dataplane import (PREDICTION, InferInput, InferRequest, InferResponse,
                                        ModelMetadata, RequestedOutput, check_shape, decode_json,
                                        decode_raw, encode_raw, to_json_data)
from trainserve.serve.service import InferenceService

log = logging.getLogger(__name__)

HEADER_LENGTH = "Inference-Header-Content-Length"


# ------------------------------------------------------------------------------ decoding


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidArgument(f"malformed JSON body: {exc}") from None


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON header, binary tensor data) of a request body."""
    if header_length is None:
        return body, b""
    try:
        n = int(header_length)
    except ValueError:
        n = -1
    if not 0 <= n <= len(body):
        raise InvalidArgument(f"{HEADER_LENGTH} {header_length!r} is not a length within the "
                              f"{len(body)}-byte body")
    return body[:n], body[n:]


def _object(x: Any, where: str) -> dict:
    if not isinstance(x, dict):
        raise InvalidArgument(f"{where} must be a JSON object")
    return x


def infer_request_from_json(doc: Any, binary: bytes = b"") -> InferRequest:
    """An `InferRequest` from the JSON header and the binary tensor data after it."""
    doc = _object(doc, "the request body")
    inputs_doc = doc.get("inputs")
    if not isinstance(inputs_doc, list) or not inputs_doc:
        raise InvalidArgument("the request needs a non-empty 'inputs' list")
    inputs, offset = [], 0
    for i, item in enumerate(inputs_doc):
        tensor, offset = _input_from_json(_object(item, f"inputs[{i}]"), i, binary, offset)
        inputs.append(tensor)
    if offset != len(binary):
        raise InvalidArgument(f"{len(binary) - offset} bytes of binary data belong to no input")
    outputs = []
    for i, item in enumerate(doc.get("outputs") or []):
        item = _object(item, f"outputs[{i}]")
        if not isinstance(item.get("name"), str):
            raise InvalidArgument(f"outputs[{i}] needs a 'name'")
        outputs.append(RequestedOutput(item["name"], _params(item, f"outputs[{i}]")))
    request_id = doc.get("id", "")
    return InferRequest(inputs, outputs, str(request_id), _params(doc, "the request"))


def _input_from_json(item: dict, i: int, binary: bytes, offset: int) -> tuple[InferInput, int]:
    name, datatype = item.get("name"), item.get("datatype")
    if not isinstance(name, str) or not isinstance(datatype, str):
        raise InvalidArgument(f"inputs[{i}] needs a 'name', a 'datatype' and a 'shape'")
    shape = check_shape(item.get("shape"), f"input {name!r}")
    params = _params(item, f"input {name!r}")
    size = params.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidArgument(f"input {name!r}: binary_data_size must be a byte count")
        if offset + size > len(binary):
            raise InvalidArgument(f"input {name!r}: binary_data_size {size} runs past the "
                                  f"{len(binary)} bytes of binary data")
        data = decode_raw(name, datatype, shape, binary[offset:offset + size])
        return InferInput(name, datatype, shape, data, params), offset + size
    if "data" not in item:
        raise InvalidArgument(f"input {name!r} has neither 'data' nor binary_data_size")
    return InferInput(name, datatype, shape, decode_json(name, datatype, shape, item["data"]),
                      params), offset


def _params(item: dict, where: str) -> dict:
    params = item.get("parameters") or {}
    return _object(params, f"{where}: parameters")


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, inflated from its `Content-Encoding`; `bodies.BodyTooLarge` (413)
    as soon as it, as sent or as inflated, passes `limit` bytes."""
    body = await read_capped(request.stream(), request.headers.get("content-length"), limit)
    return inflate(body, request.headers.get("content-encoding"), limit)


# ------------------------------------------------------------------------------ encoding


def encode_infer_response(resp: InferResponse, request: InferRequest) -> tuple[bytes, int | None]:
    """(body, JSON header length or None when the body is JSON only)."""
    binary_default = bool(request.parameters.get("binary_data_output", False))
    asked = {o.name: o.parameters for o in request.outputs}
    outputs, blobs = [], []
    for out in resp.outputs:
        entry: dict[str, Any] = {"name": out.name, "datatype": out.datatype,
                                 "shape": list(out.shape)}
        if asked.get(out.name, {}).get("binary_data", binary_default):
            raw = encode_raw(out.data, out.datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = to_json_data(out.data, out.datatype)
        outputs.append(entry)
    doc: dict[str, Any] = {"model_name": resp.model_name, "model_version": resp.model_version,
                           "outputs": outputs}
    if resp.id:
        doc["id"] = resp.id
    header = _dumps(doc)
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


def metadata_json(md: ModelMetadata) -> dict:
    def tensors(specs):
        return [{"name": s.name, "datatype": s.datatype, "shape": list(s.shape)} for s in specs]

    return {"name": md.name, "versions": list(md.versions), "platform": md.platform,
            "inputs": tensors(md.inputs), "outputs": tensors(md.outputs)}


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def json_response(doc: Any, status: int = 200, headers: dict | None = None) -> Response:
    return Response(_dumps(doc), status_code=status, media_type="application/json",
                    headers=headers)


# ------------------------------------------------------------------------------ v1 predict


async def predict_v1(service: InferenceService, name: str, doc: Any,
                     caller: Grant | None = None) -> dict:
    """KServe v1: `{"instances": [...]}` -> `{"predictions": [...]}`, one per instance."""
    instances = _object(doc, "the request body").get("instances")
    if not isinstance(instances, list) or not instances:
        raise InvalidArgument('the body must be {"instances": [...]} with at least one instance')
    md = await service.model_metadata(name, caller=caller)
    if len(md.inputs) != 1:
        raise InvalidArgument(f"model {name!r} has {len(md.inputs)} inputs; use the v2 protocol")
    spec = md.inputs[0]
    shape = (len(instances), *spec.shape[1:])
    try:
        x = decode_json(spec.name, spec.datatype, shape, instances)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{exc.message} (each instance must be {spec.datatype} "
                              f"{list(spec.shape[1:])})") from None
    resp = await service.infer(name, "", InferRequest([InferInput(spec.name, spec.datatype,
                                                                  shape, x)]), caller)
    return {"predictions": _predictions(resp, len(instances))}


def _predictions(resp: InferResponse, n: int) -> list:
    outs = {o.name: o.data for o in resp.outputs}
    if set(outs) == {PREDICTION}:  # regression: a number per instance (a list if several)
        return [row[0] if len(row) == 1 else row
                for row in outs[PREDICTION].reshape(n, -1).tolist()]
    return [{name: _item(data[i]) for name, data in outs.items()} for i in range(n)]


def _item(x: Any) -> Any:
    if isinstance(x, bytes):
        return x.decode("utf-8", "replace")
    return x.tolist()  # numpy arrays and numpy scalars alike


# ----------------------------------------------------------------------------------- app

Endpoint = Callable[[Request], Awaitable[Response]]


class RestApp:
    """The REST routes over an `InferenceService`; errors answer `{"error": message}` (OIP).

    `handle(request)` answers one request: the gateway's HTTP entry point, which Serve calls
    with each request. The object itself is the same routes as an ASGI app (tests, tools).
    Plain routes, no framework: the request path is the latency users see, and a
    framework's per-request machinery costs about as much as the protocol work itself."""

    def __init__(self, routes: list[Route]):
        self.routes = routes

    async def handle(self, request: Request) -> Response:
        route, child_scope, allowed = self._match(request.scope)
        path = request.scope.get("path", "")
        if route is None and not allowed and len(path) > 1 and path.endswith("/"):
            # `/v2/models/x/infer/` reaches the route of `/v2/models/x/infer`
            route, child_scope, allowed = self._match({**request.scope,
                                                       "path": path.rstrip("/") or "/"})
        if route is not None:
            request.scope.update(child_scope)
            return await route.endpoint(request)
        if allowed:
            return json_response({"error": "Method Not Allowed"}, 405,
                                 {"Allow": ", ".join(dict.fromkeys(allowed))})
        return json_response({"error": "Not Found"}, 404)

    def _match(self, scope: dict) -> tuple[Route | None, dict, list[str]]:
        """The first route that takes `scope` and its path parameters' scope, or None and
        the methods of the routes whose path matches."""
        allowed: list[str] = []
        for route in self.routes:
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                return route, child_scope, allowed
            if match is Match.PARTIAL:
                allowed += sorted(route.methods or ())
        return None, {}, allowed

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":  # nothing to start or stop
            while True:
                kind = (await receive())["type"]  # lifespan.startup or lifespan.shutdown
                await send({"type": f"{kind}.complete"})
                if kind == "lifespan.shutdown":
                    return
        response = await self.handle(Request(scope, receive, send))
        await response(scope, receive, send)


def build_rest_app(service: InferenceService, auth: TokenFile | None = None,
                   max_request_bytes: int = MAX_REQUEST_BYTES) -> RestApp:
    """The REST routes over `service`. With `auth`, every route but the server health
    probes needs `Authorization: Bearer <token>`, and an endpoint answers only the tokens of
    its owner and of admins; without, every route is open. Request bodies above
    `max_request_bytes`, as sent or inflated, are refused with 413."""
    routes = (*_v2_routes(service, max_request_bytes), *_v1_routes(service, max_request_bytes))
    return RestApp([Route(path, _guarded(endpoint, None if path in OPEN_PATHS else auth),
                          methods=[method])
                    for method, path, endpoint in routes])


# The request scope's key of the caller's `auth.Grant` (absent when auth is off).
CALLER = "trainserve.caller"


def caller_of(request: Request) -> Grant | None:
    """Who sends `request` (set by the token check), None when inference auth is off."""
    return request.scope.get(CALLER)


def _guarded(endpoint: Endpoint, auth: TokenFile | None) -> Endpoint:
    """`endpoint` behind the token check (when `auth`), domain errors as their HTTP answer
    and anything else as a generic 500."""
    async def handle(request: Request) -> Response:
        try:
            if auth is not None:
                request.scope[CALLER] = auth.check(request.headers.get("authorization"))
            return await endpoint(request)
        except TrainserveError as exc:
            return error_response(exc)
        except Exception:
            log.exception("internal error on %s %s", request.method, request.url.path)
            return json_response({"error": "internal error"}, 500)
    return handle


def error_response(exc: TrainserveError) -> Response:
    response = json_response({"error": exc.message}, exc.http_status)
    if isinstance(exc, Unauthenticated):
        response.headers["WWW-Authenticate"] = CHALLENGE
    return response


def _name_version(request: Request) -> tuple[str, str]:
    params = request.path_params
    return params["name"], params.get("version", "")


def _v2_routes(service: InferenceService, limit: int) -> list[tuple[str, str, Endpoint]]:
    async def live(_: Request) -> Response:
        return json_response({"live": True})

    async def ready(_: Request) -> Response:
        ok = await service.server_ready()
        return json_response({"ready": ok}, 200 if ok else 503)

    async def server_metadata(_: Request) -> Response:
        return json_response(service.server_metadata())

    async def model_metadata(request: Request) -> Response:
        return json_response(metadata_json(await service.model_metadata(
            *_name_version(request), caller=caller_of(request))))

    async def model_ready(request: Request) -> Response:
        name, version = _name_version(request)
        ok = await service.model_ready(name, version, caller_of(request))
        return json_response({"name": name, "ready": ok}, 200 if ok else 503)

    async def infer(request: Request) -> Response:
        return await _infer(service, limit, request)
    model, version = "/v2/models/{name}", "/v2/models/{name}/versions/{version}"
    # Inference first: routes are tried in order.
    return [("POST", f"{model}/infer", infer), ("POST", f"{version}/infer", infer),
            ("GET", "/v2/health/live", live), ("GET", "/v2/health/ready", ready),
            ("GET", "/v2", server_metadata),
            ("GET", model, model_metadata), ("GET", version, model_metadata),
            ("GET", f"{model}/ready", model_ready), ("GET", f"{version}/ready", model_ready)]


async def _infer(service: InferenceService, limit: int, request: Request) -> Response:
    name, version = _name_version(request)
    try:
        body = await read_body(request, limit)
        header, binary = split_body(body, request.headers.get(HEADER_LENGTH))
        req = infer_request_from_json(parse_json(header), binary)
    except TrainserveError as exc:
        service.refused(name, exc)
        raise
    resp = await service.infer(name, version, req, caller_of(request))
    content, header_length = encode_infer_response(resp, req)
    if header_length is None:
        return Response(content, media_type="application/json")
    return Response(content, media_type="application/octet-stream",
                    headers={HEADER_LENGTH: str(header_length)})


def _v1_routes(service: InferenceService, limit: int) -> list[tuple[str, str, Endpoint]]:
    async def model_status(request: Request) -> Response:
        name = request.path_params["name"]
        ready = await service.model_ready(name, caller=caller_of(request))
        return json_response({"name": name, "ready": ready})

    async def predict(request: Request) -> Response:
        doc = parse_json(await read_body(request, limit))
        return json_response(await predict_v1(service, request.path_params["name"], doc,
                                              caller_of(request)))

    return [("GET", "/v1/models/{name}", model_status),
            ("POST", "/v1/models/{name}:predict", predict)]
