"""The supervisor of the local stack: starts each declared component as a detached process
of its own session, waits until it is ready, stops it (SIGTERM, then SIGKILL of whatever of
its session is left), and says what runs. What a component is comes from its declaration
(trainserve.local.components); this module knows no component by name."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from trainserve.local import system
from trainserve.local.component import Component, Launch, LocalStackError, PortInUse, PortUse
from trainserve.local.components import ALL_COMPONENTS, DECLARED, declared
from trainserve.local.components.ray import driver_env
from trainserve.local.runfiles import RunFiles
from trainserve.core.locations import default_state_dir
from trainserve.local.settings import Config, recorded_config
from trainserve.store.redis import REDIS_PASSWORD_ENV


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
        self.files = RunFiles(self.config)
        # Children started by this object, kept so that their exit is reaped (no zombies).
        self._procs: dict[str, subprocess.Popen] = {}

    @classmethod
    def from_state_dir(cls, state_dir: Path | str | None = None, **kwargs) -> "LocalStack":
        """The stack as `up` last recorded it in `state_dir` (its ports), or the defaults."""
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
        """The components this config runs, in start order: not one the stack uses from
        elsewhere (an external Ray cluster), nor an optional one it does not ask for."""
        return tuple(c.name for c in DECLARED if c.runs(self.config)
                     and not c.elsewhere(self.config))

    def up(self, components: Iterable[str] | None = None,
           timeout: float | None = None) -> list[str]:
        """Start the given components (default: `components`) in order, each once what it
        needs is ready, and wait until all are ready.

        Components already running are left alone (an `up` of a running stack is a no-op);
        returns the names started. Every port is checked before anything starts. If one
        component fails, those started by this call are stopped again and the error raised.
        """
        names = self._ordered(self.components if components is None else components)
        todo = [n for n in names if not self.is_running(n)]
        for name in todo:
            declared(name).precheck(self)  # refuse before anything starts
        self.check_ports(todo)
        self.files.record_config()
        started: list[str] = []
        try:
            self._start_in_order(todo, started, timeout)
        except BaseException:
            for name in reversed(started):
                self.stop(name)
            raise
        return started

    def _start_in_order(self, todo: list[str], started: list[str], timeout: float | None):
        waiting: list[str] = []  # started, readiness not yet seen
        for name in todo:
            # Each starts once what it needs is ready, alongside what it does not need
            # (the API's start overlaps the Ray head's).
            for need in [n for n in waiting if n in declared(name).needs]:
                self.wait_ready(need, timeout)
                waiting.remove(need)
            self.start(name, wait=False, check=False)
            started.append(name)
            waiting.append(name)
        for name in waiting:
            self.wait_ready(name, timeout)

    def down(self, components: Iterable[str] = ALL_COMPONENTS,
             grace: float | None = None) -> list[str]:
        """Stop the given components, last started first; returns the names that were running."""
        stopped = []
        for name in reversed(self._ordered(components)):
            if self.stop(name, grace=grace):
                stopped.append(name)
        return stopped

    def status(self) -> list[ComponentStatus]:
        """Each component this config runs, one used from elsewhere (running and ready: it
        answers), and an optional one that runs anyway."""
        return [self.component_status(c.name) for c in DECLARED
                if c.name in self.components or c.elsewhere(self.config)
                or self.is_running(c.name)]

    def component_status(self, name: str) -> ComponentStatus:
        log = self.log_path(name)
        if declared(name).elsewhere(self.config) and not self.is_running(name):
            up = self.is_ready(name)
            return ComponentStatus(name, up, None, self.address(name), up, log)
        pid = self.pid(name)
        running = pid is not None
        return ComponentStatus(name, running, pid, self.address(name),
                               running and self.is_ready(name), log)

    # -- one component ------------------------------------------------------------------------
    def start(self, name: str, wait: bool = True, timeout: float | None = None,
              check: bool = True) -> bool:
        """Start one component (detached) unless it runs; False if it was already running.

        With `wait`, block until it is ready or raise `LocalStackError` with the log's tail
        (the component is stopped again then)."""
        component = declared(name)
        if self.is_running(name):
            return False
        if where := component.elsewhere(self.config):
            raise LocalStackError(f"this stack uses {where}; it does not start {name} itself")
        if check:
            self.check_ports([name])
        self.files.record_config()
        proc = self._spawn(component, self.launch(name))
        if wait:
            try:
                self.wait_ready(name, timeout)
            except BaseException:
                if not self.stop(name):
                    self._kill_session(proc.pid)  # whatever it left behind, e.g. children
                    self.files.clear(name)
                raise
        return True

    def _spawn(self, component: Component, launch: Launch) -> subprocess.Popen:
        name = component.name
        log_path = self.log_path(name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            offset = log.tell()
            log.write(f"==== trainserve: starting {name} at {time.ctime()}: "
                      f"{' '.join(launch.argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(launch.argv, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=launch.env,
                                    start_new_session=True, cwd=self.config.state_dir)
        self._procs[name] = proc
        component.after_start(self)
        meta = dict(launch.meta, pid=proc.pid, started_at=time.time(), log_offset=offset,
                    cmd=launch.argv)
        self.files.write(name, proc.pid, meta)
        self.on_event(name, f"started (pid {proc.pid})")
        return proc

    def stop(self, name: str, grace: float | None = None) -> bool:
        """SIGTERM the component, then SIGKILL whatever of its session is left after `grace`
        seconds (default: its declared stop grace). Returns False if it was not running."""
        component = declared(name)
        pid = self.pid(name)
        if pid is None:
            self._kill_orphans(name)
            self._clear(name)
            return False
        grace = component.stop_grace_s if grace is None else grace
        self.on_event(name, f"stopping (pid {pid})")
        system.signal_quietly(pid, signal.SIGTERM)
        if not self._wait_gone(pid, grace):
            self.on_event(name, f"still running after {grace:g}s; killing")
            self._kill_session(pid)
        self._clear(name)
        return True

    def kill(self, name: str) -> bool:
        """SIGKILL every process of the component at once (a crash); False if not running."""
        declared(name)
        pid = self.pid(name)
        if pid is None:
            self._kill_orphans(name)
            return False
        self._kill_session(pid)
        self._clear(name)
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
            if self.pid(name) is None:
                code = self._exit_code(name)
                how = f" with exit code {code}" if code is not None else ""
                raise LocalStackError(f"{name} exited{how} while starting\n"
                                      f"{self.files.tail(name)}")
            if self._ready_after_start(name):
                self.on_event(name, f"ready in {time.monotonic() - started:.1f}s")
                return
            if time.monotonic() > deadline:
                raise LocalStackError(f"{name} was not ready after {timeout:g}s\n"
                                      f"{self.files.tail(name)}")
            time.sleep(0.2)

    def _ready_after_start(self, name: str) -> bool:
        line = declared(name).started_line
        if line and line not in self.log_since_start(name):
            return False
        return self.is_ready(name)

    # -- inspection -----------------------------------------------------------------------------
    def pid(self, name: str) -> int | None:
        """The pid of the running component, or None (a stale pid file counts as stopped)."""
        proc = self._procs.get(name)
        if proc is not None:
            proc.poll()  # reap it if it exited, so that it does not linger as a zombie
        pid = self.files.recorded_pid(name)
        if pid is None:
            return None
        if proc is not None and proc.pid == pid and proc.returncode is None:
            return pid  # our own child, alive (its command line may still be mid-exec)
        return pid if system.is_our_process(pid, self._marker(name)) else None

    def is_running(self, name: str) -> bool:
        return self.pid(name) is not None

    def is_ready(self, name: str) -> bool:
        """Whether the component answers its readiness check right now."""
        try:
            return declared(name).ready(self)
        except Exception:  # noqa: BLE001 - any failure of a probe means "not ready"
            return False

    def address(self, name: str) -> str:
        """Where the component listens, in one short line."""
        return declared(name).address(self.config)

    def log_path(self, name: str) -> Path:
        return self.files.log_path(name)

    def log_since_start(self, name: str) -> str:
        return self.files.log_since_start(name)

    def meta(self, name: str) -> dict:
        """What was recorded when `name` last started (e.g. the dispatcher's consumer)."""
        return self.files.meta(name)

    def session_pids(self, name: str) -> list[int]:
        """Every live process of the component (its session), e.g. for tests."""
        pid = self.pid(name)
        return system.session_members(pid) if pid else []

    def launch(self, name: str) -> Launch:
        """How `name` would start now: its command line, environment and start record."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop(REDIS_PASSWORD_ENV, None)  # only the services that need it get it
        return declared(name).launch(self, env)

    def ray_env(self) -> dict[str, str]:
        """Environment a Ray driver needs to join this stack's Ray cluster (see
        `trainserve.local.components.ray.driver_env`)."""
        return driver_env(self.config)

    def api_channel(self):
        """A gRPC channel to this stack's job API that carries its admin token when the API
        requires tokens (`api_auth`)."""
        from trainserve.client import api_channel
        token = self.config.admin_token_path.read_text().strip() if self.config.api_auth else ""
        return api_channel(self.config.api_address, token)

    # -- ports ----------------------------------------------------------------------------------
    def ports(self, name: str) -> list[PortUse]:
        """The fixed ports `name` binds now; port 0 (a metrics endpoint turned off) is none."""
        return [u for u in declared(name).ports(self) if u.port]

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
                if system.port_stays_in_use(self.config.host, use.port, settle):
                    raise PortInUse(name, use.what, self.config.host, use.port, use.flag)

    def spare_port(self) -> int:
        """A free port that is none of this stack's configured ports: those may be free
        still, their components not started yet (the API starts alongside the Ray head)."""
        c = self.config
        configured = {u.port for name in ALL_COMPONENTS for u in self.ports(name)}
        configured |= {c.serve_http_port, c.serve_grpc_port}
        while (port := system.free_port(c.host)) in configured:
            pass
        return port

    # -- processes ------------------------------------------------------------------------------
    def _marker(self, name: str) -> str:
        return declared(name).marker(self.config)

    def _clear(self, name: str) -> None:
        self.files.clear(name)
        proc = self._procs.pop(name, None)
        if proc is not None:
            proc.poll()

    def _exit_code(self, name: str) -> int | None:
        proc = self._procs.get(name)
        if proc is None:
            return None
        try:
            return proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return None

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            for proc in self._procs.values():
                proc.poll()
            if not system.session_members(pid):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)

    def _kill_orphans(self, name: str) -> None:
        """Kill what is left of a component whose leader died (e.g. a raylet whose `ray start`
        was OOM-killed): live processes of its session, if one of them still runs the
        component's command (so a reused session id is never mistaken for ours)."""
        sid = self.files.recorded_pid(name)
        if sid is None:
            return
        members = system.session_members(sid)
        if any(self._marker(name) in system.cmdline(m) for m in members):
            self.on_event(name, f"killing {len(members)} leftover processes")
            self._kill_session(sid)

    def _kill_session(self, pid: int) -> None:
        for _ in range(50):  # a dying parent may still fork; repeat until the session is empty
            members = system.session_members(pid)
            if not members:
                return
            for member in members:
                system.signal_quietly(member, signal.SIGKILL)
            self._wait_gone(pid, 0.2)
        raise LocalStackError(f"processes of session {pid} survive SIGKILL: "
                              f"{system.session_members(pid)}")

    @staticmethod
    def _ordered(names: Iterable[str]) -> list[str]:
        names = list(names)
        for name in names:
            declared(name)
        return [n for n in ALL_COMPONENTS if n in names]
