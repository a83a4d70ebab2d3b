"""In-memory stand-ins for the serving layer's dependencies, for tests and local tools.

`LocalServing` is an `InferenceService` with everything it needs in this process: deployment
and model records in dicts (the same `get` interface as the Redis stores), artifacts as
in-memory modules, and `LocalBackend` running them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from trainserve.core.errors import NotFound
from trainserve.core.pb import deployment_pb2, model_pb2
from trainserve.serve.host import LocalBackend
from trainserve.serve.resolver import EndpointResolver
from trainserve.serve.service import InferenceService
from trainserve.serve.signature import version_record


class MemoryDeploymentStore:
    """`trainserve.store.deployments.DeploymentStore`'s read/write interface, in a dict."""

    def __init__(self) -> None:
        self._records: dict[str, bytes] = {}
        self.reads = 0

    def put(self, dep: deployment_pb2.Deployment) -> None:
        self._records[dep.name] = dep.SerializeToString()

    def delete(self, name: str) -> None:
        self._records.pop(name, None)

    def get(self, name: str) -> deployment_pb2.Deployment:
        self.reads += 1
        if name not in self._records:
            raise NotFound(f"deployment {name!r} not found")
        return deployment_pb2.Deployment.FromString(self._records[name])


class MemoryModelStore:
    """`trainserve.store.models.ModelStore.get` / `put`, in a dict."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, int], bytes] = {}

    def put(self, mv: model_pb2.ModelVersion) -> None:
        self._records[(mv.name, mv.version)] = mv.SerializeToString()

    def get(self, name: str, version: int = 0) -> model_pb2.ModelVersion:
        versions = [v for (n, v) in self._records if n == name]
        if not versions:
            raise NotFound(f"model {name!r} not found")
        version = version if version > 0 else max(versions)
        if (name, version) not in self._records:
            raise NotFound(f"model {name!r} has no version {version}")
        return model_pb2.ModelVersion.FromString(self._records[(name, version)])


@dataclass
class LoadedArtifact:
    """What `trainserve.training.artifacts.load_artifact` returns: `module` and `meta`."""
    module: torch.nn.Module
    meta: dict


class MemoryArtifacts:
    """An artifact loader over modules held in memory, keyed by artifact directory."""

    def __init__(self) -> None:
        self._artifacts: dict[str, LoadedArtifact] = {}

    def add(self, artifact_dir: str, module: torch.nn.Module, meta: dict) -> None:
        self._artifacts[artifact_dir] = LoadedArtifact(module.eval(), meta)

    def __call__(self, artifact_dir: str) -> LoadedArtifact:
        if artifact_dir not in self._artifacts:
            raise FileNotFoundError(f"no artifact in {artifact_dir}")
        return self._artifacts[artifact_dir]


class LocalServing:
    """An `InferenceService` over in-memory records and artifacts."""

    def __init__(self, ttl_s: float = 1.0, max_batch_size: int = 1024,
                 clock: Callable[[], float] | None = None,
                 loader: Callable[[str], Any] | None = None):
        self.deployments, self.models = MemoryDeploymentStore(), MemoryModelStore()
        self.artifacts = MemoryArtifacts()
        kwargs = {"clock": clock} if clock else {}
        self.resolver = EndpointResolver(self.deployments, self.models, ttl_s=ttl_s,
                                         max_batch_size=max_batch_size, **kwargs)
        self.backend = LocalBackend(loader or self.artifacts)
        self.service = InferenceService(self.resolver, self.backend)

    def register(self, name: str, version: int, module: torch.nn.Module, meta: dict,
                 endpoint: str | None = None, owner: str = "") -> str:
        """Register a model version (and deploy it as `endpoint`, owned by `owner`, if
        given); its directory."""
        artifact_dir = f"/models/{name}/{version}"
        self.artifacts.add(artifact_dir, module, meta)
        self.models.put(version_record(name, version, meta, artifact_dir))
        if endpoint:
            self.deploy(endpoint, name, version, owner)
        return artifact_dir

    def deploy(self, endpoint: str, model_name: str, version: int, owner: str = "") -> None:
        self.deployments.put(deployment_pb2.Deployment(
            name=endpoint, model_name=model_name, model_version=version, user=owner,
            state=deployment_pb2.DEPLOYMENT_STATE_READY))


class RecordingContext:
    """The part of a gRPC servicer context the inference servicer uses: the status it sets."""

    def __init__(self):
        self.code, self.details = None, None

    def set_code(self, code):
        self.code = code

    def set_details(self, details):
        self.details = details
