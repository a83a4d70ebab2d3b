"""What a component of the local stack is: one declaration (`Component`) that says how to
start it, what it needs first, how to tell that it is ready, which ports it binds and how
long it may take to stop. The supervisor (trainserve.local.supervisor) knows nothing else
about any component; adding one is adding a declaration to trainserve.local.components.

Also the small helpers the declarations share.
"""
from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Protocol

from trainserve.local.settings import Config, flag


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


def port_use(config: Config, setting: str, what: str) -> PortUse:
    """The port of `setting` (e.g. "redis_port"), for `what`."""
    return PortUse(getattr(config, setting), what, flag(setting))


class Launch(NamedTuple):
    """One start of a component: its command line, its environment, and what to record
    beside its pid (read back by its readiness check)."""
    argv: list[str]
    env: dict[str, str]
    meta: dict


class Stack(Protocol):
    """What a declaration may ask of the supervisor (trainserve.local.LocalStack)."""
    config: Config

    def is_running(self, name: str) -> bool: ...

    def meta(self, name: str) -> dict: ...

    def spare_port(self) -> int: ...


def _no_ports(stack: Stack) -> list[PortUse]:
    return []


def _always(config: Config) -> bool:
    return True


def _here(config: Config) -> str:
    return ""


def _nothing(stack: Stack) -> None:
    return None


@dataclass(frozen=True)
class Component:
    """One process of the local stack (with whatever it forks: its session), declared."""

    name: str
    # Its start: (argv, environment, metadata), given the environment every component gets.
    launch: Callable[[Stack, dict[str, str]], Launch]
    # Whether it answers right now; an exception counts as "not ready".
    ready: Callable[[Stack], bool]
    # A string in its command line: tells our process from another that reused its pid.
    marker: Callable[[Config], str]
    # Where it listens, in one short line (`trainserve status`).
    address: Callable[[Config], str]
    # The fixed ports it binds, checked free before it starts.
    ports: Callable[[Stack], list[PortUse]] = _no_ports
    # What must be ready before it starts (`up` starts the rest alongside).
    needs: tuple[str, ...] = ()
    # Seconds from SIGTERM to SIGKILL of whatever of its session is left.
    stop_grace_s: float = 15.0
    # Started only when the settings ask for it (`runs`), after the others.
    optional: bool = False
    runs: Callable[[Config], bool] = _always
    # Non-empty when the settings name one running elsewhere that the stack uses instead of
    # starting its own: says which (e.g. "the Ray cluster at 10.0.0.5:6379").
    elsewhere: Callable[[Config], str] = _here
    # A line its log shows once it is complete, checked besides `ready` after a start.
    started_line: str = ""
    # Refuses (LocalStackError) before anything starts, e.g. for want of a binary.
    precheck: Callable[[Stack], None] = _nothing
    # Runs once its process is started.
    after_start: Callable[[Stack], None] = _nothing


# -- helpers of the declarations ----------------------------------------------------------------

def secret_file(path: Path) -> Path:
    """`path`, holding a new random secret (hex, mode 0600) unless it exists already."""
    if not path.exists():
        import secrets
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path


def set_flags(flags: dict[str, int | None]) -> list[str]:
    """`--flag=value` for each setting given (None: the service keeps its own default)."""
    return [f"{flag}={value}" for flag, value in flags.items() if value is not None]


def http_ok(url: str) -> bool:
    # Loopback probes must not go through an http_proxy from the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False
