"""ModelService and DeploymentService cores, transport-neutral."""
from __future__ import annotations

import shutil
import time

import redis

from trainserve.core.errors import FailedPrecondition, InvalidArgument, NotFound
from trainserve.core.modelrefs import (LATEST, MAX_ALIASES, MAX_TAGS, check_alias, check_tags,
                                       check_version_or_alias)
from trainserve.core.spec import check_name
from trainserve.core.pb import deployment_pb2, model_pb2
from trainserve.serve.config import endpoint_addresses
from trainserve.registry.versions import model_dir
from trainserve.store.deployments import DeploymentStore
from trainserve.store.jobs import JobStore
from trainserve.store.models import ModelStore
from trainserve.store.names import DEPLOYMENT, NameClaims
from trainserve.core.tenancy import Principal, check_visible, claim, visible

PENDING = deployment_pb2.DEPLOYMENT_STATE_PENDING
READY = deployment_pb2.DEPLOYMENT_STATE_READY
DEFAULT_CANARY_PERCENT = 10
# The field paths naming a model version in DeployRequest and RolloutRequest.
MODEL_FIELDS = ("model_name", "model_version", "model_alias")


MAX_BATCH_SIZE_LIMIT = 4096
MAX_BATCH_WAIT_MS = 1000.0


def serving_options_of(deploy) -> deployment_pb2.ServingOptions:
    """The endpoint options a job spec's `DeploySpec` asks for."""
    options = deployment_pb2.ServingOptions(max_batch_size=deploy.max_batch_size)
    if deploy.HasField("batch_wait_ms"):
        options.batch_wait_ms = deploy.batch_wait_ms
    return options


def check_serving_options(options: deployment_pb2.ServingOptions) -> None:
    """Dynamic batching within bounds: `max_batch_size` in [0, 4096], `batch_wait_ms` in
    [0, 1000]."""
    if not 0 <= options.max_batch_size <= MAX_BATCH_SIZE_LIMIT:
        raise InvalidArgument(f"must be in [0, {MAX_BATCH_SIZE_LIMIT}] (0 or 1: no batching), "
                              f"got {options.max_batch_size}", field="options.max_batch_size")
    if options.HasField("batch_wait_ms") and not (
            0 <= options.batch_wait_ms <= MAX_BATCH_WAIT_MS):
        raise InvalidArgument(f"must be in [0, {MAX_BATCH_WAIT_MS:g}] milliseconds, got "
                              f"{options.batch_wait_ms:g}", field="options.batch_wait_ms")


class ModelsCore:
    """Model versions, their aliases and tags; a caller sees those of its own jobs
    (`tenancy`). `storage_dir` holds the versions' files (what DeleteModelVersion removes)."""

    def __init__(self, client: redis.Redis, storage_dir: str = ""):
        self.store = ModelStore(client)
        self.deployments = DeploymentStore(client)
        self.jobs = JobStore(client)
        self.storage_dir = storage_dir

    def list(self, name: str, caller: Principal) -> list[model_pb2.ModelVersion]:
        names = [name] if name else self.store.names()
        return [mv for n in names for mv in self.store.annotated_versions(n)
                if visible(mv.user, caller)]

    def get(self, name: str, version: int, caller: Principal, alias: str = ""
            ) -> model_pb2.ModelVersion:
        """`name`:`version` (0: the latest) or `name`@`alias` (the version it names now)."""
        return resolve(self.store, name, version, alias, caller)

    def set_alias(self, name: str, alias: str, version: int, caller: Principal
                  ) -> model_pb2.ModelVersion:
        """Point `alias` at `name`:`version` (0: the latest now), off the version it named."""
        check_alias(alias)
        mv = resolve(self.store, name, version, "", caller)
        self.store.set_alias(name, alias, mv.version, MAX_ALIASES)
        return self.store.annotated(name, mv.version)

    def delete_alias(self, name: str, alias: str, caller: Principal
                     ) -> model_pb2.ModelVersion:
        """Remove `alias` of `name`; the version it named (NOT_FOUND if it named none)."""
        check_alias(alias)
        check_model_visible(self.store, name, caller)
        version = self.store.delete_alias(name, alias)
        if version is None:
            raise NotFound(f"model {name!r} has no alias {alias!r}")
        return self.store.annotated(name, version)

    def update_tags(self, name: str, version: int, alias: str, set_: dict[str, str],
                    remove: list[str], caller: Principal) -> model_pb2.ModelVersion:
        """Remove the tags `remove`, then set `set_`, on one version."""
        check_tags(set_, remove)
        mv = resolve(self.store, name, version, alias, caller)
        self.store.update_tags(name, mv.version, dict(set_), list(remove), MAX_TAGS)
        return self.store.annotated(name, mv.version)

    def delete_version(self, name: str, version: int, caller: Principal
                       ) -> model_pb2.ModelVersion:
        """Remove `name`:`version`: its record, aliases and tags, then its files. Refused while
        an endpoint serves it (as its version or a rollout's canary) or a queued or running
        job starts from its weights (`model.transfer`)."""
        if not name:
            raise InvalidArgument("required", field="name")
        if version <= 0:
            raise InvalidArgument("give the version to delete (a number >= 1)",
                                  field="version")
        mv = visible_model(self.store, name, version, caller)
        self._check_unused(mv, caller)
        self.store.delete_version(name, version)
        if self.storage_dir:  # the record is gone first: nothing names a half-removed folder
            shutil.rmtree(model_dir(self.storage_dir, name, version), ignore_errors=True)
        return mv  # as it was, with the aliases and tags it had

    def _check_unused(self, mv: model_pb2.ModelVersion, caller: Principal) -> None:
        ref = f"{mv.name}:{mv.version}"
        for dep in self.deployments.list():
            if dep.model_name != mv.name or mv.version not in (dep.model_version,
                                                                dep.canary_version):
                continue
            how = "as its rollout's canary" if dep.canary_version == mv.version else ""
            raise FailedPrecondition(
                f"{ref} is served by endpoint {dep.name!r} {how}".rstrip()
                + f"; undeploy it (or roll it back, or deploy another version) first")
        for job in self.jobs.unfinished():
            transfer = job.spec.model.transfer
            if transfer.artifact_path and transfer.artifact_path == mv.artifact_uri:
                who = f"job {job.id}" if visible(job.user, caller) else "a job of another user"
                raise FailedPrecondition(f"{ref}: {who} starts from its weights and has not "
                                         "finished; wait for it or cancel it first")


def resolve(store: ModelStore, name: str, version: int, alias: str, caller: Principal,
            fields: tuple[str, str, str] = ("name", "version", "alias")
            ) -> model_pb2.ModelVersion:
    """The version a request names: `name`:`version` (0: the latest) or `name`@`alias`, as it
    is now; NOT_FOUND for a model of another user, whose aliases are never looked at.
    `fields` are the request's field paths for the name, the version and the alias."""
    name_field, version_field, alias_field = fields
    if not name:
        raise InvalidArgument("required", field=name_field)
    check_version_or_alias(version, alias, version_field, alias_field)
    if not alias or alias == LATEST:
        return visible_model(store, name, version, caller)
    check_model_visible(store, name, caller)
    target = store.alias_version(name, alias)
    if target is None:
        raise NotFound(f"model {name!r} has no alias {alias!r}")
    return visible_model(store, name, target, caller)


def check_model_visible(store: ModelStore, name: str, caller: Principal) -> None:
    """NOT_FOUND unless model `name` has a version `caller` may see."""
    if not name:
        raise InvalidArgument("required", field="name")
    visible_model(store, name, 0, caller)


def visible_model(store: ModelStore, name: str, version: int, caller: Principal
                  ) -> model_pb2.ModelVersion:
    """`name:version` (0: the latest) with its aliases and tags, NotFound for a model of
    another user."""
    mv = store.annotated(name, version)
    check_visible(mv.user, caller, f"model {name!r} not found")
    return mv


class DeploymentsCore:
    """Deploy records the endpoint and asks the dispatcher to load it onto Serve."""

    def __init__(self, client: redis.Redis, serve_http: str = "127.0.0.1:8000",
                 serve_grpc: str = "127.0.0.1:9000"):
        self.models = ModelStore(client)
        self.store = DeploymentStore(client)
        self.names = NameClaims(client)
        self.serve_http, self.serve_grpc = serve_http, serve_grpc

    def deploy(self, name: str, model_name: str, version: int,
               options: deployment_pb2.ServingOptions | None, caller: Principal,
               alias: str = "") -> deployment_pb2.Deployment:
        """Record endpoint `name` -> `model_name:version` (0: the latest; or the version
        `alias` names now) with its serving `options` (dynamic batching) and queue its
        loading. The endpoint belongs to the model's owner, who must hold (or now claims) the
        endpoint name: a name another user holds is refused ALREADY_EXISTS, an admin's call
        included."""
        if not model_name:
            raise InvalidArgument("required", field="model_name")
        name = name or model_name
        check_name(name, "name")
        check_version_or_alias(version, alias, *MODEL_FIELDS[1:])
        if options is not None:
            check_serving_options(options)
        mv = resolve(self.models, model_name, version, alias, caller, MODEL_FIELDS)
        claim(self.names, [(DEPLOYMENT, name, "name")], mv.user)
        rest_url, grpc_target = endpoint_addresses(self.serve_http, self.serve_grpc, name)
        dep = deployment_pb2.Deployment(
            name=name, model_name=mv.name, model_version=mv.version, state=PENDING,
            message="loading", rest_url=rest_url, grpc_target=grpc_target, options=options,
            user=mv.user)
        dep.created_at.FromNanoseconds(int(time.time() * 1e9))
        self.store.put(dep, enqueue=True)
        return dep

    def undeploy(self, name: str, caller: Principal) -> deployment_pb2.Deployment:
        self.get(name, caller)
        return self.store.delete(name)

    def get(self, name: str, caller: Principal) -> deployment_pb2.Deployment:
        if not name:
            raise InvalidArgument("required", field="name")
        dep = self.store.get(name)
        check_visible(dep.user, caller, f"deployment {name!r} not found")
        return dep

    def list(self, caller: Principal) -> list[deployment_pb2.Deployment]:
        return [d for d in self.store.list() if visible(d.user, caller)]

    # --- rollouts: a canary version takes a share of the traffic until promoted or dropped --

    def rollout(self, name: str, model_name: str, version: int, percent: int | None,
                caller: Principal, alias: str = "") -> deployment_pb2.Deployment:
        """Start a rollout of `model_name:version` ("", 0: the endpoint's model, its latest
        version; or the version `alias` names now) on endpoint `name`, or re-weight the one in
        progress. The canary takes no traffic until the dispatcher has loaded it
        (`canary_state` READY). The endpoint must be one `caller` may see and the version its
        owner's (NOT_FOUND otherwise)."""
        dep = self.get(name, caller)
        if model_name and model_name != dep.model_name:
            raise InvalidArgument(f"endpoint {name!r} serves model {dep.model_name!r}; a rollout "
                                  f"moves it between versions of that model (deploy "
                                  f"{model_name!r} under its own name)", field="model_name")
        check_version_or_alias(version, alias, *MODEL_FIELDS[1:])
        percent = DEFAULT_CANARY_PERCENT if percent is None else percent
        if not 1 <= percent <= 100:
            raise InvalidArgument(f"must be in [1, 100], got {percent}", field="canary_percent")
        mv = resolve(self.models, dep.model_name, version, alias, caller, MODEL_FIELDS)
        if mv.user != dep.user:  # cannot happen while names are claimed; never serve it
            raise NotFound(f"model {dep.model_name!r} has no version {mv.version} of the "
                           f"endpoint's owner")
        if mv.version == dep.model_version:
            raise InvalidArgument(f"endpoint {name!r} already serves {mv.name}:{mv.version}",
                                  field="model_version")
        fresh = dep.canary_version != mv.version
        dep.canary_version, dep.canary_percent = mv.version, percent
        if fresh:
            dep.canary_state = PENDING
        self.store.put(dep, enqueue=fresh)
        return dep

    def promote(self, name: str, caller: Principal) -> deployment_pb2.Deployment:
        """The canary becomes the endpoint's version (it is loaded: the switch is instant)."""
        dep = self._in_rollout(name, caller)
        if dep.canary_state != READY:
            raise FailedPrecondition(f"the canary {dep.model_name}:{dep.canary_version} of "
                                     f"{name!r} is not loaded yet ({dep.message or 'pending'}); "
                                     f"promote it once it is READY, or roll it back")
        dep.model_version, dep.state, dep.message = dep.canary_version, READY, "ready"
        return self._end_rollout(dep)

    def rollback(self, name: str, caller: Principal) -> deployment_pb2.Deployment:
        """Drop the canary: every request goes to the endpoint's version again."""
        return self._end_rollout(self._in_rollout(name, caller))

    def _in_rollout(self, name: str, caller: Principal) -> deployment_pb2.Deployment:
        dep = self.get(name, caller)
        if not dep.canary_version:
            raise FailedPrecondition(f"endpoint {name!r} has no rollout in progress")
        return dep

    def _end_rollout(self, dep: deployment_pb2.Deployment) -> deployment_pb2.Deployment:
        for field in ("canary_version", "canary_percent", "canary_state"):
            dep.ClearField(field)
        self.store.put(dep)
        return dep
