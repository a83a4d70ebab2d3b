"""Configuration of the serving layer."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

from trainserve.core.ports import free_port_block

APP_NAME = "trainserve"
# Serve's gRPC proxy imports this to learn the service's methods (see its docstring for why
# it is not the generated `add_GRPCInferenceServiceServicer_to_server`).
GRPC_SERVICER = "trainserve.serve.grpc_api.add_inference_servicer"
DEFAULT_LOADER = "trainserve.training.artifacts:load_artifact"
_WILDCARDS = ("0.0.0.0", "::", "")


def endpoint_addresses(http: str, grpc: str, name: str) -> tuple[str, str]:
    """(REST URL, gRPC target) of endpoint `name` for clients, from the `host:port` Serve's
    HTTP and gRPC proxies listen on; a wildcard host is reached as 127.0.0.1."""
    def reachable(address: str) -> str:
        host, _, port = address.rpartition(":")
        return f"{'127.0.0.1' if host in _WILDCARDS else host}:{port}"
    return f"http://{reachable(http)}/v2/models/{name}", reachable(grpc)


# Ports per node for the replicas' own HTTP and gRPC listeners in "throughput" mode.
INGRESS_PORTS = 64
# The default of `ServeConfig.max_request_bytes`: 16 MiB holds a batch of 1024 digits or
# small images as JSON, several times over as binary tensors.
MAX_REQUEST_BYTES = 16 * 1024 * 1024
# The smallest `max_request_bytes` accepted: a floor against a setting that would refuse
# every ordinary request (a unit mistaken, KiB for bytes).
MIN_REQUEST_BYTES = 64 * 1024


# How Ray Serve itself runs, set in the environment of the Ray cluster's processes (Serve reads
# them when it starts). "throughput": HAProxy in front instead of Serve's Python proxies, and
# gRPC between Serve's own components; several times the requests per second of "default"
# on a small machine, at a fraction of its latency (bench/README.md).
SERVE_MODES = ("throughput", "default")


def serve_mode_env(mode: str, run_dir: str | Path, port: Callable[[], int],
                   max_message_bytes: int = MAX_REQUEST_BYTES) -> dict[str, str]:
    """The Ray head's environment for Serve `mode`. HAProxy's files go to a folder of its own
    for `run_dir` and its metrics and stats listeners take ports from `port()` (its defaults,
    /tmp/haproxy-serve and ports 9101 and 8404, would be shared by every cluster on the
    machine).

    In every mode, Serve's gRPC ingress servers (its proxy, or the replicas' own listeners)
    take messages of at most `max_message_bytes` (Serve's own default is 2 GiB, which it
    would hold in memory before the gateway could refuse it)."""
    if mode not in SERVE_MODES:
        raise ValueError(f"serve mode must be one of {', '.join(SERVE_MODES)}, got {mode!r}")
    limits = {"RAY_SERVE_GRPC_MAX_MESSAGE_SIZE": str(max_message_bytes)}
    if mode == "default":
        return limits
    # Short: Serve adds a 56-character node folder, and HAProxy refuses a socket path over
    # 97 characters.
    digest = hashlib.sha1(str(Path(run_dir).absolute()).encode()).hexdigest()[:10]
    base = Path("/tmp") / f"tsh-{digest}"
    http, grpc = free_port_block(INGRESS_PORTS), free_port_block(INGRESS_PORTS)
    return {**limits, "RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1",
            # HAProxy sends requests straight to the replicas, which take ports from these
            # ranges; Serve's default ranges (30000, 40000) are the same for every cluster on
            # the machine, and one cluster's proxy would reach another's replicas.
            "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(http),
            "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(http + INGRESS_PORTS - 1),
            "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": str(grpc),
            "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": str(grpc + INGRESS_PORTS - 1),
            "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(base / "haproxy.cfg"),
            "RAY_SERVE_HAPROXY_SOCKET_PATH": str(base / "admin.sock"),
            "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(base),
            "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(base / "server-state"),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(port()),
            "RAY_SERVE_HAPROXY_STATS_PORT": str(port())}


# Older names of the replica fields, still accepted by `parse_option` (the dispatcher's
# `--serve-option`); the minimum of an autoscaled deployment is `replicas` now.
OLD_OPTION_NAMES = {"host_replicas": "replicas", "host_min_replicas": "replicas",
                    "host_max_replicas": "max_replicas",
                    "host_target_ongoing_requests": "target_ongoing_requests",
                    "host_num_cpus": "num_cpus", "host_num_gpus": "num_gpus",
                    "host_max_ongoing_requests": "max_ongoing_requests"}


def parse_option(text: str) -> tuple[str, object]:
    """`field=value` of a `ServeConfig` field, the value converted to the field's type."""
    name, sep, raw = text.partition("=")
    name = OLD_OPTION_NAMES.get(name, name)
    kinds = {f.name: str(f.type) for f in fields(ServeConfig)}
    if not sep or name not in kinds:
        raise ValueError(f"expected FIELD=VALUE with FIELD one of {', '.join(kinds)}, "
                         f"got {text!r}")
    kind = kinds[name]
    if kind == "bool":
        return name, raw.lower() in ("1", "true", "yes", "on")
    return name, int(raw) if kind == "int" else float(raw) if kind == "float" else raw


@dataclass(frozen=True)
class ServeConfig:
    """How Serve and the `trainserve` application run. Passed to the deployments as is."""

    # Serve's HTTP proxy (REST inference).
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    # Serve's gRPC proxy (inference.GRPCInferenceService); it binds all interfaces.
    grpc_port: int = 9000
    # Where the deployment and model records live.
    redis_url: str = "redis://127.0.0.1:6380/0"
    # Base of relative `artifact_uri`s; absolute ones are used as they are.
    storage_dir: str = ""
    # `module:function` that loads an artifact directory -> LoadedModel(module, meta).
    loader: str = DEFAULT_LOADER
    # Where models run. True: in the gateway replicas that take the requests (each loads
    # models on demand and keeps the most recently used), so a request makes no second hop
    # inside Serve. False: in a separate model-host deployment that the gateway calls through
    # a handle multiplexed by `name:version` (a model's requests go to the replicas that hold
    # it; worth it when models are large). The replica settings below (`replicas` to
    # `max_ongoing_requests`) apply to whichever deployment runs the models.
    colocate_models: bool = True
    # Replicas that run the models, each loading models on demand: a fixed number, or with
    # `max_replicas` > 0 the fewest Serve keeps while autoscaling (then 0 may scale to none).
    replicas: int = 1
    # Autoscaling: with `max_replicas` > 0, Serve keeps between `replicas` and `max_replicas`
    # replicas, adding one when a replica holds more than `target_ongoing_requests` requests
    # on average. 0: a fixed number of replicas. Batching needs several requests on a replica
    # at once, so a target far below an endpoint's `max_batch_size` splits its batches.
    max_replicas: int = 0
    target_ongoing_requests: float = 16.0
    # Logical CPUs each replica reserves. 0 by default: on a small machine a reserved CPU
    # would be taken from training jobs while the replicas mostly idle.
    num_cpus: float = 0.0
    # GPUs each replica reserves (fractional: several replicas share one GPU).
    num_gpus: float = 0.0
    # Requests one replica takes at once (the rest wait in the gateway).
    max_ongoing_requests: int = 256
    # torch intra-op threads per model-host replica (Ray does not set them reliably).
    torch_threads: int = 1
    # Largest batch one inference request may carry.
    max_batch_size: int = 1024
    # How long an endpoint resolution is cached, in seconds (a re-deploy shows after this).
    resolve_ttl_s: float = 1.0
    # How long `ensure_serve` waits for the application to run, in seconds.
    ready_timeout_s: float = 180.0
    # Serve's per-request access log lines (every replica and proxy writes one per request,
    # and a driver with log_to_driver gets them all). Off: it costs latency and floods logs.
    access_log: bool = False
    # Inference bearer-token authentication: a file of the SHA-256 hex digests of the valid
    # tokens and whose they are (serve/auth.py), re-read when it changes. Empty: the
    # endpoints are open.
    inference_token_file: str = ""
    # Largest inference request, in bytes: a REST body as read (a larger Content-Length is
    # refused before reading, a chunked body once its bytes pass it) and again once inflated
    # (Content-Encoding gzip/deflate, refused as soon as the output passes it), and a gRPC
    # request message. Refused with 413 / RESOURCE_EXHAUSTED naming the limit. Serve's gRPC
    # servers get theirs from the Ray head's environment (`serve_mode_env`).
    max_request_bytes: int = MAX_REQUEST_BYTES

    def __post_init__(self) -> None:
        for name in ("http_port", "grpc_port"):
            if not 1 <= getattr(self, name) <= 65535:
                raise ValueError(f"{name} must be a port in 1..65535, got {getattr(self, name)}")
        if self.http_port == self.grpc_port:
            raise ValueError("http_port and grpc_port must differ")
        if self.torch_threads < 1 or self.max_batch_size < 1:
            raise ValueError("torch_threads and max_batch_size must be >= 1")
        if self.max_request_bytes < MIN_REQUEST_BYTES:
            raise ValueError(f"max_request_bytes must be >= {MIN_REQUEST_BYTES}, got "
                             f"{self.max_request_bytes}")
        if self.num_cpus < 0 or self.resolve_ttl_s < 0 or self.ready_timeout_s <= 0:
            raise ValueError("num_cpus and resolve_ttl_s must be >= 0, ready_timeout_s > 0")
        self._check_replicas()
        if ":" not in self.loader:
            raise ValueError(f"loader must be 'module:function', got {self.loader!r}")

    def _check_replicas(self) -> None:
        if self.num_gpus < 0:
            raise ValueError(f"num_gpus must be >= 0, got {self.num_gpus}")
        if self.max_ongoing_requests < 1:
            raise ValueError("max_ongoing_requests must be >= 1")
        if self.max_replicas < 0:
            raise ValueError(f"max_replicas must be >= 0, got {self.max_replicas}")
        if self.replicas < (0 if self.max_replicas else 1):
            raise ValueError(f"replicas must be >= 1 (>= 0 when autoscaling, with "
                             f"max_replicas > 0), got {self.replicas}")
        if self.max_replicas and self.max_replicas < max(self.replicas, 1):
            raise ValueError(f"max_replicas ({self.max_replicas}) must be >= replicas "
                             f"({self.replicas}) and >= 1")
        if self.target_ongoing_requests <= 0:
            raise ValueError("target_ongoing_requests must be > 0")

    def host_options(self) -> dict:
        """`.options(...)` of the deployment that runs the models: replicas (fixed or
        autoscaled), the resources each reserves and how many requests it takes at once."""
        actor = {"num_cpus": self.num_cpus}
        if self.num_gpus:
            actor["num_gpus"] = self.num_gpus
        options = {"ray_actor_options": actor, "max_ongoing_requests": self.max_ongoing_requests}
        if not self.max_replicas:
            return {**options, "num_replicas": self.replicas}
        return {**options, "autoscaling_config": {
            "min_replicas": self.replicas, "max_replicas": self.max_replicas,
            "target_ongoing_requests": self.target_ongoing_requests}}
