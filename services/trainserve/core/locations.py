"""Where trainserve keeps its state on this machine, and how a client finds the job API of the
local stack started here.

`trainserve up` (trainserve.local) records the settings it started with in
`<state_dir>/run/stack.json`; the SDK reads the job API's address and the admin token from
there, and the services take their default storage folder from the same state folder. The
settings themselves are `trainserve.local.Config`; this module knows only the folder layout
they share with the clients and services, which may not import the local stack.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

# Every setting `X` of the local stack is the environment variable `TRAINSERVE_X`.
ENV_PREFIX = "TRAINSERVE_"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_API_PORT = 50051
DEFAULT_API = f"{DEFAULT_HOST}:{DEFAULT_API_PORT}"


def env_name(setting: str) -> str:
    """The environment variable of a setting: `redis_port` -> `TRAINSERVE_REDIS_PORT`."""
    return ENV_PREFIX + setting.upper()


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """`$TRAINSERVE_STATE_DIR`, else `~/.trainserve`."""
    env = os.environ if env is None else env
    return Path(env.get(env_name("state_dir")) or Path.home() / ".trainserve").expanduser()


def storage_dir(state_dir: Path, explicit: str = "") -> Path:
    """Checkpoints, model versions and datasets: `explicit`, else `<state_dir>/storage`."""
    return Path(explicit).expanduser() if explicit else Path(state_dir) / "storage"


def default_storage_dir(env: Mapping[str, str] | None = None) -> Path:
    """`$TRAINSERVE_STORAGE_DIR`, else the default state folder's `storage/`."""
    env = os.environ if env is None else env
    return storage_dir(default_state_dir(env).absolute(), env.get(env_name("storage_dir"), ""))


def run_dir(state_dir: Path) -> Path:
    """Pid files, secrets (mode 0600) and the record of the running stack."""
    return Path(state_dir) / "run"


def stack_file(state_dir: Path) -> Path:
    """The settings `trainserve up` last started the stack in `state_dir` with."""
    return run_dir(state_dir) / "stack.json"


def admin_token_file(state_dir: Path) -> Path:
    """The local admin's job API token (mode 0600), made by the API on its first start."""
    return run_dir(state_dir) / "admin-token"


def recorded_stack(state_dir: Path | None = None) -> dict[str, Any] | None:
    """The settings recorded in `state_dir` (default: the default state folder), as saved."""
    try:
        doc = json.loads(stack_file(state_dir or default_state_dir()).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _recorded_api(env: Mapping[str, str]) -> tuple[str, Path] | None:
    """(job API address, state folder) of the stack recorded in the default state folder."""
    doc = recorded_stack(default_state_dir(env))
    try:
        return f"{doc['host']}:{int(doc['api_port'])}", Path(doc["state_dir"])
    except (TypeError, KeyError, ValueError):
        return None


def api_address(explicit: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The job API a client should call: `explicit`, else `$TRAINSERVE_API`, else the API of
    the local stack recorded in the state folder, else 127.0.0.1:50051."""
    env = os.environ if env is None else env
    if explicit:
        return explicit
    if env.get(ENV_PREFIX + "API"):
        return env[ENV_PREFIX + "API"]
    recorded = _recorded_api(env)
    return recorded[0] if recorded else DEFAULT_API


def api_token(address: str, env: Mapping[str, str] | None = None) -> str | None:
    """The job API bearer token for `address`: `$TRAINSERVE_TOKEN`, else the admin token of
    the local stack recorded in the state folder when `address` is its API, else None."""
    env = os.environ if env is None else env
    if env.get(ENV_PREFIX + "TOKEN"):
        return env[ENV_PREFIX + "TOKEN"]
    recorded = _recorded_api(env)
    if recorded is None or recorded[0] != address:
        return None
    try:
        return admin_token_file(recorded[1]).read_text().strip() or None
    except OSError:
        return None
