"""Endpoint records: `ts:deployment:<name>` (serialized Deployment) and the `ts:deployments`
set; `ts:deploy-queue` carries deploy requests to the dispatcher, which loads the model."""
from __future__ import annotations

import time

from trainserve.core.pb import deployment_pb2
from trainserve.store import keys
from trainserve.store.records import NamedRecords


class DeploymentStore(NamedRecords):
    kind = keys.DEPLOYMENT
    message_type = deployment_pb2.Deployment

    def put(self, dep: deployment_pb2.Deployment, enqueue: bool = False) -> None:
        """Record `dep` (stamping `updated_at`); with `enqueue`, ask the dispatcher to load it
        in the same transaction."""
        dep.updated_at.FromNanoseconds(int(time.time() * 1e9))
        pipe = self.r.pipeline(transaction=True)
        super().put(dep, pipe)
        if enqueue:
            pipe.xadd(keys.DEPLOY_QUEUE, {"name": dep.name}, maxlen=10000, approximate=True)
        pipe.execute()
