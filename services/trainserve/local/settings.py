"""The settings of the one-machine stack: one typed object, `Config`, owns every one of them.

Each field is one setting, under one name everywhere:

- the environment variable `TRAINSERVE_<FIELD>` (e.g. `TRAINSERVE_REDIS_PORT=7000`);
- the flag `--<field-with-dashes>` of `trainserve up` (derived from the field and its `doc`
  by trainserve.cli.stack; a few older flag names are kept as hidden aliases);
- the key in `<state_dir>/run/stack.json`, the record of what `up` started;
- for a field `serve_<name>`, the field `<name>` of the Serve configuration
  (`trainserve.serve.config.ServeConfig`), passed on unchanged;
- where the Helm chart has the setting, its value (`chart`, a path in values.yaml), which
  tests/chart checks against this declaration.

Precedence: the field's default, then the environment, then the flags of `up`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import typing
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from trainserve.core import locations
from trainserve.core.locations import LOOPBACK, default_state_dir
from trainserve.core.tracking import StackTracking
from trainserve.serve.config import SERVE_MODES, ServeConfig

PORT = (1, 65535)
# A setting `serve_<name>` is ServeConfig's `<name>`, except these, which are how the Ray
# head runs Serve (its environment) rather than how the application runs.
SERVE_PREFIX = "serve_"
SERVE_HEAD_SETTINGS = ("serve_mode",)


def setting(default: Any = MISSING, *, doc: str, factory: Any = MISSING,
            aliases: tuple[str, ...] = (), chart: str = "", bounds: tuple = (None, None),
            metavar: str = "", off_flag: str = "", only_for: str = "", path: str = "") -> Any:
    """A field of `Config` with what the CLI and the checks need to know of it.

    doc: one or two sentences, with units and what the default means (the flag's help).
    aliases: older flag names of `trainserve up` for it, still accepted but not shown.
    chart: its value in the Helm chart, e.g. "api.metricsPort".
    bounds: (min, max) of the flag's value (None: unbounded).
    off_flag: the flag that turns a boolean setting off (default `--no-<name>`).
    only_for: the one component that reads it ("up": only `trainserve up` itself); it may
        change while the stack runs, as long as that component is stopped.
    path: "dir" or "file" when the value names one (the flag checks it is not the other).
    """
    meta = {"doc": doc, "aliases": aliases, "chart": chart, "bounds": bounds,
            "metavar": metavar, "off_flag": off_flag, "only_for": only_for, "path": path}
    return dataclasses.field(default=default, default_factory=factory, metadata=meta)


@dataclass(frozen=True)
class Config:
    """Everything `LocalStack` needs to run redis, Ray, the job API, the dispatcher, the web
    console and Prometheus. Ports are TCP ports on `host`."""

    state_dir: Path = setting(
        factory=default_state_dir, path="dir",
        doc="Logs, pid files, Redis data and (by default) models (default: ~/.trainserve).")
    host: str = setting(
        locations.DEFAULT_HOST,
        doc="The address every component binds; loopback (the default) keeps Ray and Redis "
            "unreachable from other machines.")
    api_port: int = setting(locations.DEFAULT_API_PORT, bounds=PORT, chart="api.port",
                            doc="Job API (gRPC) port.")
    serve_http_port: int = setting(ServeConfig.http_port, bounds=PORT,
                                   chart="inference.httpPort",
                                   doc="Inference REST (Serve HTTP) port.")
    serve_grpc_port: int = setting(ServeConfig.grpc_port, bounds=PORT,
                                   chart="inference.grpcPort",
                                   doc="Inference gRPC (Serve gRPC) port.")
    # 0 turns a metrics endpoint off (settings only; the flags take a port).
    api_metrics_port: int = setting(9100, bounds=PORT, aliases=("--metrics-port",),
                                    chart="api.metricsPort", doc="Job API metrics port.")
    dispatcher_metrics_port: int = setting(9101, bounds=PORT, chart="dispatcher.metricsPort",
                                           doc="Dispatcher metrics port.")
    ray_dashboard_port: int = setting(8265, bounds=PORT, aliases=("--dashboard-port",),
                                      doc="Ray dashboard port.")
    console_port: int = setting(
        8270, bounds=PORT,
        doc="Web console port, http://<host>:<port> (`trainserve console` prints a one-time "
            "sign-in link); the console runs when the host is loopback.")
    redis_port: int = setting(6380, bounds=PORT, chart="redis.port", doc="Redis port.")
    redis_maxmemory: str = setting(
        "2gb", metavar="SIZE", chart="redis.maxmemory",
        doc="Redis's memory cap, e.g. 2gb (the default) or 512mb; 0: none. At the cap writes "
            "are refused (noeviction: RESOURCE_EXHAUSTED), nothing is dropped.")
    user_max_queued: int | None = setting(
        None, bounds=(0, None), chart="api.userQuota.maxQueuedJobs",
        doc="Jobs one user may have queued (default 100; 0: no limit).")
    user_max_streams: int | None = setting(
        None, bounds=(0, None), chart="api.userQuota.maxStreams",
        doc="Open WatchJob/StreamLogs streams per user (default 16; 0: no limit).")
    user_max_jobs: int | None = setting(
        None, bounds=(0, None), chart="dispatcher.userQuota.maxJobs",
        doc="Running jobs per user (default 4; 0: no limit).")
    job_retention_s: int | None = setting(
        None, bounds=(0, None), chart="dispatcher.jobRetentionS",
        doc="Seconds a finished job's events and worker logs are kept (default 604800, "
            "7 days; 0: forever).")
    ray_gcs_port: int = setting(6379, bounds=PORT, aliases=("--ray-port",),
                                doc="Ray GCS port (the address Ray drivers connect to).")
    ray_num_cpus: int | None = setting(None, bounds=(1, None), aliases=("--num-cpus",),
                                       doc="CPUs the Ray head offers (default: all).")
    ray_external_address: str = setting(
        "", metavar="HOST:PORT", aliases=("--ray-address",),
        doc="Use this running Ray cluster (its GCS address) instead of starting a Ray head, "
            "e.g. one of cluster/local_cluster.py; the dispatcher joins it.")
    ray_token_file: str = setting(
        "", path="file",
        doc="That cluster's Ray auth token (default: ~/.ray/auth_token). The stack's own "
            "head always uses a token of its own, in <state-dir>/run/.")
    ray_token_auth: bool = setting(
        True, doc="Ray token authentication (default: on).")
    ray_temp_dir: str = setting(
        "", path="dir",
        doc="Ray's temporary folder (default: a short folder under /tmp derived from the "
            "state folder: Ray's unix socket paths may not exceed 107 bytes).")
    storage_dir: str = setting(
        "", path="dir",
        doc="Shared storage of checkpoints and model versions (default: <state-dir>/storage).")
    ready_timeout_s: float = setting(
        180.0, bounds=(0.001, None), aliases=("--timeout",), only_for="up",
        doc="Seconds `up` waits for each component to become ready (default: 180).")
    inference_auth: bool = setting(
        False, chart="inference.auth.enabled",
        doc="Require bearer tokens (`trainserve token create`) on the inference endpoints "
            "(default: open).")
    api_auth: bool = setting(
        True, chart="api.auth.enabled",
        doc="Require bearer tokens on the job API; this machine's CLI uses the admin token in "
            "<state-dir>/run/admin-token (default: on). Off: development mode, loopback only, "
            "every caller a plain user.")
    serve_mode: str = setting(
        "throughput", metavar="|".join(SERVE_MODES),
        doc="How Serve runs: throughput (HAProxy in front, gRPC inside Serve; the default) or "
            "default (Serve's own proxies).")
    serve_replicas: int = setting(
        ServeConfig.replicas, bounds=(1, None),
        doc="Inference replicas (the fewest when autoscaling; default 1).")
    serve_max_replicas: int = setting(
        ServeConfig.max_replicas, bounds=(0, None),
        doc="Autoscale inference replicas up to this many (default 0: a fixed number).")
    serve_target_ongoing_requests: float = setting(
        ServeConfig.target_ongoing_requests, bounds=(0.001, None),
        aliases=("--serve-target-ongoing",),
        doc="Autoscaling target: requests in flight per replica (default 16).")
    serve_num_cpus: float = setting(
        ServeConfig.num_cpus, bounds=(0, None), aliases=("--serve-cpus",),
        doc="CPUs each inference replica reserves (default 0).")
    serve_num_gpus: float = setting(
        ServeConfig.num_gpus, bounds=(0, None), aliases=("--serve-gpus",),
        doc="GPUs each inference replica reserves, fractions share one (default 0).")
    ray_metrics_report_interval_ms: int = setting(
        2000, bounds=(1, None),
        doc="How often Ray's processes hand their metrics to the node's agent, in ms (Ray's "
            "own default is 10000), so serving metrics reach Prometheus within seconds.")
    tracking_mlflow_uri: str = setting(
        "", metavar="URL", chart="dispatcher.tracking.mlflowUri", only_for="dispatcher",
        doc="An MLflow tracking server (http(s)://host:port) that every job whose spec names "
            "no `tracking` is logged to; a job opts out with `tracking: {}` (default: none).")
    tracking_tensorboard: bool = setting(
        False, chart="dispatcher.tracking.tensorboard", only_for="dispatcher",
        doc="TensorBoard event files for every job whose spec names no `tracking` "
            "(default: off).")
    tracking_credentials_file: str = setting(
        "", path="file", only_for="dispatcher",
        doc="The MLflow server's credentials: a file of MLFLOW_TRACKING_TOKEN=..., or "
            "MLFLOW_TRACKING_USERNAME=... and MLFLOW_TRACKING_PASSWORD=..., lines; sent to "
            "the tracking-mlflow-uri server only (docs/tracking.md).")
    with_prometheus: bool = setting(
        False, off_flag="--without-prometheus", only_for="prometheus",
        doc="Also run a local Prometheus (the `prometheus` binary) scraping the API, the "
            "dispatcher and Ray (default: off).")
    prometheus_port: int = setting(9090, bounds=PORT, only_for="prometheus",
                                   doc="Prometheus port.")
    prometheus_scrape_interval_s: float = setting(
        5.0, bounds=(0.001, None), only_for="prometheus",
        doc="Seconds between Prometheus's scrapes (default 5).")

    def __post_init__(self):
        object.__setattr__(self, "state_dir", Path(self.state_dir).expanduser().absolute())
        for name in ("ray_token_file", "tracking_credentials_file"):
            if getattr(self, name):  # the dispatcher runs in the state folder: keep it absolute
                path = Path(getattr(self, name)).expanduser().absolute()
                object.__setattr__(self, name, str(path))
        if self.serve_mode not in SERVE_MODES:
            raise ValueError(f"serve_mode must be one of {', '.join(SERVE_MODES)}, "
                             f"got {self.serve_mode!r}")
        self.serve_config()  # raises ValueError on a bad combination
        if self.ray_external_address:
            _check_host_port(self.ray_external_address, "ray_external_address")
        if not re.fullmatch(r"[0-9]+([kmg]b?|b)?", str(self.redis_maxmemory), re.IGNORECASE):
            raise ValueError(f"redis_maxmemory must be a size such as 2gb or 512mb (0: no "
                             f"cap), got {self.redis_maxmemory!r}")

    # -- Serve ----------------------------------------------------------------------------------
    def serve_options(self) -> dict[str, Any]:
        """The ServeConfig fields these settings set: `serve_<name>` as `<name>`."""
        return {name[len(SERVE_PREFIX):]: getattr(self, name) for name in serve_settings()}

    def serve_config(self) -> ServeConfig:
        """The Serve configuration of this stack (raises ValueError naming the settings)."""
        try:
            return ServeConfig(http_host=self.host, redis_url=self.redis_address_url,
                               storage_dir=str(self.storage_path), **self.serve_options())
        except ValueError as exc:
            raise ValueError(_as_settings(str(exc))) from None

    def stack_tracking(self) -> StackTracking:
        """The trackers of jobs that name none (raises `InvalidArgument` on a bad address)."""
        return StackTracking(self.tracking_mlflow_uri, self.tracking_tensorboard,
                             self.tracking_credentials_file)

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "Config":
        """Defaults, then `TRAINSERVE_<FIELD>` variables, then `overrides` (None = not given)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(locations.env_name(f.name))
            if raw not in (None, ""):
                values[f.name] = _convert(f, raw, locations.env_name(f.name))
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
    def console_url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.console_port}"

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
        return locations.run_dir(self.state_dir)

    @property
    def redis_dir(self) -> Path:
        return self.state_dir / "redis"

    @property
    def prometheus_dir(self) -> Path:
        """The local Prometheus's config (`prometheus.yml`) and its TSDB (`data/`)."""
        return self.state_dir / "prometheus"

    @property
    def storage_path(self) -> Path:
        return locations.storage_dir(self.state_dir, self.storage_dir)

    @property
    def admin_token_path(self) -> Path:
        """The local admin's job API token (mode 0600), made by the API on its first start."""
        return locations.admin_token_file(self.state_dir)

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


# -- the fields, for the CLI and the checks ---------------------------------------------------

def setting_type(f: dataclasses.Field) -> type:
    """The value type of a setting (`int` for `int | None`)."""
    hint = typing.get_type_hints(Config)[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def port_settings() -> tuple[str, ...]:
    """The settings that are TCP ports (bounds `PORT`): what a second stack on one machine
    must all move, e.g. `Config(**{f: free_port() for f in port_settings()})`."""
    return tuple(f.name for f in dataclasses.fields(Config) if f.metadata.get("bounds") == PORT)


def flag(name: str) -> str:
    """The `trainserve up` flag of setting `name`: `--redis-port` for `redis_port`."""
    return "--" + name.replace("_", "-")


def serve_settings() -> tuple[str, ...]:
    """The settings that are ServeConfig fields (`serve_<field>`)."""
    return tuple(f.name for f in fields(Config)
                 if f.name.startswith(SERVE_PREFIX) and f.name not in SERVE_HEAD_SETTINGS)


def _as_settings(message: str) -> str:
    """ServeConfig's message about its fields, in the names of the settings."""
    names = sorted((s[len(SERVE_PREFIX):] for s in serve_settings()), key=len, reverse=True)
    return re.sub(r"\b(" + "|".join(names) + r")\b", SERVE_PREFIX + r"\1", message)


def _check_host_port(address: str, name: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{name} must be HOST:PORT (a Ray cluster's GCS address), "
                         f"got {address!r}")


def _convert(f: dataclasses.Field, raw: str, name: str) -> Any:
    kind = setting_type(f)
    if kind is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{name}={raw!r} is not a boolean (true/false)")
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None


# -- the recorded stack (what `trainserve up` last started in a state dir) ---------------------

def recorded_config(state_dir: Path | None = None) -> Config | None:
    """The config `trainserve up` recorded in `state_dir`, if any."""
    doc = locations.recorded_stack(state_dir)
    try:
        return Config.from_dict(doc) if doc is not None else None
    except (ValueError, TypeError):
        return None
