"""A one-node Ray head of 2 CPUs on loopback, on free ports, as its own process group: for the
tests and benchmarks that drive Serve directly rather than through the whole local stack."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping

from trainserve.local import free_port

# Serve's throughput-oriented settings (see FACTS.md), set in the Ray cluster's environment.
SERVE_MODES = {
    "default": {},
    "throughput": {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1"},
}


class RayHead:
    """`ray start --head` in `temp` (keep the path short: Ray's sockets live there and must
    stay under 108 characters) with `env`, plus free ports for every listener it opens."""

    def __init__(self, temp: Path, env: Mapping[str, str]):
        self.temp, self.port = Path(temp), free_port()
        self.env = dict(env, RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
                        AUTOSCALER_METRIC_PORT=str(free_port()),
                        DASHBOARD_METRIC_PORT=str(free_port()),
                        # HAProxy's metrics listener would take 0.0.0.0:9101, maybe in use.
                        RAY_SERVE_HAPROXY_METRICS_PORT=str(free_port()))
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.temp / "ray-start.log"

    def start(self, timeout_s: float = 90) -> str:
        """Start the head and wait until it runs; its address."""
        ray_bin = Path(sys.executable).with_name("ray")
        cmd = [str(ray_bin), "start", "--head", "--block", "--disable-usage-stats",
               "--node-ip-address=127.0.0.1", f"--port={self.port}", "--num-cpus=2",
               "--include-dashboard=false", f"--temp-dir={self.temp}",
               f"--ray-client-server-port={free_port()}",
               f"--metrics-export-port={free_port()}",
               f"--dashboard-agent-listen-port={free_port()}",
               f"--dashboard-agent-grpc-port={free_port()}",
               f"--runtime-env-agent-port={free_port()}"]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while b"Ray runtime started" not in self.log_path.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("ray start failed: " + self.log_path.read_text()[-2000:])
            time.sleep(0.2)
        return self.address

    def stop(self) -> None:
        """Stop `ray start` and every process of its session (it leads its own group)."""
        for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            if self.proc is None:
                break
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                break
        if self._log is not None:
            self._log.close()
