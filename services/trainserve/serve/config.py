"""Configuration of the serving layer."""
from __future__ import annotations

from dataclasses import dataclass

APP_NAME = "trainserve"
# Serve's gRPC proxy imports this to learn the service's methods (see its docstring for why
# it is not the generated `add_GRPCInferenceServiceServicer_to_server`).
GRPC_SERVICER = "trainserve.serve.grpc_api.add_inference_servicer"
DEFAULT_LOADER = "trainserve.train.artifacts:load_artifact"
_WILDCARDS = ("0.0.0.0", "::", "")


def endpoint_addresses(http: str, grpc: str, name: str) -> tuple[str, str]:
    """(REST URL, gRPC target) of endpoint `name` for clients, from the `host:port` Serve's
    HTTP and gRPC proxies listen on; a wildcard host is reached as 127.0.0.1."""
    def reachable(address: str) -> str:
        host, _, port = address.rpartition(":")
        return f"{'127.0.0.1' if host in _WILDCARDS else host}:{port}"
    return f"http://{reachable(http)}/v2/models/{name}", reachable(grpc)


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
    # Model-host replicas; each loads models on demand (multiplexed by `name:version`).
    host_replicas: int = 1
    # Logical CPUs each model-host replica reserves. 0 by default: on a small machine a
    # reserved CPU would be taken from training jobs while the host mostly idles.
    host_num_cpus: float = 0.0
    # GPUs each model-host replica reserves (fractional: several replicas share one GPU).
    host_num_gpus: float = 0.0
    # Model-host autoscaling: with `host_max_replicas` > 0, Serve keeps between
    # `host_min_replicas` and `host_max_replicas` replicas, adding one when a replica holds
    # more than `host_target_ongoing_requests` requests on average (`host_replicas` is then
    # ignored). 0: a fixed `host_replicas`. Batching needs several requests on a replica at
    # once, so a target far below an endpoint's `max_batch_size` splits its batches.
    host_min_replicas: int = 1
    host_max_replicas: int = 0
    host_target_ongoing_requests: float = 16.0
    # Requests one model-host replica takes at once (the rest wait in the gateway).
    host_max_ongoing_requests: int = 256
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
    # tokens (serve/auth.py), re-read when it changes. Empty: the endpoints are open.
    inference_token_file: str = ""

    def __post_init__(self) -> None:
        for name in ("http_port", "grpc_port"):
            if not 1 <= getattr(self, name) <= 65535:
                raise ValueError(f"{name} must be a port in 1..65535, got {getattr(self, name)}")
        if self.http_port == self.grpc_port:
            raise ValueError("http_port and grpc_port must differ")
        if self.host_replicas < 1 or self.torch_threads < 1 or self.max_batch_size < 1:
            raise ValueError("host_replicas, torch_threads and max_batch_size must be >= 1")
        if self.host_num_cpus < 0 or self.resolve_ttl_s < 0 or self.ready_timeout_s <= 0:
            raise ValueError("host_num_cpus and resolve_ttl_s must be >= 0, "
                             "ready_timeout_s > 0")
        self._check_host_scaling()
        if ":" not in self.loader:
            raise ValueError(f"loader must be 'module:function', got {self.loader!r}")

    def _check_host_scaling(self) -> None:
        if self.host_num_gpus < 0:
            raise ValueError(f"host_num_gpus must be >= 0, got {self.host_num_gpus}")
        if self.host_max_ongoing_requests < 1:
            raise ValueError("host_max_ongoing_requests must be >= 1")
        if self.host_max_replicas < 0 or self.host_min_replicas < 0:
            raise ValueError("host_min_replicas and host_max_replicas must be >= 0")
        if self.host_max_replicas and self.host_max_replicas < max(self.host_min_replicas, 1):
            raise ValueError(f"host_max_replicas ({self.host_max_replicas}) must be >= "
                             f"host_min_replicas ({self.host_min_replicas}) and >= 1")
        if self.host_target_ongoing_requests <= 0:
            raise ValueError("host_target_ongoing_requests must be > 0")

    def host_options(self) -> dict:
        """`ModelHost.options(...)` for this config: replicas (fixed or autoscaled), the
        resources each reserves and how many requests it takes at once."""
        actor = {"num_cpus": self.host_num_cpus}
        if self.host_num_gpus:
            actor["num_gpus"] = self.host_num_gpus
        options = {"ray_actor_options": actor,
                   "max_ongoing_requests": self.host_max_ongoing_requests}
        if not self.host_max_replicas:
            return {**options, "num_replicas": self.host_replicas}
        return {**options, "autoscaling_config": {
            "min_replicas": self.host_min_replicas, "max_replicas": self.host_max_replicas,
            "target_ongoing_requests": self.host_target_ongoing_requests}}
