"""ModelService and DeploymentService cores, transport-neutral."""
from __future__ import annotations

import time

import redis

from trainserve.errors import InvalidArgument
from trainserve.jobs.spec import check_name
from trainserve.pb import deployment_pb2, model_pb2
from trainserve.serve.config import endpoint_addresses
from trainserve.store.deployments import DeploymentStore
from trainserve.store.models import ModelStore

PENDING = deployment_pb2.DEPLOYMENT_STATE_PENDING


class ModelsCore:
    def __init__(self, client: redis.Redis):
        self.store = ModelStore(client)

    def list(self, name: str = "") -> list[model_pb2.ModelVersion]:
        names = [name] if name else self.store.names()
        return [mv for n in names for mv in self.store.versions(n)]

    def get(self, name: str, version: int = 0) -> model_pb2.ModelVersion:
        if not name:
            raise InvalidArgument("required", field="name")
        if version < 0:
            raise InvalidArgument("must be >= 0 (0 is the latest)", field="version")
        return self.store.get(name, version)


class DeploymentsCore:
    """Deploy records the endpoint and asks the dispatcher to load it onto Serve."""

    def __init__(self, client: redis.Redis, serve_http: str = "127.0.0.1:8000",
                 serve_grpc: str = "127.0.0.1:9000"):
        self.models = ModelStore(client)
        self.store = DeploymentStore(client)
        self.serve_http, self.serve_grpc = serve_http, serve_grpc

    def deploy(self, name: str, model_name: str, version: int = 0) -> deployment_pb2.Deployment:
        if not model_name:
            raise InvalidArgument("required", field="model_name")
        name = name or model_name
        check_name(name, "name")
        if version < 0:
            raise InvalidArgument("must be >= 0 (0 is the latest)", field="model_version")
        mv = self.models.get(model_name, version)
        rest_url, grpc_target = endpoint_addresses(self.serve_http, self.serve_grpc, name)
        dep = deployment_pb2.Deployment(
            name=name, model_name=mv.name, model_version=mv.version, state=PENDING,
            message="loading", rest_url=rest_url, grpc_target=grpc_target)
        dep.created_at.FromNanoseconds(int(time.time() * 1e9))
        self.store.put(dep, enqueue=True)
        return dep

    def undeploy(self, name: str) -> deployment_pb2.Deployment:
        if not name:
            raise InvalidArgument("required", field="name")
        return self.store.delete(name)

    def get(self, name: str) -> deployment_pb2.Deployment:
        if not name:
            raise InvalidArgument("required", field="name")
        return self.store.get(name)

    def list(self) -> list[deployment_pb2.Deployment]:
        return self.store.list()
