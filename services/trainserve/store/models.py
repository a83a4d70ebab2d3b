"""Registered model versions: `ts:model:<name>` hash of version → serialized ModelVersion.

Registration is exactly-once per job: `ts:model-by-job:<job_id>` remembers the version a job
got, so a job re-run after a crash re-uses it instead of registering a duplicate.

The record of a version never changes once written; what users change about it lives beside
it: `ts:model-alias:<name>` (alias → version: an alias names one version at a time, so moving
it is one write) and `ts:model-tags:<name>:<version>` (its tags). Setting an alias or a tag
checks in the same script that the version is still there, and deleting a version removes
its aliases and tags in the same script, so none ever names a deleted version.
"""
from __future__ import annotations

import redis

from trainserve.core.errors import NotFound, ResourceExhausted
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

# KEYS: the model's hash, its alias hash. ARGV: alias, version, the most aliases a model has.
# Returns 1 when set, 0 when the version is not there, -1 when the model has the most aliases.
_SET_ALIAS = """
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0
    and redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[3]) then return -1 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""

# KEYS: the model's hash, the version's tag hash. ARGV: version, the most tags, the number of
# keys to remove, those keys, then key/value pairs to set. Returns 1 when done, 0 when the
# version is not there, {-1, n} when the version would carry n tags, more than the most.
_UPDATE_TAGS = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
local n_remove = tonumber(ARGV[3])
for i = 4, 3 + n_remove do redis.call('HDEL', KEYS[2], ARGV[i]) end
local count = redis.call('HLEN', KEYS[2])
for i = 4 + n_remove, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 0 then count = count + 1 end
end
if count > tonumber(ARGV[2]) then return {-1, count} end
for i = 4 + n_remove, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
return 1
"""

# KEYS: the model's hash, its alias hash, the version's tag hash, the model names. ARGV: the
# name, the version. Returns the removed record (false if none). The model's last version
# takes its name off the list of models (its version counter stays: numbers never repeat).
_DELETE_VERSION = """
local raw = redis.call('HGET', KEYS[1], ARGV[2])
if not raw then return false end
redis.call('HDEL', KEYS[1], ARGV[2])
local aliases = redis.call('HGETALL', KEYS[2])
for i = 1, #aliases, 2 do
  if aliases[i + 1] == ARGV[2] then redis.call('HDEL', KEYS[2], aliases[i]) end
end
redis.call('DEL', KEYS[3])
if redis.call('HLEN', KEYS[1]) == 0 then redis.call('ZREM', KEYS[4], ARGV[1]) end
return raw
"""


class ModelStore:
    def __init__(self, client: redis.Redis):
        self.r = client
        self._allocate = client.register_script(_ALLOCATE)
        self._set_alias = client.register_script(_SET_ALIAS)
        self._update_tags = client.register_script(_UPDATE_TAGS)
        self._delete_version = client.register_script(_DELETE_VERSION)

    def allocate_version(self, name: str, job_id: str) -> int:
        """The version number this job's model gets (the same one on every call)."""
        touched = [keys.model_by_job(job_id), keys.model_seq(name), keys.MODELS]
        return int(self._allocate(keys=touched, args=[name]))

    def version_of_job(self, job_id: str) -> int:
        """The version registered for `job_id` (0: none)."""
        got = self.r.get(keys.model_by_job(job_id))
        return int(got) if got is not None else 0

    def put(self, mv: model_pb2.ModelVersion) -> None:
        record = model_pb2.ModelVersion()
        record.CopyFrom(mv)
        record.ClearField("aliases")  # kept beside the record, not in it
        record.ClearField("tags")
        self.r.hset(keys.model(mv.name), str(mv.version), record.SerializeToString())

    def get(self, name: str, version: int = 0) -> model_pb2.ModelVersion:
        """A version of `name` (0: the latest) as registered, without aliases and tags (what
        the inference gateway and the dispatcher read)."""
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

    def annotated(self, name: str, version: int = 0) -> model_pb2.ModelVersion:
        """`get`, with the version's aliases and tags (what the model API answers)."""
        return self._annotate([self.get(name, version)])[0]

    def names(self) -> list[str]:
        return [n.decode() for n in self.r.zrange(keys.MODELS, 0, -1)]

    def versions(self, name: str) -> list[model_pb2.ModelVersion]:
        """Every version of `name` as registered, oldest first."""
        raw = self.r.hgetall(keys.model(name))
        return [model_pb2.ModelVersion.FromString(v)
                for _, v in sorted(raw.items(), key=lambda kv: int(kv[0]))]

    def annotated_versions(self, name: str) -> list[model_pb2.ModelVersion]:
        """`versions`, with their aliases and tags."""
        return self._annotate(self.versions(name))

    def exists(self, name: str, version: int) -> bool:
        return bool(self.r.hexists(keys.model(name), str(version)))

    # -- aliases --------------------------------------------------------------------------------

    def aliases(self, name: str) -> dict[str, int]:
        """alias -> version of model `name`."""
        return {a.decode(): int(v) for a, v in self.r.hgetall(keys.model_aliases(name)).items()}

    def alias_version(self, name: str, alias: str) -> int | None:
        got = self.r.hget(keys.model_aliases(name), alias)
        return int(got) if got is not None else None

    def set_alias(self, name: str, alias: str, version: int, max_aliases: int) -> None:
        """Point `alias` at `version` (off any other version); NotFound if the version is not
        there, ResourceExhausted if the model has `max_aliases` others already."""
        done = self._set_alias(keys=[keys.model(name), keys.model_aliases(name)],
                               args=[alias, str(version), str(max_aliases)])
        if done == 0:
            raise NotFound(f"model {name!r} has no version {version}")
        if done == -1:
            raise ResourceExhausted(f"model {name!r} has {max_aliases} aliases, the most a "
                                    "model may have; delete one first")

    def delete_alias(self, name: str, alias: str) -> int | None:
        """Remove `alias`; the version it named (None: there was no such alias)."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hget(keys.model_aliases(name), alias)
        pipe.hdel(keys.model_aliases(name), alias)
        got, _ = pipe.execute()
        return int(got) if got is not None else None

    # -- tags -----------------------------------------------------------------------------------

    def tags(self, name: str, version: int) -> dict[str, str]:
        raw = self.r.hgetall(keys.model_tags(name, version))
        return {k.decode(): v.decode() for k, v in raw.items()}

    def update_tags(self, name: str, version: int, set_: dict[str, str], remove: list[str],
                    max_tags: int) -> None:
        """Remove `remove`, then set `set_`, in one step; NotFound if the version is not there,
        ResourceExhausted if it would carry more than `max_tags`."""
        args = [str(version), str(max_tags), str(len(remove)), *remove]
        for key, value in set_.items():
            args += [key, value]
        done = self._update_tags(keys=[keys.model(name), keys.model_tags(name, version)],
                                 args=args)
        if done == 0:
            raise NotFound(f"model {name!r} has no version {version}")
        if isinstance(done, list):
            raise ResourceExhausted(f"{name}:{version} would carry {done[1]} tags, more than "
                                    f"a version may ({max_tags}); remove some first")

    # -- deletion -------------------------------------------------------------------------------

    def delete_version(self, name: str, version: int) -> model_pb2.ModelVersion:
        """Remove the version's record, the aliases naming it and its tags, at once; return
        the record (NotFound if it is not there)."""
        raw = self._delete_version(
            keys=[keys.model(name), keys.model_aliases(name), keys.model_tags(name, version),
                  keys.MODELS], args=[name, str(version)])
        if raw is None:
            raise NotFound(f"model {name!r} has no version {version}")
        return model_pb2.ModelVersion.FromString(raw)

    def _annotate(self, versions: list[model_pb2.ModelVersion]
                  ) -> list[model_pb2.ModelVersion]:
        """`versions` (of one model or several) with their aliases and tags filled in."""
        if not versions:
            return versions
        names = sorted({mv.name for mv in versions})
        pipe = self.r.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(keys.model_aliases(name))
        for mv in versions:
            pipe.hgetall(keys.model_tags(mv.name, mv.version))
        got = pipe.execute()
        by_version: dict[tuple[str, int], list[str]] = {}
        for name, aliases in zip(names, got):
            for alias, version in aliases.items():
                by_version.setdefault((name, int(version)), []).append(alias.decode())
        for mv, tags in zip(versions, got[len(names):]):
            mv.aliases[:] = sorted(by_version.get((mv.name, mv.version), []))
            mv.tags.clear()
            mv.tags.update({k.decode(): v.decode() for k, v in tags.items()})
        return versions
