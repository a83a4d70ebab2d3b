"""One interceptor maps domain errors to gRPC status codes and records request metrics.

`errors.TrainserveError` subclasses carry their status code; a Redis outage becomes
UNAVAILABLE (the client may retry with the same request id), a write Redis refuses at its
`maxmemory` RESOURCE_EXHAUSTED (retrying does not help); anything else is INTERNAL with a
generic message and the traceback in the server log.
"""
from __future__ import annotations

import logging
import time

import grpc
import redis

from trainserve.core import errors
from trainserve.api.metrics import GRPC_LATENCY, GRPC_REQUESTS, REDIS_ERRORS

log = logging.getLogger("trainserve.api")


def _status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, errors.TrainserveError):
        return getattr(grpc.StatusCode, exc.grpc_code), exc.message
    if isinstance(exc, redis.exceptions.OutOfMemoryError):
        REDIS_ERRORS.inc()  # Redis at its maxmemory (noeviction): writes refused, reads work
        log.error("redis refused a write: %s", exc)
        return (grpc.StatusCode.RESOURCE_EXHAUSTED, "the state store is full (Redis reached "
                "its maxmemory); nothing new can be stored until an operator frees space or "
                "raises the limit")
    if isinstance(exc, redis.RedisError):
        REDIS_ERRORS.inc()
        return grpc.StatusCode.UNAVAILABLE, "state store unavailable, retry"
    log.exception("internal error", exc_info=exc)
    return grpc.StatusCode.INTERNAL, "internal error"


class ErrorAndMetricsInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method.rsplit("/", 1)[-1]
        if handler.unary_unary:
            return handler._replace(unary_unary=_wrap_unary(handler.unary_unary, method))
        if handler.unary_stream:
            return handler._replace(unary_stream=_wrap_stream(handler.unary_stream, method))
        if handler.stream_unary:  # client streaming (uploads): same shape as unary
            return handler._replace(stream_unary=_wrap_unary(handler.stream_unary, method))
        return handler


def _record(method: str, code: grpc.StatusCode, start: float) -> None:
    GRPC_REQUESTS.labels(method, code.name).inc()
    GRPC_LATENCY.labels(method).observe(time.perf_counter() - start)


async def _fail(exc: Exception, context, method: str, start: float) -> None:
    """Record the call and end it with the status `exc` maps to (re-raise an abort)."""
    if isinstance(exc, grpc.aio.AbortError):
        _record(method, context.code() or grpc.StatusCode.UNKNOWN, start)
        raise exc
    code, message = _status(exc)
    _record(method, code, start)
    await context.abort(code, message)


def _wrap_unary(fn, method):
    async def wrapper(request, context):
        start = time.perf_counter()
        try:
            response = await fn(request, context)
        except Exception as exc:  # noqa: BLE001 - every error gets a status
            await _fail(exc, context, method, start)
        _record(method, grpc.StatusCode.OK, start)
        return response
    return wrapper


def _wrap_stream(fn, method):
    async def wrapper(request, context):
        start = time.perf_counter()
        try:
            async for item in fn(request, context):
                yield item
        except Exception as exc:  # noqa: BLE001
            await _fail(exc, context, method, start)
        _record(method, grpc.StatusCode.OK, start)
    return wrapper
