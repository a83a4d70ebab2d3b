"""The SDK's connection to the job API: the gRPC channel (TLS from files or the environment),
the bearer token on every call and the rule for where a token may go in clear, and unary
calls retried with backoff while the API is UNAVAILABLE."""
from __future__ import annotations

import collections
import ipaddress
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import grpc

from trainserve.client.errors import rpc_error
from trainserve.core.locations import LOOPBACK, api_token
from trainserve.core import errors

T = TypeVar("T")
# Set to 1 to let the SDK and the CLI send the job API token without TLS to another machine.
ALLOW_INSECURE_TOKEN_ENV = "TRAINSERVE_ALLOW_INSECURE_TOKEN"
# How long a client that has never reached the API retries UNAVAILABLE: nothing listening at
# the address is far likelier than an API restarting at that moment, and a person is waiting.
CONNECT_RETRY_S = 1.5


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a TLS connection to the job API: the CA to trust (empty: the system's),
    and for mutual TLS the client's certificate and key."""
    ca: str = ""
    cert: str = ""
    key: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "TlsFiles | None":
        env = os.environ if env is None else env
        files = cls(*(env.get(f"TRAINSERVE_TLS_{k}", "") for k in ("CA", "CERT", "KEY")))
        # TRAINSERVE_TLS=1 alone: TLS trusting the system's CAs.
        on = env.get("TRAINSERVE_TLS", "").lower() in ("1", "true", "yes")
        return files if on or any((files.ca, files.cert, files.key)) else None

    def credentials(self) -> grpc.ChannelCredentials:
        def read(path: str) -> bytes | None:
            return Path(path).read_bytes() if path else None
        return grpc.ssl_channel_credentials(read(self.ca), read(self.key), read(self.cert))


def api_channel(address: str, token: str | None = None,
                tls: TlsFiles | None = None, insecure: bool | None = None) -> grpc.Channel:
    """A channel to the job API at `address` that sends the bearer token with every call
    (`token`, else `$TRAINSERVE_TOKEN`, else the local stack's admin token when `address`
    is its API), over TLS when `tls` (or the environment's TRAINSERVE_TLS_*) says so.

    A token is never sent in clear to another machine: without TLS and with a host that is
    not loopback this raises FailedPrecondition, unless `insecure` (default
    `$TRAINSERVE_ALLOW_INSECURE_TOKEN=1`) says the network is trusted."""
    tls = tls or TlsFiles.from_env()
    token = token if token is not None else api_token(address)
    if token:
        check_token_transport("API token", address, bool(tls), insecure)
    channel = (grpc.secure_channel(address, tls.credentials(), options=_options(address))
               if tls else grpc.insecure_channel(address, options=_options(address)))
    return grpc.intercept_channel(channel, _Bearer(token)) if token else channel


def check_token_transport(what: str, address: str, encrypted: bool,
                          insecure: bool | None = None) -> None:
    """FailedPrecondition unless a token may go to `address` (HOST:PORT): over TLS, to this
    machine, or where `insecure` (default `$TRAINSERVE_ALLOW_INSECURE_TOKEN=1`) says the
    network is trusted. A token sent in clear to another machine is anyone's on the way."""
    if encrypted or _loopback(address) or _allow_insecure(insecure):
        return
    fix = ("set TRAINSERVE_TLS_CA (the server's CA) to use TLS" if what == "API token"
           else "use an https:// address")
    raise errors.FailedPrecondition(
        f"refusing to send the {what} in clear to {address} (no TLS, not this machine): "
        f"{fix}, or {ALLOW_INSECURE_TOKEN_ENV}=1 (Client(insecure=True)) on a network you "
        "trust")


def is_loopback_host(host: str) -> bool:
    """Whether `host` (a name or an address, without a port) is this machine by name."""
    return host in LOOPBACK


def call_with_retry(method: Callable[..., T], request, *, timeout: float, retry_for: float,
                    address: str, retry: bool = True, connect_for: float | None = None) -> T:
    """One unary call; UNAVAILABLE is retried with backoff for `retry_for` seconds, and for
    only `connect_for` (when given) while no connection can be made at all. Errors are
    raised as `trainserve.core.errors` exceptions."""
    start = time.monotonic()
    attempt = 0
    while True:
        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as exc:
            attempt += 1
            transient = exc.code() == grpc.StatusCode.UNAVAILABLE
            window = min(retry_for, connect_for) if connect_for is not None \
                and unreachable(exc) else retry_for
            left = window - (time.monotonic() - start)
            if not (retry and transient) or left <= 0:
                raise rpc_error(exc, address) from None
            time.sleep(min(backoff(attempt), left))  # the last try at the window's end


def unreachable(exc: grpc.RpcError) -> bool:
    """Whether the call failed for want of a connection (nothing listens at the address, the
    name does not resolve), not with an answer of the API's."""
    details = (exc.details() or "").lower()
    return exc.code() == grpc.StatusCode.UNAVAILABLE and (
        "failed to connect" in details or "dns resolution failed" in details)


def backoff(attempt: int) -> float:
    """Seconds to wait before retry `attempt` (1, 2, ...): doubling up to 2 s, jittered."""
    return min(0.1 * 2 ** attempt, 2.0) * (0.5 + random.random() / 2)


def _allow_insecure(insecure: bool | None) -> bool:
    if insecure is not None:
        return insecure
    return os.environ.get(ALLOW_INSECURE_TOKEN_ENV, "").lower() in ("1", "true", "yes")


def _loopback(address: str) -> bool:
    """Whether `address` (HOST:PORT, [v6]:PORT, unix:PATH) is on this machine."""
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    host = address.rsplit(":", 1)[0].strip("[]") if ":" in address else address
    if is_loopback_host(host):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _options(address: str) -> list[tuple[str, Any]]:
    host = address.rsplit(":", 1)[0].strip("[]")
    # A local API must not be reached through an http_proxy from the environment.
    return [("grpc.enable_http_proxy", 0)] if is_loopback_host(host) else []


class _Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
              grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call's metadata."""

    def __init__(self, token: str):
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details):
        metadata = [*(details.metadata or ()), self._header]
        return _CallDetails(details.method, details.timeout, metadata, details.credentials,
                            details.wait_for_ready, details.compression)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, requests):
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation, details, requests):
        return continuation(self._details(details), requests)


class _CallDetails(collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready",
                         "compression")), grpc.ClientCallDetails):
    pass
