"""Name claims: `ts:name:<kind>:<name>` holds the user who owns that model, endpoint or dataset
name. A claim is made once, atomically (SET NX), before anything is created under the name,
and never moves to another user: the first owner of a name keeps it (also after an undeploy or
a dataset delete, so a URL or a name others refer to never changes hands).

Records written before claims existed have no claim key: their recorded user holds the name,
and the first claim of it writes that user (lazily, from the record).
"""
from __future__ import annotations

import redis

from trainserve.store.datasets import DatasetStore
from trainserve.store.deployments import DeploymentStore
from trainserve.store import keys
from trainserve.store.keys import DATASET, DEPLOYMENT, MODEL
from trainserve.store.models import ModelStore

__all__ = ["MODEL", "DEPLOYMENT", "DATASET", "NameClaims"]


class NameClaims:
    def __init__(self, client: redis.Redis):
        self.r = client

    key = staticmethod(keys.claim)

    def claim(self, wanted: list[tuple[str, str]], user: str) -> list[str]:
        """Claim each (kind, name) of `wanted` for `user` unless someone holds it already;
        returns who holds each afterwards (`user` where the claim was made or was already
        theirs). One round trip when every name is claimed already, two otherwise."""
        keys = [self.key(kind, name) for kind, name in wanted]
        held = [h.decode() if h is not None else None for h in self.r.mget(keys)] if keys else []
        missing = [i for i, h in enumerate(held) if h is None]
        if not missing:
            return held
        pipe = self.r.pipeline(transaction=True)
        for i in missing:
            recorded = self._recorded(*wanted[i])
            pipe.set(keys[i], user if recorded is None else recorded, nx=True)
            pipe.get(keys[i])
        got = pipe.execute()
        for n, i in enumerate(missing):
            held[i] = got[2 * n + 1].decode()
        return held

    def holder(self, kind: str, name: str) -> str | None:
        """Who holds `name` (None: nobody), without claiming it."""
        got = self.r.get(self.key(kind, name))
        return got.decode() if got is not None else self._recorded(kind, name)

    def _recorded(self, kind: str, name: str) -> str | None:
        """The user of a record made before claims existed (None: there is none)."""
        if kind == MODEL:
            versions = ModelStore(self.r).versions(name)
            return versions[0].user if versions else None
        record = (DeploymentStore if kind == DEPLOYMENT else DatasetStore)(self.r).find(name)
        return record.user if record is not None else None
