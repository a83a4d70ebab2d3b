"""Inference request bodies read and inflated within a limit, in bounded memory.

A REST body is read as a stream and never beyond `limit` bytes: a `Content-Length` above the
limit is refused before any byte is read, and the bytes are counted as they arrive (a chunked
body declares no length). A body sent with `Content-Encoding: gzip` or `deflate` (tritonclient
can) is inflated incrementally with its output bounded by the same limit, so a small body that
would inflate to gigabytes is refused as soon as its output passes the limit, having held at
most `limit` + 1 bytes of it. Both refusals are `BodyTooLarge`: HTTP 413 and gRPC
RESOURCE_EXHAUSTED, naming the limit and the setting that sets it.
"""
from __future__ import annotations

import zlib
from typing import AsyncIterator

from trainserve.core.errors import InvalidArgument, ResourceExhausted

# The setting an operator changes to move the limit (named in every refusal).
SETTING = "ServeConfig.max_request_bytes"
# zlib's window bits per content coding: gzip's header and trailer, zlib's (HTTP "deflate").
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS,
          "deflate": zlib.MAX_WBITS}
_IDENTITY = ("", "identity")


class BodyTooLarge(ResourceExhausted):
    """A request larger than the server takes: 413 on REST, RESOURCE_EXHAUSTED on gRPC."""
    http_status = 413


def too_large(what: str, limit: int) -> BodyTooLarge:
    """The refusal of `what` (e.g. "the request body") for passing `limit` bytes."""
    return BodyTooLarge(f"{what} is larger than the limit of {limit} bytes "
                        f"({limit / 2**20:g} MiB, {SETTING})")


def check_declared(content_length: str | None, limit: int) -> None:
    """Refuse a `Content-Length` header above `limit` (before reading the body)."""
    if content_length is None:
        return
    try:
        declared = int(content_length)
    except ValueError:
        raise InvalidArgument(f"Content-Length {content_length!r} is not a byte count") from None
    if declared > limit:
        raise too_large(f"the request body ({declared} bytes by its Content-Length)", limit)


async def read_capped(chunks: AsyncIterator[bytes], content_length: str | None,
                      limit: int) -> bytes:
    """The body that `chunks` stream, refused as soon as it passes `limit` bytes (or at once
    if `content_length` says it will): at most `limit` bytes plus one chunk are held."""
    check_declared(content_length, limit)
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise too_large("the request body", limit)
        parts.append(chunk)
    return b"".join(parts)


def inflate(body: bytes, encoding: str | None, limit: int) -> bytes:
    """`body` decoded from its `Content-Encoding` (gzip, deflate or identity), refused with
    `BodyTooLarge` as soon as the output passes `limit` bytes."""
    coding = (encoding or "").strip().lower()
    if coding in _IDENTITY:
        return body
    wbits = _WBITS.get(coding)
    if wbits is None:
        raise InvalidArgument(f"Content-Encoding {encoding!r} is not supported; send gzip, "
                              "deflate or identity")
    out, data = bytearray(), body
    try:
        while True:  # one round per gzip member (a gzip body may hold several)
            d = zlib.decompressobj(wbits)
            while not d.eof:
                # Never more than one byte past the limit out of one call: the bound on memory.
                out += d.decompress(data, limit + 1 - len(out))
                if len(out) > limit:
                    raise too_large(f"the {coding} request body once inflated", limit)
                data = d.unconsumed_tail
                if not data:  # all input taken and, short of the limit, all output given
                    break
            if not d.eof:
                raise InvalidArgument(f"the {coding} request body is truncated")
            data = d.unused_data
            if not data or coding == "deflate":
                break
    except zlib.error as exc:
        raise InvalidArgument(f"cannot decompress the {coding} body: {exc}") from None
    if data:
        raise InvalidArgument(f"{len(data)} bytes follow the end of the {coding} stream")
    return bytes(out)
