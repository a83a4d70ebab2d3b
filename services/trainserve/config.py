"""Defaults of the one-machine stack and of the clients: where state lives and which ports each
component listens on (the table in docs/architecture.md). Every field can be overridden by a
`TRAINSERVE_<FIELD>` environment variable (e.g. `TRAINSERVE_REDIS_PORT=7000`) and by the flags
of `trainserve up`; `TRAINSERVE_API` is the job API address the CLI and the SDK talk to.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

ENV_PREFIX = "TRAINSERVE_"
DEFAULT_API = "127.0.0.1:50051"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """`$TRAINSERVE_STATE_DIR`, else `~/.trainserve`."""
    env = os.environ if env is None else env
    return Path(env.get(ENV_PREFIX + "STATE_DIR") or Path.home() / ".trainserve").expanduser()


@dataclass(frozen=True)
class Config:
    """Everything `LocalStack` needs to run redis, Ray, the job API and the dispatcher.

    Ports are TCP ports on `host`; 0 is not allowed for the listed ones because clients must
    know them in advance (tests pick free ports and pass them in).
    """

    # Logs, pid files, redis data and (by default) model storage live here.
    state_dir: Path = field(default_factory=default_state_dir)
    # Every component binds this address only; loopback keeps the unauthenticated Ray
    # cluster and Redis unreachable from other machines.
    host: str = "127.0.0.1"
    # Job API (gRPC: JobService, ModelService, DeploymentService, health, reflection).
    api_port: int = 50051
    # Ray Serve's inference endpoints, started by the dispatcher: OIP REST and OIP gRPC.
    serve_http_port: int = 8000
    serve_grpc_port: int = 9000
    # Prometheus /metrics of the job API and of the dispatcher.
    api_metrics_port: int = 9100
    dispatcher_metrics_port: int = 9101
    ray_dashboard_port: int = 8265
    redis_port: int = 6380
    # Redis's memory cap (redis.conf `maxmemory`, e.g. "2gb"; "0" is none), with
    # `noeviction`: at the cap writes are refused (RESOURCE_EXHAUSTED), nothing is dropped.
    redis_maxmemory: str = "2gb"
    # Per-user limits of the job API and the dispatcher; None: the service's own default (100
    # queued jobs, 16 open WatchJob/StreamLogs streams, 4 running jobs; a finished job's
    # events and worker logs kept 604800 s, 7 days). 0: no limit (retention: kept forever).
    user_max_queued: int | None = None
    user_max_streams: int | None = None
    user_max_jobs: int | None = None
    job_retention_s: int | None = None
    # The Ray head's GCS port (the address drivers connect to).
    ray_gcs_port: int = 6379
    # CPUs the Ray head offers; None lets Ray count them.
    ray_num_cpus: int | None = None
    # HOST:PORT (the GCS) of a running Ray cluster to use instead of starting a head of our
    # own (`up --ray-address`), e.g. cluster/local_cluster.py or one of docs/deploy-cluster.md;
    # the dispatcher joins it. Empty: the stack starts its own one-node Ray head.
    ray_external_address: str = ""
    # That cluster's Ray auth token file (with `ray_token_auth`); empty: Ray's own default,
    # ~/.ray/auth_token. The stack's own head always uses a token of its own instead.
    ray_token_file: str = ""
    # Ray token authentication with a token of this stack's own (in `<state_dir>/run/`).
    ray_token_auth: bool = True
    # Ray's temporary folder. Ray puts unix sockets in it and a socket path may not exceed
    # 107 bytes, so the default is a short folder under /tmp derived from `state_dir`.
    ray_temp_dir: str = ""
    # Shared storage of checkpoints and model versions; default `<state_dir>/storage`.
    storage_dir: str = ""
    # How long `up` waits for one component to become ready, in seconds.
    ready_timeout_s: float = 180.0
    # Bearer tokens on the inference endpoints, listed (as digests) in `inference_token_path`.
    inference_auth: bool = False
    # Bearer tokens on the job API (every RPC but health checks); the CLI on this machine
    # uses the admin token in `admin_token_path`. Off: the API's development mode (`--insecure`:
    # loopback only, every caller a plain user named by its `x-trainserve-user` metadata).
    api_auth: bool = True
    # How Ray Serve runs: "throughput" (HAProxy in front, gRPC inside Serve) or "default"
    # (Serve's Python proxies); see trainserve.serve.config.SERVE_MODES.
    serve_mode: str = "throughput"
    # Replicas of the inference deployment (each runs any endpoint's models, loaded on
    # demand). With `serve_max_replicas` > 0 Serve autoscales between `serve_replicas` and
    # it, aiming at `serve_target_ongoing_requests` requests per replica.
    serve_replicas: int = 1
    serve_max_replicas: int = 0
    serve_target_ongoing_requests: float = 16.0
    # CPUs and GPUs each inference replica reserves (fractions share a device).
    serve_num_cpus: float = 0.0
    serve_num_gpus: float = 0.0
    # How often Ray's processes hand their metrics to the node's metrics agent, in ms (Ray's
    # own default is 10000): serving metrics then reach Prometheus within a few seconds.
    ray_metrics_report_interval_ms: int = 2000
    # A local Prometheus (`up --with-prometheus`, needs the `prometheus` binary) scraping the
    # API, the dispatcher and Ray's metrics endpoints every `prometheus_scrape_interval_s`.
    with_prometheus: bool = False
    prometheus_port: int = 9090
    prometheus_scrape_interval_s: float = 5.0

    def __post_init__(self):
        object.__setattr__(self, "state_dir", Path(self.state_dir).expanduser().absolute())
        from trainserve.serve.config import SERVE_MODES, ServeConfig
        if self.serve_mode not in SERVE_MODES:
            raise ValueError(f"serve_mode must be one of {', '.join(SERVE_MODES)}, "
                             f"got {self.serve_mode!r}")
        ServeConfig(**self.serve_options())  # raises ValueError on a bad combination
        if self.ray_external_address:
            _check_host_port(self.ray_external_address, "ray_external_address")
        if not re.fullmatch(r"[0-9]+([kmg]b?|b)?", str(self.redis_maxmemory), re.IGNORECASE):
            raise ValueError(f"redis_maxmemory must be a size such as 2gb or 512mb (0: no "
                             f"cap), got {self.redis_maxmemory!r}")

    def serve_options(self) -> dict[str, Any]:
        """The `ServeConfig` fields these settings stand for (the inference replicas)."""
        scaled = self.serve_max_replicas > 0
        return {"host_replicas": max(self.serve_replicas, 1),
                "host_min_replicas": self.serve_replicas if scaled else 1,
                "host_max_replicas": self.serve_max_replicas,
                "host_target_ongoing_requests": self.serve_target_ongoing_requests,
                "host_num_cpus": self.serve_num_cpus, "host_num_gpus": self.serve_num_gpus}

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "Config":
        """Defaults, then `TRAINSERVE_<FIELD>` variables, then `overrides` (None = not given)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw not in (None, ""):
                values[f.name] = _convert(f, raw, ENV_PREFIX + f.name.upper())
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (str(v) if isinstance(v := getattr(self, f.name), Path) else v)
                for f in fields(self)}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> "Config":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})

    # -- derived addresses --------------------------------------------------------------------
    @property
    def api_address(self) -> str:
        return f"{self.host}:{self.api_port}"

    @property
    def redis_address_url(self) -> str:
        """Redis's URL without the password (for command lines and messages)."""
        return f"redis://{self.host}:{self.redis_port}/0"

    @property
    def redis_url(self) -> str:
        """Redis's URL with its password (`redis_password_path`) once `up` made one."""
        password = self.redis_password
        url = self.redis_address_url
        return url.replace("redis://", f"redis://:{password}@", 1) if password else url

    @property
    def redis_password(self) -> str:
        """The local Redis's password, "" until `trainserve up` made one."""
        try:
            return self.redis_password_path.read_text().strip()
        except OSError:
            return ""

    @property
    def ray_address(self) -> str:
        """The Ray cluster the dispatcher joins: the external one, else our own head."""
        return self.ray_external_address or f"{self.host}:{self.ray_gcs_port}"

    @property
    def external_ray(self) -> bool:
        """Whether the stack uses a Ray cluster it did not start (and starts no head)."""
        return bool(self.ray_external_address)

    @property
    def serve_http(self) -> str:
        return f"{self.host}:{self.serve_http_port}"

    @property
    def serve_grpc(self) -> str:
        return f"{self.host}:{self.serve_grpc_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.host}:{self.ray_dashboard_port}"

    @property
    def prometheus_url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.prometheus_port}"

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK

    # -- derived paths ----------------------------------------------------------------------
    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def redis_dir(self) -> Path:
        return self.state_dir / "redis"

    @property
    def prometheus_dir(self) -> Path:
        """The local Prometheus's config (`prometheus.yml`) and its TSDB (`data/`)."""
        return self.state_dir / "prometheus"

    @property
    def storage_path(self) -> Path:
        if self.storage_dir:
            return Path(self.storage_dir).expanduser()
        return self.state_dir / "storage"

    @property
    def admin_token_path(self) -> Path:
        """The local admin's job API token (mode 0600), made by the API on its first start."""
        return self.run_dir / "admin-token"

    @property
    def redis_password_path(self) -> Path:
        """The local Redis's password (mode 0600), made by the first `trainserve up`."""
        return self.run_dir / "redis-password"

    @property
    def inference_token_path(self) -> Path:
        """The SHA-256 digests of the inference tokens (`trainserve token create`)."""
        return self.run_dir / "inference-tokens"

    @property
    def ray_temp_path(self) -> Path:
        if self.ray_temp_dir:
            return Path(self.ray_temp_dir)
        digest = hashlib.sha1(str(self.state_dir).encode()).hexdigest()[:10]
        return Path("/tmp") / f"ts-{digest}"


def _check_host_port(address: str, name: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{name} must be HOST:PORT (a Ray cluster's GCS address), "
                         f"got {address!r}")


def _convert(f: dataclasses.Field, raw: str, name: str) -> Any:
    kind = str(f.type)
    if kind == "bool":
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{name}={raw!r} is not a boolean (true/false)")
    try:
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    return raw


# -- the recorded stack (what `trainserve up` last started in a state dir) ---------------------

def stack_file(state_dir: Path) -> Path:
    return Path(state_dir) / "run" / "stack.json"


def recorded_config(state_dir: Path | None = None) -> Config | None:
    """The config `trainserve up` recorded in `state_dir`, if any."""
    path = stack_file(state_dir or default_state_dir())
    try:
        return Config.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def api_token(address: str, env: Mapping[str, str] | None = None) -> str | None:
    """The job API bearer token for `address`: `$TRAINSERVE_TOKEN`, else the admin token of
    the local stack recorded in the state dir when `address` is its API, else None."""
    env = os.environ if env is None else env
    if env.get(ENV_PREFIX + "TOKEN"):
        return env[ENV_PREFIX + "TOKEN"]
    recorded = recorded_config(default_state_dir(env))
    if recorded is None or recorded.api_address != address:
        return None
    try:
        return recorded.admin_token_path.read_text().strip() or None
    except OSError:
        return None


def api_address(explicit: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The job API a client should call: `explicit`, else `$TRAINSERVE_API`, else the API of
    the local stack recorded in the state dir, else 127.0.0.1:50051."""
    env = os.environ if env is None else env
    if explicit:
        return explicit
    if env.get(ENV_PREFIX + "API"):
        return env[ENV_PREFIX + "API"]
    recorded = recorded_config(default_state_dir(env))
    return recorded.api_address if recorded else DEFAULT_API
