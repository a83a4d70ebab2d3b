"""A one-node Ray head of 2 CPUs on loopback, on free ports, as its own process group: for the
tests and benchmarks that drive Serve directly rather than through the whole local stack."""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import tempfile
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Mapping

from trainserve.local import free_port
from trainserve.serve.config import SERVE_MODES, serve_mode_env

__all__ = ["RayHead", "SERVE_MODES"]


class RayHead:
    """`ray start --head` in `temp` (keep the path short: Ray's sockets live there and must
    stay under 108 characters) with `env` and Serve in `serve_mode` (SERVE_MODES), plus free
    ports for every listener it opens."""

    def __init__(self, temp: Path, env: Mapping[str, str], serve_mode: str = "default"):
        self.temp, self.port = Path(temp), free_port()
        self.env = dict(env, RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
                        AUTOSCALER_METRIC_PORT=str(free_port()),
                        DASHBOARD_METRIC_PORT=str(free_port()),
                        **serve_mode_env(serve_mode, self.temp, free_port))
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


@contextlib.contextmanager
def connected_head(serve_mode: str = "default") -> Iterator[RayHead]:
    """A `RayHead` with a token of its own (~/.ray/auth_token is shared by every cluster on
    the machine) in Serve mode `serve_mode`, this process connected to it while inside."""
    import ray

    temp = tempfile.mkdtemp(prefix="tsray")  # short: Ray's socket paths must stay < 108 chars
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env = {k: v for k, v in os.environ.items()
           if k != "RAY_ADDRESS" and not k.startswith("RAY_AUTH")}
    head = RayHead(Path(temp), env | auth, serve_mode)
    saved = {k: os.environ.get(k) for k in auth}
    try:
        address = head.start()
        _use_token(auth)
        ray.init(address=address, logging_level="WARNING", log_to_driver=False)
        yield head
    finally:
        ray.shutdown()
        _use_token(saved)
        head.stop()
        shutil.rmtree(temp, ignore_errors=True)


def _use_token(env: dict) -> None:
    """Make this process authenticate with `env`'s token (None values unset).

    Ray reads the mode and the token once, so both caches are refreshed (private API).
    """
    from ray._raylet import AuthenticationTokenLoader, Config

    for k, v in env.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
