"""Deploy reconciler: loads each requested endpoint's model onto Serve and records the result."""
from __future__ import annotations

import logging
import threading

import redis

from trainserve.core import errors
from trainserve.core.pb import deployment_pb2
from trainserve.store.deployments import DeploymentStore
from trainserve.store.keys import DEPLOY_QUEUE
from trainserve.store.redis import ensure_group

log = logging.getLogger("trainserve.dispatch")
GROUP = "deployers"
PENDING = deployment_pb2.DEPLOYMENT_STATE_PENDING
READY = deployment_pb2.DEPLOYMENT_STATE_READY


class Deployer:
    def __init__(self, client: redis.Redis, store: DeploymentStore, consumer: str):
        self.r = client
        self.store = store
        self.consumer = consumer
        ensure_group(client, DEPLOY_QUEUE, GROUP)

    def run(self, stop: threading.Event) -> None:
        # Whatever was left pending by a previous dispatcher first.
        for dep in self.store.list():
            if PENDING in (dep.state, dep.canary_state):
                self.reconcile(dep.name)
        while not stop.is_set():
            got = self.r.xreadgroup(GROUP, self.consumer, {DEPLOY_QUEUE: ">"}, count=10,
                                    block=1000)
            for eid, fields in (got[0][1] if got else []):
                self.reconcile(fields[b"name"].decode())
                self.r.xack(DEPLOY_QUEUE, GROUP, eid)

    def reconcile(self, name: str) -> None:
        """Load what endpoint `name` waits for (its version, a rollout's canary, or both)
        and record how that went, unless the record moved on meanwhile."""
        try:
            dep = self.store.get(name)
        except errors.NotFound:
            return  # undeployed meanwhile
        if dep.state != READY:
            dep.state, dep.message = _load(name, canary=False)
        if dep.canary_version and dep.canary_state == PENDING:
            dep.canary_state, message = _load(name, canary=True)
            if dep.canary_state != READY:
                dep.message = f"canary {dep.model_name}:{dep.canary_version}: {message}"
        try:
            current = self.store.get(name)
        except errors.NotFound:
            return
        if _key(current) == _key(dep):
            self.store.put(dep)


def _load(name: str, canary: bool) -> tuple[int, str]:
    """(READY, "ready") once loaded, else (FAILED, why)."""
    from trainserve.serve.control import warm
    try:
        warm(name, canary=canary)
        return READY, "ready"
    except Exception as exc:  # noqa: BLE001 - recorded for the user to see
        log.warning("loading %s%s failed: %s", name, " (canary)" if canary else "", exc)
        return deployment_pb2.DEPLOYMENT_STATE_FAILED, getattr(exc, "message", None) or str(exc)


def _key(dep: deployment_pb2.Deployment) -> tuple:
    return dep.model_name, dep.model_version, dep.canary_version
