"""The job API's token cache: a resolved token costs no Redis round trip for CACHE_TTL_S, a
revocation elsewhere applies once that passes, unknown tokens are never remembered."""
import asyncio

import pytest

from trainserve import errors
from trainserve.api.auth import AuthInterceptor, TokenCache
from trainserve.tenancy import Principal
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
