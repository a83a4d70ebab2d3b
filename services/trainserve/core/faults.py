"""Fault-injection points for the crash tests: a process can be made to stop at a named point
(mid checkpoint write, after registering a model) so that a test kills it exactly there.

Inert unless the environment variable `TRAINSERVE_FAULT_DIR` names a folder *and* a test has
armed the point by creating the file `<folder>/<key>.<point>` in it: then the process that
reaches the point renames the file to `<key>.<point>.paused` (one process, once), writes its
pid into it and sleeps until it is killed, or `HOLD_S` passes, or the file is removed. In
production the variable is unset and `pause_point` returns at once.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

ENV = "TRAINSERVE_FAULT_DIR"
HOLD_S = 600.0
ANY = "any"  # a key that arms the point for whichever job reaches it first


def pause_point(point: str, key: str) -> None:
    """Stop here if a test armed `point` for `key` (a job id); see the module docstring."""
    folder = os.environ.get(ENV)
    if not folder:
        return
    for k in (key, ANY):
        armed = Path(folder) / f"{k}.{point}"
        paused = armed.with_name(armed.name + ".paused")
        try:
            os.rename(armed, paused)  # atomic: exactly one process takes the arm
            break
        except OSError:
            continue
    else:
        return
    paused.write_text(str(os.getpid()))
    deadline = time.monotonic() + HOLD_S
    while time.monotonic() < deadline and paused.exists():
        time.sleep(0.05)


def arm(folder: Path, key: str, point: str) -> Path:
    """Arm `point` for `key`; returns the file that appears (with the pid) once paused."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    paused = Path(folder) / f"{key}.{point}.paused"
    paused.unlink(missing_ok=True)  # left by an earlier pause at the same point
    (Path(folder) / f"{key}.{point}").touch()
    return paused
