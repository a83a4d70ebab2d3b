"""Registered model versions: `ts:model:<name>` hash of version → serialized ModelVersion.

Registration is exactly-once per job: `ts:model-by-job:<job_id>` remembers the version a job
got, so a job re-run after a crash re-uses it instead of registering a duplicate.
"""
from __future__ import annotations

import redis

from trainserve.core.errors import NotFound
from trainserve.core.pb import model_pb2
from trainserve.store import keys

_ALLOCATE = """
local got = redis.call('GET', KEYS[1])
if got then return tonumber(got) end
local v = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], v)
redis.call('ZADD', KEYS[3], 0, ARGV[1])
return v
"""


class ModelStore:
    def __init__(self, client: redis.Redis):
        self.r = client
        self._allocate = client.register_script(_ALLOCATE)

    def allocate_version(self, name: str, job_id: str) -> int:
        """The version number this job's model gets (the same one on every call)."""
        touched = [keys.model_by_job(job_id), keys.model_seq(name), keys.MODELS]
        return int(self._allocate(keys=touched, args=[name]))

    def put(self, mv: model_pb2.ModelVersion) -> None:
        self.r.hset(keys.model(mv.name), str(mv.version), mv.SerializeToString())

    def get(self, name: str, version: int = 0) -> model_pb2.ModelVersion:
        """A version of `name`; 0 is the latest."""
        key = keys.model(name)
        if version <= 0:
            versions = [int(v) for v in self.r.hkeys(key)]
            if not versions:
                raise NotFound(f"model {name!r} not found")
            version = max(versions)
        raw = self.r.hget(key, str(version))
        if raw is None:
            if not self.r.exists(key):
                raise NotFound(f"model {name!r} not found")
            raise NotFound(f"model {name!r} has no version {version}")
        return model_pb2.ModelVersion.FromString(raw)

    def names(self) -> list[str]:
        return [n.decode() for n in self.r.zrange(keys.MODELS, 0, -1)]

    def versions(self, name: str) -> list[model_pb2.ModelVersion]:
        raw = self.r.hgetall(keys.model(name))
        return [model_pb2.ModelVersion.FromString(v)
                for _, v in sorted(raw.items(), key=lambda kv: int(kv[0]))]
