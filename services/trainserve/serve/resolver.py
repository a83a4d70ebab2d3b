"""Endpoint resolution: the name an OIP client calls -> the model version behind it.

The records live in Redis (`trainserve.store.deployments`, `trainserve.store.models`). A
resolution is cached for `ttl_s` (1 s by default) so that a request does not cost two Redis
round trips, while a re-deploy still takes effect within about a second.

During a rollout an endpoint has two versions: once the canary is loaded (its state READY),
each request goes to it with probability `canary_percent` / 100, else to the stable one.

With a `caller` (inference auth on), an endpoint another user owns resolves exactly as an
unknown one (NotFound, same message, whatever state it is in), so that a token neither
reaches nor learns of endpoints that are not its owner's.
"""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from trainserve.core.errors import ModelNotReady, NotFound, TrainserveError, Unavailable
from trainserve.serve.dataplane import CLASS_NAME, ModelSignature, TensorSpec
from trainserve.serve.task_io import task_rules

CANARY_READY = 2  # trainserve.v1.DEPLOYMENT_STATE_READY (no generated code imported here)


class DeploymentGetter(Protocol):
    def get(self, name: str) -> Any: ...  # -> trainserve.v1.Deployment, raises NotFound


class ModelGetter(Protocol):
    def get(self, name: str, version: int = 0) -> Any: ...  # -> trainserve.v1.ModelVersion


class Caller(Protocol):
    """Who asks (`serve.auth.Grant`): whether it may call endpoint `name` owned by `owner`."""
    def may_use(self, name: str, owner: str) -> bool: ...


def not_deployed(name: str) -> NotFound:
    """The answer for an unknown endpoint, and for one the caller may not see."""
    return NotFound(f"model {name!r} is not deployed")


@dataclass(frozen=True)
class Route:
    """What a name resolves to: the stable endpoint and, in a rollout, the canary."""
    stable: Endpoint
    canary: Endpoint | None = None
    canary_percent: int = 0
    canary_ready: bool = False  # loaded: it may take traffic

    def pick(self, draw: Callable[[], float] = random.random) -> Endpoint:
        if self.canary_ready and draw() * 100 < self.canary_percent:
            return self.canary
        return self.stable


@dataclass(frozen=True)
class Batching:
    """An endpoint's dynamic batching (`ServingOptions`); `max_batch_size` <= 1: off."""
    max_batch_size: int = 0
    wait_ms: float = 2.0

    @property
    def enabled(self) -> bool:
        return self.max_batch_size > 1

    @classmethod
    def of(cls, options) -> "Batching":
        wait = options.batch_wait_ms if options.HasField("batch_wait_ms") else cls.wait_ms
        return cls(int(options.max_batch_size), float(wait))


@dataclass(frozen=True)
class Endpoint:
    name: str
    model_name: str
    version: int
    artifact_dir: str
    signature: ModelSignature
    batching: Batching = Batching()

    @property
    def model_id(self) -> str:
        """The multiplexing key of the model host."""
        return f"{self.model_name}:{self.version}"


@dataclass(frozen=True)
class Resolution:
    """A cached lookup: the owner (None when no deployment record was read) and the route
    or the domain error to answer with."""
    owner: str | None
    result: Route | TrainserveError


class EndpointResolver:
    """Resolves endpoint names through the deployment and model records, with a short cache."""

    def __init__(self, deployments: DeploymentGetter, models: ModelGetter, storage_dir: str = "",
                 ttl_s: float = 1.0, max_batch_size: int = 1024,
                 clock: Callable[[], float] = time.monotonic,
                 draw: Callable[[], float] = random.random):
        self._deployments, self._models = deployments, models
        self._storage_dir = storage_dir
        self._ttl_s, self._max_batch = ttl_s, max_batch_size
        self._clock, self._draw = clock, draw
        self._cache: dict[str, tuple[float, Resolution]] = {}

    async def resolve(self, name: str, fresh: bool = False, canary: bool | None = None,
                      caller: Caller | None = None) -> Endpoint:
        """The endpoint `name` (during a rollout the canary for its share of the calls;
        `canary` True / False asks for one side); raises NotFound (also when `caller` may
        not use it), ModelNotReady or Unavailable. `caller` None: no owner check."""
        route = await self.route(name, fresh, caller)
        if canary is None:
            return route.pick(self._draw)
        if canary and route.canary is None:
            raise NotFound(f"endpoint {name!r} has no canary being rolled out")
        return route.canary if canary else route.stable

    async def route(self, name: str, fresh: bool = False, caller: Caller | None = None
                    ) -> Route:
        hit = None if fresh else self._cache.get(name)
        if hit is None or hit[0] <= self._clock():
            hit = (self._clock() + self._ttl_s, await asyncio.to_thread(self._resolution, name))
            if not isinstance(hit[1].result, Unavailable):  # an outage must not outlive itself
                self._cache[name] = hit
            if len(self._cache) > 10_000:  # names are client-chosen: bound the memory
                self._cache.clear()
        found = hit[1]
        # Before any other answer: a state (not ready, ...) would tell the endpoint exists.
        if caller is not None and found.owner is not None and not caller.may_use(name,
                                                                                   found.owner):
            raise not_deployed(name)
        if isinstance(found.result, TrainserveError):
            raise found.result
        return found.result

    def _resolution(self, name: str) -> Resolution:
        try:
            dep = self._deployments.get(name)
        except NotFound:
            return Resolution(None, not_deployed(name))
        except TrainserveError as exc:
            return Resolution(None, exc)
        except Exception as exc:  # redis-py errors: the store is unreachable
            return Resolution(None, Unavailable(f"cannot read the deployment of {name!r}: "
                                                f"{exc}"))
        return Resolution(dep.user, self._lookup(name, dep))

    def _lookup(self, name: str, dep: Any) -> Route | TrainserveError:
        """The route of deployment record `dep`, or the domain error to answer with (both
        are cached)."""
        batching = Batching.of(dep.options)
        stable = self._endpoint(name, dep.model_name, dep.model_version, batching)
        if isinstance(stable, TrainserveError):
            return stable
        if not dep.canary_version:
            return Route(stable)
        canary = self._endpoint(name, dep.model_name, dep.canary_version, batching)
        if isinstance(canary, TrainserveError):
            return Route(stable)  # a canary that cannot serve gets no traffic
        return Route(stable, canary, int(dep.canary_percent), dep.canary_state == CANARY_READY)

    def _endpoint(self, name: str, model: str, version: int,
                  batching: Batching) -> Endpoint | TrainserveError:
        try:
            mv = self._models.get(model, version)
        except NotFound:
            return ModelNotReady(f"endpoint {name!r} points at {model}:{version}, which is "
                                 f"not registered")
        except TrainserveError as exc:
            return exc
        except Exception as exc:
            return Unavailable(f"cannot read model {model}:{version}: {exc}")
        try:
            sig = signature_of(mv, self._max_batch)
        except TrainserveError as exc:
            return exc
        return Endpoint(name, mv.name, int(mv.version), self.artifact_dir(mv.artifact_uri), sig,
                        batching)

    def artifact_dir(self, uri: str) -> str:
        """A filesystem path from an `artifact_uri`; relative ones lie under the storage dir."""
        path = Path(uri.removeprefix("file://"))
        if not path.is_absolute() and self._storage_dir:
            path = Path(self._storage_dir) / path
        return str(path)


def signature_of(mv: Any, max_batch_size: int = 1024) -> ModelSignature:
    """The signature a `trainserve.v1.ModelVersion` record describes.

    Classifiers that know their class names also answer `class_name` (BYTES [-1]); the
    task's request forms, parameters and value checks come from `task_io.task_rules`.
    """
    if not mv.inputs or not mv.outputs:
        raise ModelNotReady(f"model {mv.name}:{mv.version} has no input/output spec")
    inputs = tuple(TensorSpec(t.name, t.datatype, tuple(t.shape)) for t in mv.inputs)
    outputs = [TensorSpec(t.name, t.datatype, tuple(t.shape), t.optional) for t in mv.outputs]
    if mv.task == "classification" and mv.class_names:
        outputs.append(TensorSpec(CLASS_NAME, "BYTES", (-1,)))
    rules = task_rules(mv.task, [t.name for t in inputs], list(mv.class_names))
    return ModelSignature(inputs, tuple(outputs), max_batch_size, rules.forms, rules.parameters,
                          rules.check)
