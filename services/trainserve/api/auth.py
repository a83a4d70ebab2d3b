"""Authentication of the job API: bearer tokens on every RPC but the health checks and
reflection, and the `AuthService` (who am I; tokens, for admins).

`AuthInterceptor` resolves the call's token to a `Principal` before the servicer runs and
keeps it in a context variable for the call (`principal()`). Outside a call the principal is
`NOBODY`, who may do nothing: a handler the interceptor did not wrap is refused, never run as
an anonymous admin. Without a token store (auth off, `python -m trainserve.api --insecure`,
which listens on loopback only) a caller is a plain user named by its `x-trainserve-user`
metadata (default "anonymous"); only the names the server lists in `insecure_admins` are
admins. A token resolved is remembered for `CACHE_TTL_S` (`TokenCache`), so most calls cost
no Redis round trip; a revocation through this server applies at once (a lookup in flight
cannot cache the revoked token again), one through another API replica within that time.
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from typing import Callable, Iterator

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from trainserve.core import errors
from trainserve.core.pb import auth_pb2, auth_pb2_grpc
from trainserve.store.tokens import TokenRecord, TokenStore, check_user, digest
from trainserve.core.tenancy import Principal

OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
# A caller's self-asserted name, honoured only while authentication is off.
USER_METADATA = "x-trainserve-user"
# Who an unauthenticated caller without that metadata is (auth off only).
INSECURE_DEFAULT_USER = "anonymous"
NO_TOKEN = "missing or invalid bearer token (metadata `authorization: Bearer <token>`)"
# The principal outside an authenticated call: no user, no role, refused everything.
NOBODY = Principal("", "")
CACHE_TTL_S = 5.0

_current: contextvars.ContextVar[Principal] = contextvars.ContextVar(
    "trainserve_principal", default=NOBODY)


def principal() -> Principal:
    """Who the running RPC acts for; raises Unauthenticated when no check set one (a handler
    reached without the interceptor), so nothing ever runs for nobody."""
    p = _current.get()
    if p is NOBODY or not p.role:
        raise errors.Unauthenticated("this call was not authenticated")
    return p


@contextlib.contextmanager
def acting_as(p: Principal) -> Iterator[Principal]:
    """Run the block (and the asyncio tasks it starts) as `p`: for tests and tools that call
    a servicer without the interceptor."""
    token = _current.set(p)
    try:
        yield p
    finally:
        _current.reset(token)


def require_admin() -> Principal:
    p = principal()
    if not p.is_admin:
        raise errors.PermissionDenied("only an admin may do this")
    return p


def _metadata(context, key: str) -> str:
    for k, v in context.invocation_metadata() or ():
        if k == key:
            return v if isinstance(v, str) else v.decode()
    return ""


class TokenCache:
    """Tokens resolved in the last `ttl_s`, by digest (no token is kept in clear)."""

    def __init__(self, ttl_s: float = CACHE_TTL_S, clock: Callable[[], float] = time.monotonic):
        self.ttl_s, self.clock = ttl_s, clock
        self._entries: dict[str, tuple[Principal, float]] = {}
        # Bumped by clear() (a revocation): a lookup that began before it is not cached.
        self.generation = 0

    def get(self, key: str) -> Principal | None:
        entry = self._entries.get(key)
        if entry is None or entry[1] <= self.clock():
            self._entries.pop(key, None)
            return None
        return entry[0]

    def put(self, key: str, found: Principal) -> None:
        if len(self._entries) >= 10_000:  # bounded: expired entries go first, then all
            now = self.clock()
            self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
            if len(self._entries) >= 10_000:
                self._entries.clear()
        self._entries[key] = (found, self.clock() + self.ttl_s)

    def clear(self) -> None:
        """Forget every token; a lookup that started before this may not cache its result."""
        self._entries.clear()
        self.generation += 1


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every RPC but health checks and reflection (`OPEN_PREFIXES`).

    `tokens` None is auth off (loopback dev mode): callers are plain users by the name they
    send, but those in `insecure_admins`."""

    def __init__(self, tokens: TokenStore | None, cache: TokenCache | None = None,
                 insecure_admins: frozenset[str] = frozenset()):
        self.tokens = tokens
        self.cache = TokenCache() if cache is None else cache
        self.insecure_admins = frozenset(insecure_admins)

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or details.method.startswith(OPEN_PREFIXES):
            return handler
        if handler.unary_unary:
            return handler._replace(unary_unary=self._unary(handler.unary_unary))
        if handler.unary_stream:
            return handler._replace(unary_stream=self._stream(handler.unary_stream))
        if handler.stream_unary:
            return handler._replace(stream_unary=self._unary(handler.stream_unary))
        if handler.stream_stream:
            return handler._replace(stream_stream=self._stream(handler.stream_stream))
        return handler

    async def authenticate(self, context) -> Principal:
        if self.tokens is None:
            user = _metadata(context, USER_METADATA) or INSECURE_DEFAULT_USER
            check_user(user, field=USER_METADATA)  # a name, as a token's user must be
            return Principal(user, "admin" if user in self.insecure_admins else "user")
        scheme, _, token = _metadata(context, "authorization").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise errors.Unauthenticated(NO_TOKEN)
        key = digest(token.strip())
        found = self.cache.get(key)
        if found is None:
            generation = self.cache.generation
            found = await asyncio.to_thread(self.tokens.lookup_digest, key)
            if found is None:  # unknown tokens are not remembered: a new one works at once
                raise errors.Unauthenticated(NO_TOKEN)
            if generation == self.cache.generation:  # no revocation while we looked
                self.cache.put(key, found)
        return found

    def _unary(self, fn):
        async def wrapper(request, context):
            _current.set(await self.authenticate(context))
            return await fn(request, context)
        return wrapper

    def _stream(self, fn):
        async def wrapper(request, context):
            _current.set(await self.authenticate(context))
            async for item in fn(request, context):
                yield item
        return wrapper


def _info(t: TokenRecord) -> auth_pb2.TokenInfo:
    ts = Timestamp()
    ts.FromNanoseconds(int(t.created_at * 1e9))
    return auth_pb2.TokenInfo(id=t.id, user=t.user, role=t.role, label=t.label, created_at=ts)


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, tokens: TokenStore | None, run, cache: TokenCache | None = None):
        self.tokens, self.run, self.cache = tokens, run, cache

    async def WhoAmI(self, request, context):
        p = principal()
        return auth_pb2.Principal(user=p.user, role=p.role, auth_enabled=self.tokens is not None)

    def _store(self) -> TokenStore:
        require_admin()
        if self.tokens is None:
            raise errors.FailedPrecondition("authentication is off on this server: there are "
                                            "no tokens to manage")
        return self.tokens

    async def CreateToken(self, request, context):
        store = self._store()
        token, record = await self.run(store.create, request.user, request.role or "user",
                                       request.label)
        return auth_pb2.CreateTokenResponse(token=token, info=_info(record))

    async def ListTokens(self, request, context):
        records = await self.run(self._store().list)
        return auth_pb2.ListTokensResponse(tokens=[_info(t) for t in records])

    async def RevokeToken(self, request, context):
        info = _info(await self.run(self._store().revoke, request.id))
        if self.cache is not None:
            self.cache.clear()  # the revoked token is refused from the next call on
        return info
