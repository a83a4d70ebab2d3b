"""Endpoint records: `ts:deployment:<name>` (serialized Deployment) and the `ts:deployments`
set; `ts:deploy-queue` carries deploy requests to the dispatcher, which loads the model."""
from __future__ import annotations

import time

import redis

from trainserve.errors import NotFound
from trainserve.pb import deployment_pb2
from trainserve.store.redis import PREFIX

DEPLOY_QUEUE = PREFIX + "deploy-queue"


def _key(name: str) -> str:
    return f"{PREFIX}deployment:{name}"


class DeploymentStore:
    def __init__(self, client: redis.Redis):
        self.r = client

    def get(self, name: str) -> deployment_pb2.Deployment:
        raw = self.r.get(_key(name)) if name else None
        if raw is None:
            raise NotFound(f"deployment {name!r} not found")
        return deployment_pb2.Deployment.FromString(raw)

    def put(self, dep: deployment_pb2.Deployment, enqueue: bool = False) -> None:
        dep.updated_at.FromNanoseconds(int(time.time() * 1e9))
        pipe = self.r.pipeline(transaction=True)
        pipe.set(_key(dep.name), dep.SerializeToString())
        pipe.sadd(f"{PREFIX}deployments", dep.name)
        if enqueue:
            pipe.xadd(DEPLOY_QUEUE, {"name": dep.name}, maxlen=10000, approximate=True)
        pipe.execute()

    def delete(self, name: str) -> deployment_pb2.Deployment:
        dep = self.get(name)
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(_key(name))
        pipe.srem(f"{PREFIX}deployments", name)
        pipe.execute()
        return dep

    def list(self) -> list[deployment_pb2.Deployment]:
        names = sorted(n.decode() for n in self.r.smembers(f"{PREFIX}deployments"))
        out = []
        for name in names:
            raw = self.r.get(_key(name))
            if raw is not None:
                out.append(deployment_pb2.Deployment.FromString(raw))
        return out
