"""The Ray head (`ray start --head --block`), or, with `ray_external_address`, a Ray cluster
running elsewhere that the stack joins instead of starting a head of its own."""
from __future__ import annotations

import shutil
import socket
import sys
from pathlib import Path

from trainserve.local.component import (Component, Launch, LocalStackError, Stack, http_ok,
                                        port_use, secret_file)
from trainserve.local.settings import Config
from trainserve.serve.config import serve_mode_env

RAY_STARTED_LINE = "Ray runtime started"


def driver_env(config: Config) -> dict[str, str]:
    """Environment a Ray driver needs to join this stack's Ray cluster (`ray.init(address=
    config.ray_address)`); the dispatcher gets it, tests that call Ray need it too.

    - On loopback, Ray must not swap 127.0.0.1 for the machine's public IP, which it does
      unless told that this is a one-node cluster.
    - The auth mode is explicit: left unset, Ray 2.60 turns token auth on for a head only
      if ~/.ray/auth_token happens to exist, and a driver may decide differently from
      the head. With token auth the token is this stack's own, in `<state>/run/`.
    - An external cluster (`ray_external_address`) has nodes of its own: the one-node
      switch would keep the driver from finding them; its token is `ray_token_file`
      (else Ray's default, ~/.ray/auth_token).
    """
    if config.external_ray:
        return _external_env(config)
    env = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"} if config.loopback else {}
    if config.ray_token_auth:
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(_token(config)))
    else:
        env["RAY_AUTH_MODE"] = "disabled"
    return env


def joined(config: Config, env: dict[str, str]) -> dict[str, str]:
    """`env` made a Ray driver's of this stack: the head and its drivers must agree on the
    node address and on authentication."""
    env = dict(env)
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AUTH_TOKEN", None)  # the token file of driver_env() is the one to use
    env.update(driver_env(config))
    return env


def _external_env(config: Config) -> dict[str, str]:
    if not config.ray_token_auth:
        return {"RAY_AUTH_MODE": "disabled"}
    env = {"RAY_AUTH_MODE": "token"}
    if config.ray_token_file:
        path = Path(config.ray_token_file).expanduser().absolute()
        if not path.is_file():
            raise LocalStackError(f"the Ray token file {path} does not exist (the token "
                                  f"of the cluster at {config.ray_address})")
        env["RAY_AUTH_TOKEN_PATH"] = str(path)
    return env


def _token(config: Config) -> Path:
    """This stack's Ray auth token file (created on first use, readable by us only)."""
    return secret_file(config.run_dir / "ray-auth-token")


def _launch(stack: Stack, env: dict[str, str]) -> Launch:
    return Launch(_command(stack), _head_env(stack, joined(stack.config, env)), {})


def _command(stack: Stack) -> list[str]:
    c = stack.config
    ray = Path(sys.executable).with_name("ray")
    cmd = [str(ray) if ray.exists() else (shutil.which("ray") or "ray"),
           "start", "--head", "--block", "--disable-usage-stats",
           f"--node-ip-address={c.host}", f"--port={c.ray_gcs_port}",
           "--include-dashboard=true", f"--dashboard-host={c.host}",
           f"--dashboard-port={c.ray_dashboard_port}", f"--temp-dir={c.ray_temp_path}",
           # Ray's defaults for these are fixed ports (10001, 52365) that a second
           # stack on the same machine would collide with; nobody needs them fixed.
           # Spare ones: a configured port (the API's metrics, say) may not be bound yet.
           f"--ray-client-server-port={stack.spare_port()}",
           f"--dashboard-agent-listen-port={stack.spare_port()}",
           # Workers bind OS-chosen ports instead of Ray's 10002-19999, a range that
           # would otherwise clash with any configured port inside it (Serve's, say).
           "--min-worker-port=0", "--max-worker-port=0"]
    if c.ray_num_cpus is not None:
        cmd.append(f"--num-cpus={c.ray_num_cpus}")
    return cmd


def _head_env(stack: Stack, env: dict[str, str]) -> dict[str, str]:
    env = dict(env)
    # One node: draining on SIGTERM has nowhere to move work to and only delays `down`
    # by Ray's default 30 s whenever an actor (Serve) is alive.
    env.setdefault("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "0")
    env.setdefault("RAY_metrics_report_interval_ms",
                   str(stack.config.ray_metrics_report_interval_ms))
    # Fixed by default (44217, 44227); free ones keep two stacks from colliding.
    env["AUTOSCALER_METRIC_PORT"] = str(stack.spare_port())
    env["DASHBOARD_METRIC_PORT"] = str(stack.spare_port())
    env.update(serve_mode_env(stack.config.serve_mode, stack.config.ray_temp_path,
                              stack.spare_port))
    return env


def _ready(stack: Stack) -> bool:
    config = stack.config
    if config.external_ray:  # its dashboard may be elsewhere or off: ask the GCS
        host, port = config.ray_address.rsplit(":", 1)
        with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
            return True
    return http_ok(f"{config.dashboard_url}/api/gcs_healthz")


def _link_logs(stack: Stack) -> None:
    """`<state>/logs/ray-session` -> Ray's own logs, which live in its short temp dir."""
    link = stack.config.logs_dir / "ray-session"
    if not link.is_symlink():
        link.symlink_to(stack.config.ray_temp_path / "session_latest" / "logs")


def _address(c: Config) -> str:
    if c.external_ray:
        return f"{c.ray_address} (external)"
    return f"{c.ray_address}, dashboard :{c.ray_dashboard_port}"


RAY = Component(
    name="ray",
    launch=_launch,
    ready=_ready,
    # Ray's temp folder is in the command line of every process of the head.
    marker=lambda c: str(c.ray_temp_path),
    address=_address,
    ports=lambda stack: [port_use(stack.config, "ray_gcs_port", "Ray GCS"),
                         port_use(stack.config, "ray_dashboard_port", "Ray dashboard")],
    # Serve's replicas and every worker stop with the head; they may take a while.
    stop_grace_s=30.0,
    elsewhere=lambda c: f"the Ray cluster at {c.ray_address}" if c.external_ray else "",
    # The dashboard answers before the raylet is up; `ray start` prints this line once the
    # node is complete.
    started_line=RAY_STARTED_LINE,
    after_start=_link_logs,
)
