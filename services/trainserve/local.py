"""The one-machine stack: a real redis-server, a real Ray head, the job API and the dispatcher
(which starts Ray Serve inside the Ray cluster), each a detached process of its own; with
`Config.with_prometheus` also a Prometheus scraping them all (trainserve.monitoring).

`trainserve up/down/status` drive it, and so do the integration tests, which start it on
free ports in a temporary folder and stop or SIGKILL single components to test recovery::

    stack = LocalStack(Config(state_dir=tmp, api_port=..., ...))
    stack.up()                     # redis, ray, api, dispatcher; each waited for
    stack.kill("dispatcher")       # SIGKILL, like a crash
    stack.start("dispatcher")
    stack.down()

Each component runs in a new session (`start_new_session`), so its session id is its pid:
stopping a component signals exactly the processes of that session (for Ray: the head's
GCS, raylet, dashboard, agents and every worker, Serve's replicas included) and nothing else.
Logs go to `<state>/logs/<name>.log`, pids to `<state>/run/<name>.pid`.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from trainserve import ports
from trainserve.config import Config, stack_file
from trainserve.store.keys import DISPATCHER_READY
from trainserve.store.redis import REDIS_PASSWORD_ENV

COMPONENTS = ("redis", "ray", "api", "dispatcher")
# What a component needs ready before it starts; `up` starts the rest alongside.
_NEEDS = {"api": ("redis",), "dispatcher": ("redis", "ray")}
# Started only when asked for (`Config.with_prometheus`), after the others.
OPTIONAL_COMPONENTS = ("prometheus",)
ALL_COMPONENTS = COMPONENTS + OPTIONAL_COMPONENTS
RAY_STARTED_LINE = "Ray runtime started"
_STOP_GRACE_S = {"redis": 15.0, "ray": 30.0, "api": 15.0, "dispatcher": 30.0,
                 "prometheus": 15.0}


class LocalStackError(RuntimeError):
    """A component could not be started or stopped; the message says which and why."""


class PortInUse(LocalStackError):
    def __init__(self, component: str, what: str, host: str, port: int, flag: str):
        super().__init__(f"port {port} on {host} ({what}) is already in use, so {component} "
                         f"cannot start; stop whatever holds it or choose another with {flag}")
        self.component, self.port = component, port


@dataclass(frozen=True)
class PortUse:
    """A port a component binds: what it is for and the `trainserve up` flag that moves it."""
    port: int
    what: str
    flag: str


@dataclass
class ComponentStatus:
    name: str
    running: bool
    pid: int | None
    address: str
    ready: bool
    log: Path

    @property
    def state(self) -> str:
        if not self.running:
            return "stopped"
        return "ready" if self.ready else "not ready"


class LocalStack:
    """Start, stop, inspect the components of the local stack recorded under `config.state_dir`.

    Safe to use from several processes: all state is in the pid files, so `trainserve status`
    sees what `trainserve up` started, and `down` stops it.
    """

    def __init__(self, config: Config | None = None,
                 on_event: Callable[[str, str], None] | None = None):
        self.config = config or Config.from_env()
        # Called as on_event(component, message) while starting and stopping (for the CLI).
        self.on_event = on_event or (lambda name, message: None)
        # Children started by this object, kept so that their exit is reaped (no zombies).
        self._procs: dict[str, subprocess.Popen] = {}

    @classmethod
    def from_state_dir(cls, state_dir: Path | str | None = None, **kwargs) -> "LocalStack":
        """The stack as `up` last recorded it in `state_dir` (its ports), or the defaults."""
        from trainserve.config import default_state_dir, recorded_config
        state_dir = Path(state_dir) if state_dir else default_state_dir()
        config = recorded_config(state_dir) or Config.from_env(state_dir=state_dir)
        return cls(config, **kwargs)

    def __enter__(self) -> "LocalStack":
        self.up()
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    # -- the whole stack ----------------------------------------------------------------------
    @property
    def components(self) -> tuple[str, ...]:
        """The components this config runs: the core ones (without Ray when the stack uses an
        external Ray cluster), plus Prometheus if asked for."""
        core = tuple(n for n in COMPONENTS if n != "ray" or not self.config.external_ray)
        return core + (("prometheus",) if self.config.with_prometheus else ())

    def up(self, components: Iterable[str] | None = None,
           timeout: float | None = None) -> list[str]:
        """Start the given components (default: `components`) in order, each once what it
        needs (`_NEEDS`) is ready, and wait until all are ready.

        Components already running are left alone (an `up` of a running stack is a no-op);
        returns the names started. Every port is checked before anything starts. If one
        component fails, those started by this call are stopped again and the error raised.
        """
        names = self._ordered(self.components if components is None else components)
        todo = [n for n in names if not self.is_running(n)]
        if "prometheus" in todo:
            self._prometheus_binary()  # refuse before anything starts
        self.check_ports(todo)
        self._record_config()
        started: list[str] = []
        waiting: list[str] = []  # started, readiness not yet seen
        try:
            for name in todo:
                # Each starts once what it needs is ready, alongside what it does not need
                # (the API's start overlaps the Ray head's).
                for need in [n for n in waiting if n in _NEEDS.get(name, ())]:
                    self.wait_ready(need, timeout)
                    waiting.remove(need)
                self.start(name, wait=False, check=False)
                started.append(name)
                waiting.append(name)
            for name in waiting:
                self.wait_ready(name, timeout)
        except BaseException:
            for name in reversed(started):
                self.stop(name)
            raise
        return started

    def down(self, components: Iterable[str] = ALL_COMPONENTS,
             grace: float | None = None) -> list[str]:
        """Stop the given components, last started first; returns the names that were running."""
        stopped = []
        for name in reversed(self._ordered(components)):
            if self.stop(name, grace=grace):
                stopped.append(name)
        return stopped

    def status(self) -> list[ComponentStatus]:
        """Each component this config runs, and an optional one that runs anyway; an external
        Ray cluster is listed as "ray" too (running and ready: its GCS answers)."""
        return [self.component_status(name) for name in ALL_COMPONENTS
                if name in self.components or self.is_running(name)
                or (name == "ray" and self.config.external_ray)]

    def component_status(self, name: str) -> ComponentStatus:
        if name == "ray" and self.config.external_ray and not self.is_running(name):
            up = self.is_ready(name)
            return ComponentStatus(name, up, None, self.address(name), up, self.log_path(name))
        pid = self.pid(name)
        running = pid is not None
        return ComponentStatus(name, running, pid, self.address(name),
                               running and self.is_ready(name), self.log_path(name))

    # -- one component ------------------------------------------------------------------------
    def start(self, name: str, wait: bool = True, timeout: float | None = None,
              check: bool = True) -> bool:
        """Start one component (detached) unless it runs; False if it was already running.

        With `wait`, block until it is ready or raise `LocalStackError` with the log's tail
        (the component is stopped again then)."""
        self._check_name(name)
        if self.is_running(name):
            return False
        if name == "ray" and self.config.external_ray:
            raise LocalStackError(f"this stack uses the Ray cluster at "
                                  f"{self.config.ray_address}; it starts no Ray head")
        if check:
            self.check_ports([name])
        self._record_config()
        cmd, env, meta = self._launch_spec(name)
        log_path = self.log_path(name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            offset = log.tell()
            log.write(f"==== trainserve: starting {name} at {time.ctime()}: "
                      f"{' '.join(cmd)}\n".encode())
            log.flush()
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                    cwd=self.config.state_dir)
        self._procs[name] = proc
        if name == "ray":
            self._link_ray_logs()
        meta.update(pid=proc.pid, started_at=time.time(), log_offset=offset, cmd=cmd)
        self._write_pid(name, proc.pid, meta)
        self.on_event(name, f"started (pid {proc.pid})")
        if wait:
            try:
                self.wait_ready(name, timeout)
            except BaseException:
                if not self.stop(name):
                    self._kill_session(proc.pid)  # whatever it left behind, e.g. children
                    self._clear_pid(name)
                raise
        return True

    def stop(self, name: str, grace: float | None = None) -> bool:
        """SIGTERM the component, then SIGKILL whatever of its session is left after `grace`
        seconds. Returns False if it was not running."""
        self._check_name(name)
        pid = self.pid(name)
        if pid is None:
            self._kill_orphans(name)
            self._clear_pid(name)
            return False
        grace = _STOP_GRACE_S[name] if grace is None else grace
        self.on_event(name, f"stopping (pid {pid})")
        signal_quietly(pid, signal.SIGTERM)
        if not self._wait_gone(pid, grace):
            self.on_event(name, f"still running after {grace:g}s; killing")
            self._kill_session(pid)
        self._clear_pid(name)
        return True

    def kill(self, name: str) -> bool:
        """SIGKILL every process of the component at once (a crash); False if not running."""
        self._check_name(name)
        pid = self.pid(name)
        if pid is None:
            self._kill_orphans(name)
            return False
        self._kill_session(pid)
        self._clear_pid(name)
        return True

    def restart(self, name: str, timeout: float | None = None) -> None:
        self.stop(name)
        self.start(name, timeout=timeout)

    def wait_ready(self, name: str, timeout: float | None = None) -> None:
        """Block until `name` is ready; raise `LocalStackError` (with the log's tail) if its
        process exits or `timeout` seconds pass."""
        timeout = self.config.ready_timeout_s if timeout is None else timeout
        started = time.monotonic()
        deadline = started + timeout
        while True:
            pid = self.pid(name)
            if pid is None:
                code = self._exit_code(name)
                how = f" with exit code {code}" if code is not None else ""
                raise LocalStackError(f"{name} exited{how} while starting\n{self._tail(name)}")
            if self._ready_after_start(name):
                self.on_event(name, f"ready in {time.monotonic() - started:.1f}s")
                return
            if time.monotonic() > deadline:
                raise LocalStackError(f"{name} was not ready after {timeout:g}s\n"
                                      f"{self._tail(name)}")
            time.sleep(0.2)

    # -- inspection -----------------------------------------------------------------------------
    def pid(self, name: str) -> int | None:
        """The pid of the running component, or None (a stale pid file counts as stopped)."""
        proc = self._procs.get(name)
        if proc is not None:
            proc.poll()  # reap it if it exited, so that it does not linger as a zombie
        try:
            pid = int(self._pid_path(name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        if proc is not None and proc.pid == pid and proc.returncode is None:
            return pid  # our own child, alive (its command line may still be mid-exec)
        return pid if _is_our_process(pid, self._marker(name)) else None

    def is_running(self, name: str) -> bool:
        return self.pid(name) is not None

    def is_ready(self, name: str) -> bool:
        """Whether the component answers its readiness check right now."""
        check = {"redis": self._redis_ready, "ray": self._ray_ready, "api": self._api_ready,
                 "dispatcher": self._dispatcher_ready,
                 "prometheus": self._prometheus_ready}[name]
        try:
            return check()
        except Exception:  # noqa: BLE001 - any failure of a probe means "not ready"
            return False

    def address(self, name: str) -> str:
        """Where the component listens, in one short line."""
        c = self.config
        ray = (f"{c.ray_address} (external)" if c.external_ray
               else f"{c.ray_address}, dashboard :{c.ray_dashboard_port}")
        return {"redis": f"{c.host}:{c.redis_port}",
                "ray": ray,
                "api": f"{c.api_address}, metrics :{c.api_metrics_port}",
                "dispatcher": f"serve http :{c.serve_http_port} grpc :{c.serve_grpc_port}, "
                              f"metrics :{c.dispatcher_metrics_port}",
                "prometheus": c.prometheus_url}[name]

    def log_path(self, name: str) -> Path:
        return self.config.logs_dir / f"{name}.log"

    def session_pids(self, name: str) -> list[int]:
        """Every live process of the component (its session), e.g. for tests."""
        pid = self.pid(name)
        return session_members(pid) if pid else []

    def ray_env(self) -> dict[str, str]:
        """Environment a Ray driver needs to join this stack's Ray head (`ray.init(address=
        stack.config.ray_address)`); the dispatcher gets it, tests that call Ray need it too.

        - On loopback, Ray must not swap 127.0.0.1 for the machine's public IP, which it does
          unless told that this is a one-node cluster.
        - The auth mode is explicit: left unset, Ray 2.60 turns token auth on for a head only
          if ~/.ray/auth_token happens to exist, and a driver may decide differently from
          the head. With token auth the token is this stack's own, in `<state>/run/`.
        - An external cluster (`ray_external_address`) has nodes of its own: the one-node
          switch would keep the driver from finding them; its token is `ray_token_file`
          (else Ray's default, ~/.ray/auth_token).
        """
        if self.config.external_ray:
            return self._external_ray_env()
        env = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"} if self.config.loopback else {}
        if self.config.ray_token_auth:
            env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(self._ray_token()))
        else:
            env["RAY_AUTH_MODE"] = "disabled"
        return env

    def _external_ray_env(self) -> dict[str, str]:
        if not self.config.ray_token_auth:
            return {"RAY_AUTH_MODE": "disabled"}
        env = {"RAY_AUTH_MODE": "token"}
        if self.config.ray_token_file:
            path = Path(self.config.ray_token_file).expanduser().absolute()
            if not path.is_file():
                raise LocalStackError(f"the Ray token file {path} does not exist (the token "
                                      f"of the cluster at {self.config.ray_address})")
            env["RAY_AUTH_TOKEN_PATH"] = str(path)
        return env

    def _ray_token(self) -> Path:
        """This stack's Ray auth token file (created on first use, readable by us only)."""
        return secret_file(self.config.run_dir / "ray-auth-token")

    # -- ports ----------------------------------------------------------------------------------
    def ports(self, name: str) -> list[PortUse]:
        """The fixed ports `name` binds. Serve's ports count as the dispatcher's only while our
        Ray head is down: once it runs, Serve's proxies inside it hold them (and with an
        external Ray cluster they are that cluster's)."""
        c = self.config
        uses = {
            "redis": [PortUse(c.redis_port, "redis", "--redis-port")],
            "ray": [PortUse(c.ray_gcs_port, "Ray GCS", "--ray-port"),
                    PortUse(c.ray_dashboard_port, "Ray dashboard", "--dashboard-port")],
            "api": [PortUse(c.api_port, "job API", "--api-port"),
                    PortUse(c.api_metrics_port, "job API metrics", "--metrics-port")],
            "dispatcher": [PortUse(c.dispatcher_metrics_port, "dispatcher metrics",
                                   "--dispatcher-metrics-port")],
            "prometheus": [PortUse(c.prometheus_port, "Prometheus", "--prometheus-port")],
        }[name]
        if name == "dispatcher" and not self.config.external_ray \
                and not self.is_running("ray"):
            uses += [PortUse(c.serve_http_port, "Serve HTTP", "--serve-http-port"),
                     PortUse(c.serve_grpc_port, "Serve gRPC", "--serve-grpc-port")]
        return [u for u in uses if u.port]  # 0 disables a metrics endpoint

    def check_ports(self, names: Iterable[str], settle: float = 2.0) -> None:
        """Raise `PortInUse` naming the first port of `names` that something else holds.

        A port is given `settle` seconds to come free: the kernel releases the sockets of a
        process that was just killed a moment after the process is gone."""
        seen: dict[int, str] = {}
        for name in names:
            for use in self.ports(name):
                if use.port in seen:
                    raise LocalStackError(f"port {use.port} is configured twice: for "
                                          f"{seen[use.port]} and for {use.what}")
                seen[use.port] = use.what
                if _port_stays_in_use(self.config.host, use.port, settle):
                    raise PortInUse(name, use.what, self.config.host, use.port, use.flag)

    # -- launching ------------------------------------------------------------------------------
    def _launch_spec(self, name: str) -> tuple[list[str], dict[str, str], dict]:
        """(argv, environment, metadata to record) of one component."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop(REDIS_PASSWORD_ENV, None)
        if name in ("api", "dispatcher") and self.config.redis_password:
            env[REDIS_PASSWORD_ENV] = self.config.redis_password  # not on the command line
        if name == "redis":
            return [_redis_server(), str(self.write_redis_conf())], env, {}
        if name == "prometheus":
            return self._prometheus_command(), env, {}
        # Ray and the dispatcher (a Ray driver) must agree on the node address and auth.
        env.pop("RAY_ADDRESS", None)
        env.pop("RAY_AUTH_TOKEN", None)  # the token file of ray_env() is the one to use
        env.update(self.ray_env())
        if name == "ray":
            return self._ray_command(), self._ray_head_env(env), {}
        if name == "api":
            return self._api_command(), env, {}
        # A fresh consumer name per start: readiness waits for *this* process's heartbeat,
        # not the stale one of a dispatcher that was just killed.
        consumer = f"local-{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        return self._dispatcher_command(consumer), env, {"consumer": consumer}

    def _service_args(self) -> list[str]:
        c = self.config
        c.storage_path.mkdir(parents=True, exist_ok=True)
        return ["--redis-url", c.redis_address_url, "--storage-dir", str(c.storage_path),
                "--serve-http", c.serve_http, "--serve-grpc", c.serve_grpc,
                "--metrics-host", c.host]

    def _api_command(self) -> list[str]:
        c = self.config
        # Without api_auth: the API's loopback-only development mode (it refuses otherwise).
        auth = (["--admin-token-file", str(c.admin_token_path)] if c.api_auth
                else ["--insecure"])
        return [sys.executable, "-m", "trainserve.api", "--listen", c.api_address,
                *self._service_args(), "--metrics-port", str(c.api_metrics_port), *auth,
                *_set_flags({"--user-max-queued": c.user_max_queued,
                             "--user-max-streams": c.user_max_streams,
                             "--job-retention-s": c.job_retention_s})]

    def _dispatcher_command(self, consumer: str) -> list[str]:
        c = self.config
        return [sys.executable, "-m", "trainserve.dispatch", "--ray-address", c.ray_address,
                *self._service_args(), "--metrics-port", str(c.dispatcher_metrics_port),
                "--consumer", consumer, *self._inference_auth_args(),
                *(f"--serve-option={k}={v}" for k, v in c.serve_options().items()),
                *_set_flags({"--user-max-jobs": c.user_max_jobs,
                             "--job-retention-s": c.job_retention_s})]

    def _inference_auth_args(self) -> list[str]:
        """With `inference_auth`, the token file the gateway checks (created empty, mode
        0600, if missing: then no token is accepted until `trainserve token create`)."""
        if not self.config.inference_auth:
            return []
        from trainserve.serve.auth import ensure_file
        return ["--inference-token-file", str(ensure_file(self.config.inference_token_path))]

    def _prometheus_binary(self) -> str:
        from trainserve.monitoring import PrometheusNotInstalled, prometheus_binary
        try:
            return prometheus_binary()
        except PrometheusNotInstalled as exc:
            raise LocalStackError(f"{exc}; or start the stack without --with-prometheus") \
                from None

    def _prometheus_command(self) -> list[str]:
        from trainserve.monitoring import prometheus_command
        self._prometheus_binary()
        c = self.config
        return prometheus_command(self.write_prometheus_config(), c.prometheus_dir / "data",
                                  c.host, c.prometheus_port)

    def write_prometheus_config(self) -> Path:
        """Write `<state>/prometheus/prometheus.yml` (regenerated on every start)."""
        from trainserve.monitoring import prometheus_config
        self.config.prometheus_dir.mkdir(parents=True, exist_ok=True)
        path = self.config.prometheus_dir / "prometheus.yml"
        path.write_text(prometheus_config(self.config))
        return path

    def _ray_command(self) -> list[str]:
        c = self.config
        ray = Path(sys.executable).with_name("ray")
        cmd = [str(ray) if ray.exists() else (shutil.which("ray") or "ray"),
               "start", "--head", "--block", "--disable-usage-stats",
               f"--node-ip-address={c.host}", f"--port={c.ray_gcs_port}",
               "--include-dashboard=true", f"--dashboard-host={c.host}",
               f"--dashboard-port={c.ray_dashboard_port}", f"--temp-dir={c.ray_temp_path}",
               # Ray's defaults for these are fixed ports (10001, 52365) that a second
               # stack on the same machine would collide with; nobody needs them fixed.
               # Spare ones: a configured port (the API's metrics, say) may not be bound yet.
               f"--ray-client-server-port={self._spare_port()}",
               f"--dashboard-agent-listen-port={self._spare_port()}",
               # Workers bind OS-chosen ports instead of Ray's 10002-19999, a range that
               # would otherwise clash with any configured port inside it (Serve's, say).
               "--min-worker-port=0", "--max-worker-port=0"]
        if c.ray_num_cpus is not None:
            cmd.append(f"--num-cpus={c.ray_num_cpus}")
        return cmd

    def _ray_head_env(self, env: dict[str, str]) -> dict[str, str]:
        env = dict(env)
        # One node: draining on SIGTERM has nowhere to move work to and only delays `down`
        # by Ray's default 30 s whenever an actor (Serve) is alive.
        env.setdefault("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "0")
        env.setdefault("RAY_metrics_report_interval_ms",
                       str(self.config.ray_metrics_report_interval_ms))
        # Fixed by default (44217, 44227); free ones keep two stacks from colliding.
        env["AUTOSCALER_METRIC_PORT"] = str(self._spare_port())
        env["DASHBOARD_METRIC_PORT"] = str(self._spare_port())
        from trainserve.serve.config import serve_mode_env
        env.update(serve_mode_env(self.config.serve_mode, self.config.ray_temp_path,
                                  self._spare_port))
        return env

    def _spare_port(self) -> int:
        """A free port that is none of this stack's configured ports: those may be free
        still, their components not started yet (the API starts alongside the Ray head)."""
        c = self.config
        configured = {u.port for name in ALL_COMPONENTS for u in self.ports(name)}
        configured |= {c.serve_http_port, c.serve_grpc_port}
        while (port := free_port(c.host)) in configured:
            pass
        return port

    def _link_ray_logs(self) -> None:
        """`<state>/logs/ray-session` -> Ray's own logs, which live in its short temp dir."""
        link = self.config.logs_dir / "ray-session"
        if not link.is_symlink():
            link.symlink_to(self.config.ray_temp_path / "session_latest" / "logs")

    def write_redis_conf(self) -> Path:
        """Write `<state>/redis/redis.conf` (regenerated on every start, mode 0600: it holds
        the password, made on the first start) and return its path."""
        secret_file(self.config.redis_password_path)
        self.config.redis_dir.mkdir(parents=True, exist_ok=True)
        path = self.config.redis_dir / "redis.conf"
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(redis_conf(self.config))
        return path

    # -- readiness probes -------------------------------------------------------------------------
    def _ready_after_start(self, name: str) -> bool:
        if name == "ray":
            # The dashboard answers before the raylet is up; `ray start` prints this line
            # once the node is complete.
            return RAY_STARTED_LINE in self._log_since_start(name) and self.is_ready(name)
        return self.is_ready(name)

    def _redis_ready(self) -> bool:
        import redis
        client = redis.Redis.from_url(self.config.redis_url, socket_timeout=1,
                                      socket_connect_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()

    def _ray_ready(self) -> bool:
        if self.config.external_ray:  # its dashboard may be elsewhere or off: ask the GCS
            host, port = self.config.ray_address.rsplit(":", 1)
            with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
                return True
        return _http_ok(f"{self.config.dashboard_url}/api/gcs_healthz")

    def api_channel(self):
        """A gRPC channel to this stack's job API that carries its admin token when the API
        requires tokens (`api_auth`)."""
        from trainserve.client import api_channel
        token = self.config.admin_token_path.read_text().strip() if self.config.api_auth else ""
        return api_channel(self.config.api_address, token)

    def _api_ready(self) -> bool:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc
        with grpc.insecure_channel(self.config.api_address,
                                   options=[("grpc.enable_http_proxy", 0)]) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=1)
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    def _prometheus_ready(self) -> bool:
        return _http_ok(f"{self.config.prometheus_url}/-/ready")

    def _dispatcher_ready(self) -> bool:
        import redis
        client = redis.Redis.from_url(self.config.redis_url, socket_timeout=1,
                                      socket_connect_timeout=1)
        try:
            value = client.get(DISPATCHER_READY)
        finally:
            client.close()
        consumer = self._read_meta("dispatcher").get("consumer")
        if value is None or (consumer and value.decode() != consumer):
            return False
        return _http_ok(f"http://{self.config.serve_http}/v2/health/ready")

    # -- pid files and logs -----------------------------------------------------------------------
    def _pid_path(self, name: str) -> Path:
        return self.config.run_dir / f"{name}.pid"

    def _meta_path(self, name: str) -> Path:
        return self.config.run_dir / f"{name}.json"

    def _write_pid(self, name: str, pid: int, meta: dict) -> None:
        self.config.run_dir.mkdir(parents=True, exist_ok=True)
        self._meta_path(name).write_text(json.dumps(meta, indent=1))
        self._pid_path(name).write_text(f"{pid}\n")

    def _read_meta(self, name: str) -> dict:
        try:
            return json.loads(self._meta_path(name).read_text())
        except (OSError, ValueError):
            return {}

    def _clear_pid(self, name: str) -> None:
        self._pid_path(name).unlink(missing_ok=True)
        proc = self._procs.pop(name, None)
        if proc is not None:
            proc.poll()

    def _record_config(self) -> None:
        path = stack_file(self.config.state_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.config.to_dict(), indent=1))

    def _exit_code(self, name: str) -> int | None:
        proc = self._procs.get(name)
        if proc is None:
            return None
        try:
            return proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return None

    def _log_since_start(self, name: str) -> str:
        offset = self._read_meta(name).get("log_offset", 0)
        try:
            with open(self.log_path(name), "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _tail(self, name: str, lines: int = 25) -> str:
        text = self._log_since_start(name).rstrip().splitlines()[-lines:]
        body = "\n".join(f"  {line}" for line in text) or "  (empty)"
        return f"last lines of {self.log_path(name)}:\n{body}"

    # -- helpers ----------------------------------------------------------------------------------
    def _marker(self, name: str) -> str:
        """A string in the process's command line; guards against a reused pid."""
        return {"redis": "redis-server", "ray": str(self.config.ray_temp_path),
                "api": "trainserve.api", "dispatcher": "trainserve.dispatch",
                "prometheus": str(self.config.prometheus_dir)}[name]

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            for proc in self._procs.values():
                proc.poll()
            if not session_members(pid):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)

    def _kill_orphans(self, name: str) -> None:
        """Kill what is left of a component whose leader died (e.g. a raylet whose `ray start`
        was OOM-killed): live processes of its session, if one of them still runs the
        component's command (so a reused session id is never mistaken for ours)."""
        try:
            sid = int(self._pid_path(name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        members = session_members(sid)
        if any(self._marker(name) in cmdline(m) for m in members):
            self.on_event(name, f"killing {len(members)} leftover processes")
            self._kill_session(sid)

    def _kill_session(self, pid: int) -> None:
        for _ in range(50):  # a dying parent may still fork; repeat until the session is empty
            members = session_members(pid)
            if not members:
                return
            for member in members:
                signal_quietly(member, signal.SIGKILL)
            self._wait_gone(pid, 0.2)
        raise LocalStackError(f"processes of session {pid} survive SIGKILL: "
                              f"{session_members(pid)}")

    @staticmethod
    def _check_name(name: str) -> None:
        if name not in ALL_COMPONENTS:
            raise ValueError(f"unknown component {name!r}; known: {', '.join(ALL_COMPONENTS)}")

    def _ordered(self, names: Iterable[str]) -> list[str]:
        names = list(names)
        for name in names:
            self._check_name(name)
        return [n for n in ALL_COMPONENTS if n in names]


# -- module helpers (public ones are used by tests and the CLI) -------------------------------

def redis_conf(config: Config) -> str:
    """The redis.conf of the local stack: loopback only, a password, a memory cap with
    `noeviction`, durable (AOF, fsync per write)."""
    return "\n".join([
        "# Generated by trainserve (local.py) on every start; edits are overwritten.",
        f"bind {config.host}",
        f"port {config.redis_port}",
        # Bound to `host` only; protected mode would additionally refuse clients that are not
        # on loopback when `host` is a LAN address, which is never what `up --host` meant.
        "protected-mode no",
        "daemonize no",
        "supervised no",
        'logfile ""',
        f"dir {_quote(str(config.redis_dir))}",
        # Every client authenticates (the password is in <state>/run/redis-password, 0600):
        # another local user reaching the port can neither read jobs nor write a token.
        *([f"requirepass {_quote(config.redis_password)}"] if config.redis_password else []),
        # A cap, and refusal at the cap (clients see RESOURCE_EXHAUSTED): evicting would
        # silently drop job state, and an unbounded Redis gets OOM-killed and then
        # replays the same data on every restart.
        f"maxmemory {config.redis_maxmemory}",
        "maxmemory-policy noeviction",
        # Redis is the only copy of job state: every write is on disk before it is answered.
        "appendonly yes",
        "appendfsync always",
        # The AOF is the durable copy; periodic RDB snapshots on top only cost I/O.
        'save ""',
        "",
    ])


def secret_file(path: Path) -> Path:
    """`path`, holding a new random secret (hex, mode 0600) unless it exists already."""
    if not path.exists():
        import secrets
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path


def port_in_use(host: str, port: int) -> bool:
    """Whether `port` on `host` is bound by someone. SO_REUSEADDR lets a port that only has
    connections in TIME_WAIT (a component just stopped) count as free, as it is for servers."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _port_stays_in_use(host: str, port: int, settle: float) -> bool:
    deadline = time.monotonic() + settle
    while port_in_use(host, port):
        if time.monotonic() > deadline:
            return True
        time.sleep(0.1)
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, outside the ephemeral range (`trainserve.ports`);
    `host` is where it will be bound (the port is free on every address)."""
    return ports.free_port()


def _redis_server() -> str:
    path = shutil.which("redis-server") or ("/usr/bin/redis-server"
                                             if Path("/usr/bin/redis-server").exists() else None)
    if path is None:
        raise LocalStackError("redis-server is not installed (Debian: apt-get install "
                              "redis-server; ./dev.sh build installs it)")
    return path


def _set_flags(flags: dict[str, int | None]) -> list[str]:
    """`--flag=value` for each setting given (None: the service keeps its own default)."""
    return [f"{flag}={value}" for flag, value in flags.items() if value is not None]


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _http_ok(url: str) -> bool:
    # Loopback probes must not go through an http_proxy from the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def signal_quietly(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, session id) of a process, from /proc."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()  # the command name may contain spaces
    return fields[0], int(fields[3])


def _is_our_process(pid: int, marker: str) -> bool:
    """Alive (not a zombie), a session leader (we start each component with setsid), and
    running the command we expect."""
    if not Path("/proc").is_dir():  # not Linux: trust the pid
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False
    stat = proc_stat(pid)
    if stat is None or stat[0] in "ZX" or stat[1] != pid:
        return False
    return marker in cmdline(pid)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            "utf-8", "replace")
    except OSError:
        return ""


def session_members(sid: int) -> list[int]:
    """Live processes whose session id is `sid`."""
    if not Path("/proc").is_dir():
        out = subprocess.run(["ps", "-A", "-o", "pid=,sess=,stat="], capture_output=True,
                             text=True).stdout.split("\n")
        rows = [line.split() for line in out if line.strip()]
        return [int(p) for p, s, st in rows if int(s) == sid and not st.startswith("Z")]
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = proc_stat(int(entry))
            if stat and stat[1] == sid and stat[0] not in "ZX":
                members.append(int(entry))
    return members

