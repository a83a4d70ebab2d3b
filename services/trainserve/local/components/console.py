"""The web console (`python -m trainserve.console`): jobs, curves and comparisons in a
browser, a client of the job API like the CLI (docs/console.md). It serves plain HTTP, so it
runs only on a loopback host; its one-time sign-in links live in the state folder."""
from __future__ import annotations

import sys

from trainserve.local.component import Component, Launch, Stack, http_ok, port_use
from trainserve.local.components.prometheus import ray_sd_file
from trainserve.local.settings import Config


def _listen(config: Config) -> str:
    host = config.host if ":" not in config.host else f"[{config.host}]"
    return f"{host}:{config.console_port}"


def _launch(stack: Stack, env: dict[str, str]) -> Launch:
    c = stack.config
    argv = [sys.executable, "-m", "trainserve.console", "--listen", _listen(c),
            "--api", c.api_address, "--state-dir", str(c.state_dir),
            # the endpoints' requests, latency and errors, from Ray's metrics agents
            "--serving-metrics", str(ray_sd_file(c))]
    return Launch(argv, env, {})


CONSOLE = Component(
    name="console",
    launch=_launch,
    ready=lambda stack: http_ok(f"{stack.config.console_url}/healthz"),
    marker=lambda c: "trainserve.console",
    address=lambda c: c.console_url,
    ports=lambda stack: [port_use(stack.config, "console_port", "web console")],
    needs=("api",),
    stop_grace_s=5.0,
    runs=lambda c: c.loopback,
)
