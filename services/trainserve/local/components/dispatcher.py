"""The dispatcher (`python -m trainserve.dispatch`): a Ray driver that admits and runs jobs
and starts Ray Serve, whose inference endpoints it keeps deployed."""
from __future__ import annotations

import socket
import sys
import uuid

from trainserve.local.component import (Component, Launch, LocalStackError, PortUse, Stack,
                                        http_ok, port_use, set_flags)
from trainserve.local.components.api import service_args, with_redis_password
from trainserve.local.components.ray import joined
from trainserve.core.errors import InvalidArgument
from trainserve.local.settings import Config
from trainserve.store.keys import DISPATCHER_READY, DISPATCHER_WARM

# Serve's ports reach the dispatcher as --serve-http/--serve-grpc (the job API gets them too).
_OWN_FLAGS = ("http_port", "grpc_port")


def _launch(stack: Stack, env: dict[str, str]) -> Launch:
    c = stack.config
    # A fresh consumer name per start: readiness waits for *this* process's heartbeat,
    # not the stale one of a dispatcher that was just killed.
    consumer = f"local-{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    argv = [sys.executable, "-m", "trainserve.dispatch", "--ray-address", c.ray_address,
            *service_args(c), "--metrics-port", str(c.dispatcher_metrics_port),
            "--consumer", consumer, *_inference_auth_args(c),
            *(f"--serve-option={k}={v}" for k, v in c.serve_options().items()
              if k not in _OWN_FLAGS),
            *set_flags({"--user-max-jobs": c.user_max_jobs,
                        "--job-retention-s": c.job_retention_s}), *_tracking_args(c)]
    return Launch(argv, with_redis_password(c, joined(c, env)), {"consumer": consumer})


def _tracking_args(config: Config) -> list[str]:
    """The trackers of jobs that name none; the credentials by their file's path only."""
    return ([f"--tracking-mlflow-uri={config.tracking_mlflow_uri}"]
            if config.tracking_mlflow_uri else []) \
        + (["--tracking-tensorboard"] if config.tracking_tensorboard else []) \
        + ([f"--tracking-credentials-file={config.tracking_credentials_file}"]
           if config.tracking_credentials_file else [])


def _check_tracking(stack: Stack) -> None:
    try:
        stack.config.stack_tracking()
    except InvalidArgument as exc:
        raise LocalStackError(f"--{exc.field.replace('_', '-')}: {exc.reason}") from None


def _inference_auth_args(config: Config) -> list[str]:
    """With `inference_auth`, the token file the gateway checks (created empty, mode
    0600, if missing: then no token is accepted until `trainserve token create`)."""
    if not config.inference_auth:
        return []
    from trainserve.serve.auth import ensure_file
    return ["--inference-token-file", str(ensure_file(config.inference_token_path))]


def _ready(stack: Stack) -> bool:
    """Ready once *this* start's heartbeat is in Redis, Serve answers and the pooled workers
    are warm (so the first job after `trainserve up` starts as fast as the next ones)."""
    import redis
    client = redis.Redis.from_url(stack.config.redis_url, socket_timeout=1,
                                  socket_connect_timeout=1)
    try:
        beat, warm = client.mget(DISPATCHER_READY, DISPATCHER_WARM)
    finally:
        client.close()
    consumer = stack.meta("dispatcher").get("consumer")
    if any(v is None or (consumer and v.decode() != consumer) for v in (beat, warm)):
        return False
    return http_ok(f"http://{stack.config.serve_http}/v2/health/ready")


def _ports(stack: Stack) -> list[PortUse]:
    """Serve's ports count as the dispatcher's only while our Ray head is down: once it
    runs, Serve's proxies inside it hold them (and with an external Ray cluster they are
    that cluster's)."""
    c = stack.config
    uses = [port_use(c, "dispatcher_metrics_port", "dispatcher metrics")]
    if not c.external_ray and not stack.is_running("ray"):
        uses += [port_use(c, "serve_http_port", "Serve HTTP"),
                 port_use(c, "serve_grpc_port", "Serve gRPC")]
    return uses


DISPATCHER = Component(
    name="dispatcher",
    launch=_launch,
    ready=_ready,
    marker=lambda c: "trainserve.dispatch",
    address=lambda c: f"serve http :{c.serve_http_port} grpc :{c.serve_grpc_port}, "
                      f"metrics :{c.dispatcher_metrics_port}",
    ports=_ports,
    needs=("redis", "ray"),
    # A job runner may be mid checkpoint: it has time to finish writing.
    stop_grace_s=30.0,
    precheck=_check_tracking,
)
