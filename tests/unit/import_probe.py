"""Imports each module named on stdin in a process of its own, and prints one JSON line per
module that fails: `{"module": ..., "error": ...}`.

The third-party libraries every module leans on (torch, Ray, gRPC, ...) are imported once
here, before forking, so each child pays only for our own code. No module of ours is
imported before the fork, which is what makes each import "alone": a cycle among our
modules still shows up as the ImportError of a partly initialised module.

    python tests/unit/import_probe.py [JOBS] < modules.txt
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import traceback

PRELOAD = ("numpy", "torch", "ray", "grpc", "google.protobuf", "redis", "yaml",
           "matplotlib", "starlette", "httpx")


def preload() -> None:
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional library: the child imports it (or fails) itself
            pass


def child(module: str, write_fd: int) -> None:
    try:
        importlib.import_module(module)
        code = 0
    except BaseException:  # noqa: BLE001 - any failure to import is the finding
        os.write(write_fd, traceback.format_exc(limit=3).encode()[-4000:])
        code = 1
    os._exit(code)


def start(module: str) -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        child(module, write_fd)
    os.close(write_fd)
    return pid, read_fd


def finish(pid: int, read_fd: int) -> tuple[int, str]:
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")


def main(jobs: int) -> None:
    modules = [line.strip() for line in sys.stdin if line.strip()]
    preload()
    running: dict[int, tuple[str, int]] = {}
    while modules or running:
        while modules and len(running) < jobs:
            module = modules.pop(0)
            pid, read_fd = start(module)
            running[pid] = (module, read_fd)
        pid = next(iter(running))  # read in start order; the pipe drains as the child runs
        module, read_fd = running.pop(pid)
        code, err = finish(pid, read_fd)
        if code:
            print(json.dumps({"module": module, "error": err.strip().splitlines()[-1:]}),
                  flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else os.cpu_count() or 2)
