"""Shared bench plumbing: a throwaway local stack on free ports, and the results table."""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from trainserve.local import free_port  # noqa: F401 - the one free-port helper

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


@contextmanager
def local_stack(num_cpus: int = 2, **settings):
    """The real local stack on free ports in a temp folder, torn down afterwards; `settings`
    are more of its `Config`'s."""
    from trainserve.local import Config, LocalStack, port_settings

    root = Path(tempfile.mkdtemp(prefix="ts-bench-"))
    ports = {f: free_port() for f in port_settings()}
    ready: dict[str, float] = {}  # component -> seconds after `up` began when it was ready

    def on_event(name: str, message: str) -> None:
        if message.startswith("ready"):
            ready[name] = time.perf_counter() - t0
    stack = LocalStack(Config(state_dir=root / "state", ray_num_cpus=num_cpus,
                              ray_temp_dir=str(root / "ray"), **ports, **settings), on_event)
    t0 = time.perf_counter()
    stack.up()
    stack.bench_up_s = time.perf_counter() - t0  # what `trainserve up` takes to ready
    stack.bench_ready_s = ready
    print(f"stack up in {stack.bench_up_s:.1f} s", file=sys.stderr)
    try:
        yield stack
    finally:
        stack.down()


def meets(value: float | None, target: str | None) -> bool | None:
    """Whether `value` meets `target`, a string like "<= 1.2" or ">= 500" (None: no verdict)."""
    if value is None or not target:
        return None
    op, bound = target.split()
    return value <= float(bound) if op == "<=" else value >= float(bound)


def row(fig: str, ours: float, base: float | None = None, target: str | None = None, *,
        on: str = "ratio", note: str | None = None, spread: str | None = None,
        errors: str | int | None = None) -> dict:
    """A table row. `target` like "<= 0.25" applies to the ratio ours/baseline, or with
    `on="ours"` to the figure itself (e.g. "<= 2" seconds). `spread`: how far the repeats
    behind the figure lie apart; `errors`: failed requests (ours / baseline)."""
    ratio = (ours / base) if base else None
    out = {"figure": fig, "ours": ours, "baseline": base, "ratio": ratio}
    if target:
        shown = target if on == "ratio" else f"{target} abs"
        out.update(target=shown, met=meets(ratio if on == "ratio" else ours, target))
    for key, value in (("note", note), ("spread", spread), ("errors", errors)):
        if value is not None:
            out[key] = value
    return out


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def spread(xs) -> str:
    """How far repeats of one figure lie apart: "min-max over n"."""
    return f"{min(xs):.3g}-{max(xs):.3g} over {len(xs)}" if xs else "no samples"


def provenance() -> dict:
    """What a result was measured on: the commit (and whether the tree had changes), the
    versions that matter, the machine."""
    import os
    import platform
    import subprocess

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip()
    versions = {}
    for package in ("torch", "ray", "grpcio", "redis"):
        try:
            from importlib.metadata import version
            versions[package] = version(package)
        except Exception:  # noqa: BLE001 - not installed: say so
            versions[package] = None
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain")),
            "python": platform.python_version(), "versions": versions,
            "machine": {"cpus": os.cpu_count(), "processor": _cpu_model(),
                        "memory_gib": _memory_gib(), "system": platform.platform()}}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor()


def _memory_gib() -> float | None:
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return round(kib / 2**20, 1)


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(f"{'figure':58} {'ours':>12} {'baseline':>12} {'ratio':>7} {'target':>10} met  "
          "spread / errors")
    for r in rows:
        base = r.get("baseline")
        ratio = r.get("ratio")
        met = {True: "yes", False: "NO"}.get(r.get("met"), "")
        extra = "  ".join(str(r[k]) for k in ("spread", "errors") if r.get(k) is not None)
        print(f"{r['figure']:58} {r['ours']:>12.4g} "
              f"{(f'{base:.4g}' if base is not None else '-'):>12} "
              f"{(f'{ratio:.2f}' if ratio is not None else '-'):>7} "
              f"{r.get('target') or '':>10} {met:4} {extra}")


def load_average() -> float:
    import os
    return os.getloadavg()[0]


LOAD_AT_START = load_average()


def save(name: str, rows: list[dict], meta: dict) -> Path:
    """bench/results/<name>.json: the rows, what they were measured on, and the machine's
    1-minute load average when the bench process started and now (other work on a shared
    machine moves absolute figures, and can move ratios)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    load = {"before": LOAD_AT_START, "after": load_average()}
    path.write_text(json.dumps({"bench": name, "time": time.time(), **provenance(),
                                "load": load, **meta, "rows": rows}, indent=2, default=str))
    return path
