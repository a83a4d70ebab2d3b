"""Deploy reconciler: loads each requested endpoint's model onto Serve and records the result."""
from __future__ import annotations

import logging
import threading

import redis

from trainserve import errors
from trainserve.pb import deployment_pb2
from trainserve.store.deployments import DEPLOY_QUEUE, DeploymentStore
from trainserve.store.redis import ensure_group

log = logging.getLogger("trainserve.dispatch")
GROUP = "deployers"
PENDING = deployment_pb2.DEPLOYMENT_STATE_PENDING


class Deployer:
    def __init__(self, client: redis.Redis, store: DeploymentStore, consumer: str):
        self.r = client
        self.store = store
        self.consumer = consumer
        ensure_group(client, DEPLOY_QUEUE, GROUP)

    def run(self, stop: threading.Event) -> None:
        # Whatever was left pending by a previous dispatcher first.
        for dep in self.store.list():
            if dep.state == PENDING:
                self.reconcile(dep.name)
        while not stop.is_set():
            got = self.r.xreadgroup(GROUP, self.consumer, {DEPLOY_QUEUE: ">"}, count=10,
                                    block=1000)
            for eid, fields in (got[0][1] if got else []):
                self.reconcile(fields[b"name"].decode())
                self.r.xack(DEPLOY_QUEUE, GROUP, eid)

    def reconcile(self, name: str) -> None:
        from trainserve.serve.control import warm

        try:
            dep = self.store.get(name)
        except errors.NotFound:
            return  # undeployed meanwhile
        try:
            warm(name)
            dep.state, dep.message = deployment_pb2.DEPLOYMENT_STATE_READY, "ready"
        except Exception as exc:  # noqa: BLE001 - recorded for the user to see
            log.warning("deploy %s failed: %s", name, exc)
            dep.state = deployment_pb2.DEPLOYMENT_STATE_FAILED
            dep.message = getattr(exc, "message", None) or str(exc)
        try:
            current = self.store.get(name)
        except errors.NotFound:
            return
        if (current.model_name, current.model_version) == (dep.model_name, dep.model_version):
            self.store.put(dep)
