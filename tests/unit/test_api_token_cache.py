"""The job API's token cache: a resolved token costs no Redis round trip for CACHE_TTL_S, a
revocation elsewhere applies once that passes, unknown tokens are never remembered."""
import asyncio

import pytest

from trainserve.core import errors
from trainserve.api.auth import AuthInterceptor, TokenCache
from trainserve.core.tenancy import Principal
from trainserve.store.tokens import digest


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Store:
    """A token store that counts its lookups."""

    def __init__(self):
        self.valid = {digest("tsk_a"): Principal("ada", "user")}
        self.lookups = 0

    def lookup_digest(self, token_digest):
        self.lookups += 1
        return self.valid.get(token_digest)


class Context:
    def __init__(self, token):
        self._md = (("authorization", f"Bearer {token}"),)

    def invocation_metadata(self):
        return self._md


def test_a_resolved_token_is_remembered_until_its_ttl():
    clock, store = Clock(), Store()
    auth = AuthInterceptor(store, TokenCache(ttl_s=5.0, clock=clock))
    run = asyncio.run
    assert run(auth.authenticate(Context("tsk_a"))) == Principal("ada", "user")
    assert run(auth.authenticate(Context("tsk_a"))).user == "ada"
    assert store.lookups == 1
    del store.valid[digest("tsk_a")]  # revoked through another API replica
    clock.now = 4.9
    assert run(auth.authenticate(Context("tsk_a"))).user == "ada"
    clock.now = 5.0
    with pytest.raises(errors.Unauthenticated):
        run(auth.authenticate(Context("tsk_a")))
    assert store.lookups == 2


def test_unknown_tokens_are_looked_up_every_time():
    store = Store()
    auth = AuthInterceptor(store, TokenCache(clock=Clock()))
    for _ in range(2):
        with pytest.raises(errors.Unauthenticated):
            asyncio.run(auth.authenticate(Context("tsk_new")))
    store.valid[digest("tsk_new")] = Principal("bob", "user")  # created meanwhile: works at once
    assert asyncio.run(auth.authenticate(Context("tsk_new"))).user == "bob"
    assert store.lookups == 3


def test_the_cache_stays_bounded():
    clock = Clock()
    cache = TokenCache(ttl_s=1.0, clock=clock)
    for i in range(10_000):
        cache.put(f"k{i}", Principal("u", "user"))
    clock.now = 2.0  # all expired: the next put drops them
    cache.put("fresh", Principal("v", "user"))
    assert cache.get("fresh").user == "v" and cache.get("k1") is None
    assert len(cache._entries) == 1


class SlowStore(Store):
    """A lookup that a revocation overtakes: the revocation lands while the lookup runs."""

    def __init__(self, cache):
        super().__init__()
        self.cache = cache

    def lookup_digest(self, token_digest):
        found = super().lookup_digest(token_digest)  # read before the revocation...
        self.valid.pop(token_digest, None)             # ...which then removes the token
        self.cache.clear()                             # and clears the cache (RevokeToken)
        return found


def test_a_lookup_in_flight_cannot_cache_a_token_revoked_meanwhile():
    cache = TokenCache(clock=Clock())
    store = SlowStore(cache)
    auth = AuthInterceptor(store, cache)
    assert asyncio.run(auth.authenticate(Context("tsk_a"))).user == "ada"  # the call in flight
    with pytest.raises(errors.Unauthenticated):  # the next call looks again, and is refused
        asyncio.run(auth.authenticate(Context("tsk_a")))
    assert store.lookups == 2


def test_the_default_principal_is_nobody():
    """Code reached without the interceptor setting a principal is refused, not admin."""
    from trainserve.api.auth import principal, require_admin

    async def outside_any_call():
        with pytest.raises(errors.Unauthenticated):
            principal()
        with pytest.raises(errors.Unauthenticated):
            require_admin()
    asyncio.run(outside_any_call())


class UserContext:
    def __init__(self, user=None):
        self._md = (("x-trainserve-user", user),) if user else ()

    def invocation_metadata(self):
        return self._md


def test_without_auth_callers_are_plain_users_unless_listed():
    open_auth = AuthInterceptor(None)
    assert asyncio.run(open_auth.authenticate(UserContext("eve"))) == Principal("eve", "user")
    assert asyncio.run(open_auth.authenticate(UserContext())) == Principal("anonymous", "user")
    listed = AuthInterceptor(None, insecure_admins=frozenset({"teacher"}))
    assert asyncio.run(listed.authenticate(UserContext("teacher"))).is_admin
    assert not asyncio.run(listed.authenticate(UserContext("eve"))).is_admin
    with pytest.raises(errors.InvalidArgument) as bad:  # owners are names, as tokens' users
        asyncio.run(open_auth.authenticate(UserContext("Eve\nadmin")))
    assert bad.value.field == "x-trainserve-user"
    with pytest.raises(errors.InvalidArgument):
        asyncio.run(open_auth.authenticate(UserContext("eve\n")))


def test_stream_stream_handlers_are_authenticated_too():
    import grpc

    async def bidi(requests, context):
        yield "reached"

    handler = grpc.stream_stream_rpc_method_handler(bidi)

    class Details:
        method = "/trainserve.v1.Some/Bidi"

    async def continuation(details):
        return handler

    async def run():
        wrapped = await AuthInterceptor(Store()).intercept_service(continuation, Details())
        assert wrapped.stream_stream is not bidi
        with pytest.raises(errors.Unauthenticated):
            async for _ in wrapped.stream_stream(iter(()), Context("tsk_nobody")):
                pass
        return [item async for item in wrapped.stream_stream(iter(()), Context("tsk_a"))]
    assert asyncio.run(run()) == ["reached"]
