"""Protobuf records by name: `ts:<kind>:<name>` holds the serialized message and the set
`ts:<kind>s` indexes the names. Deployments and user datasets are stored this way."""
from __future__ import annotations

import redis

from trainserve.core.errors import NotFound
from trainserve.store import keys


class NamedRecords:
    """get / put / delete / list of one message type, keyed by its `name` field."""

    kind = ""            # keys.DEPLOYMENT, keys.DATASET
    message_type = None  # the generated message class

    def __init__(self, client: redis.Redis):
        self.r = client

    def key(self, name: str) -> str:
        return keys.record(self.kind, name)

    @property
    def index(self) -> str:
        return keys.records(self.kind)

    def find(self, name: str):
        """The record named `name`, or None."""
        raw = self.r.get(self.key(name)) if name else None
        return self.message_type.FromString(raw) if raw is not None else None

    def get(self, name: str):
        record = self.find(name)
        if record is None:
            raise NotFound(f"{self.kind} {name!r} not found")
        return record

    def put(self, record, pipe=None) -> None:
        """Write `record`; with `pipe`, only queue the writes on it (the caller executes)."""
        own = pipe is None
        pipe = self.r.pipeline(transaction=True) if own else pipe
        pipe.set(self.key(record.name), record.SerializeToString())
        pipe.sadd(self.index, record.name)
        if own:
            pipe.execute()

    def delete(self, name: str):
        """Remove `name` and return what it was (`NotFound` if there is none)."""
        record = self.get(name)
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self.key(name))
        pipe.srem(self.index, name)
        pipe.execute()
        return record

    def list(self) -> list:
        names = sorted(n.decode() for n in self.r.smembers(self.index))
        raws = self.r.mget([self.key(n) for n in names]) if names else []
        return [self.message_type.FromString(raw) for raw in raws if raw is not None]
