"""The job API (`python -m trainserve.api`): gRPC JobService, ModelService, DeploymentService,
health checking and reflection, and its Prometheus metrics."""
from __future__ import annotations

import sys

from trainserve.local.component import Component, Launch, Stack, port_use, set_flags
from trainserve.local.settings import Config
from trainserve.store.redis import REDIS_PASSWORD_ENV


def with_redis_password(config: Config, env: dict[str, str]) -> dict[str, str]:
    """`env` with the Redis password, which reaches a service by its environment only
    (never its command line, which every local user can read)."""
    if config.redis_password:
        env = {**env, REDIS_PASSWORD_ENV: config.redis_password}
    return env


def service_args(config: Config) -> list[str]:
    """The flags the job API and the dispatcher share."""
    config.storage_path.mkdir(parents=True, exist_ok=True)
    return ["--redis-url", config.redis_address_url, "--storage-dir", str(config.storage_path),
            "--serve-http", config.serve_http, "--serve-grpc", config.serve_grpc,
            "--metrics-host", config.host]


def _launch(stack: Stack, env: dict[str, str]) -> Launch:
    c = stack.config
    # Without api_auth: the API's loopback-only development mode (it refuses otherwise).
    auth = ["--admin-token-file", str(c.admin_token_path)] if c.api_auth else ["--insecure"]
    argv = [sys.executable, "-m", "trainserve.api", "--listen", c.api_address,
            *service_args(c), "--metrics-port", str(c.api_metrics_port), *auth,
            *set_flags({"--user-max-queued": c.user_max_queued,
                        "--user-max-streams": c.user_max_streams,
                        "--job-retention-s": c.job_retention_s})]
    return Launch(argv, with_redis_password(c, env), {})


def _ready(stack: Stack) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    with grpc.insecure_channel(stack.config.api_address,
                               options=[("grpc.enable_http_proxy", 0)]) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=1)
    return reply.status == health_pb2.HealthCheckResponse.SERVING


API = Component(
    name="api",
    launch=_launch,
    ready=_ready,
    marker=lambda c: "trainserve.api",
    address=lambda c: f"{c.api_address}, metrics :{c.api_metrics_port}",
    ports=lambda stack: [port_use(stack.config, "api_port", "job API"),
                         port_use(stack.config, "api_metrics_port", "job API metrics")],
    needs=("redis",),
    stop_grace_s=15.0,
)
