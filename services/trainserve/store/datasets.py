"""User dataset records: `ts:dataset:<name>` (serialized Dataset) and the `ts:datasets` set.
The bytes live on storage, named by their SHA-256 (see registry/datasets.py)."""
from __future__ import annotations

import redis

from trainserve.errors import NotFound
from trainserve.pb import dataset_pb2
from trainserve.store.redis import PREFIX


def _key(name: str) -> str:
    return f"{PREFIX}dataset:{name}"


class DatasetStore:
    def __init__(self, client: redis.Redis):
        self.r = client

    def put(self, ds: dataset_pb2.Dataset) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.set(_key(ds.name), ds.SerializeToString())
        pipe.sadd(f"{PREFIX}datasets", ds.name)
        pipe.execute()

    def get(self, name: str) -> dataset_pb2.Dataset:
        raw = self.r.get(_key(name)) if name else None
        if raw is None:
            raise NotFound(f"dataset {name!r} not found")
        return dataset_pb2.Dataset.FromString(raw)

    def find(self, name: str) -> dataset_pb2.Dataset | None:
        raw = self.r.get(_key(name))
        return dataset_pb2.Dataset.FromString(raw) if raw is not None else None

    def list(self) -> list[dataset_pb2.Dataset]:
        names = sorted(n.decode() for n in self.r.smembers(f"{PREFIX}datasets"))
        raws = self.r.mget([_key(n) for n in names]) if names else []
        return [dataset_pb2.Dataset.FromString(r) for r in raws if r is not None]

    def delete(self, name: str) -> dataset_pb2.Dataset:
        ds = self.get(name)
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(_key(name))
        pipe.srem(f"{PREFIX}datasets", name)
        pipe.execute()
        return ds
