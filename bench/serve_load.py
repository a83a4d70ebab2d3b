"""Load generators for the serving bench: closed-loop windows that must agree before a figure
is taken, interleaved rounds over several targets, and open-loop load at a fixed rate.

- **Closed loop** (`stable`): `clients` loops each send a request as soon as their previous one
  answered, in windows of `window_s`. A figure is accepted once `agree` consecutive windows'
  throughputs lie within `tolerance` of their mean (as Triton's perf_analyzer does), or after
  `max_windows` with `stable: False`. Latency percentiles come from the accepted windows.
- **Rounds** (`rounds`): every target measured once per round, the order rotated from round to
  round, so a noisy neighbour slows all alike; a figure is the median of the rounds, shown
  with its min-max.
- **Open loop** (`open_loop`): requests sent at a fixed rate whatever the answers do; a
  request's latency is counted from the moment it was due, so a stall is not hidden by the
  requests it delayed (coordinated omission).

Errors are counted on every path and never dropped.
"""
from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

Call = Callable[[], Awaitable[object]]


@dataclass
class Plan:
    clients: int = 32
    window_s: float = 2.0
    agree: int = 3
    tolerance: float = 0.10
    max_windows: int = 8
    warmup_s: float = 0.5
    rounds: int = 5


@dataclass
class Window:
    rps: float
    latencies: list[float]
    errors: int


@dataclass
class Figure:
    """One closed-loop figure: throughput and latency of the accepted windows."""
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    windows: int
    stable: bool
    window_rps: list[float] = field(default_factory=list)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * (len(xs) - 1) + 0.5))] if xs else float("nan")


def agree(values: list[float], tolerance: float) -> bool:
    """Whether every value lies within `tolerance` (a fraction) of their mean."""
    mean = statistics.fmean(values)
    return mean > 0 and all(abs(v - mean) <= tolerance * mean for v in values)


async def window(call: Call, clients: int, seconds: float) -> Window:
    latencies, errors = [], 0
    t_end = time.perf_counter() + seconds

    async def client():
        nonlocal errors
        while (t := time.perf_counter()) < t_end:
            try:
                await call()
            except Exception:  # noqa: BLE001 - a failure is a figure, not a crash
                errors += 1
                continue
            latencies.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return Window(len(latencies) / (time.perf_counter() - t0), latencies, errors)


async def stable(call: Call, plan: Plan) -> Figure:
    """Closed-loop windows until `plan.agree` consecutive ones agree (see the module doc)."""
    await window(call, plan.clients, plan.warmup_s)
    windows: list[Window] = []
    while len(windows) < plan.max_windows:
        windows.append(await window(call, plan.clients, plan.window_s))
        last = windows[-plan.agree:]
        if len(last) == plan.agree and agree([w.rps for w in last], plan.tolerance):
            return _figure(windows, last, True)
    return _figure(windows, windows[-plan.agree:], False)


def _figure(windows: list[Window], used: list[Window], ok: bool) -> Figure:
    lat = [t for w in used for t in w.latencies]
    return Figure(rps=statistics.fmean(w.rps for w in used), p50_ms=pct(lat, 0.5) * 1e3,
                  p99_ms=pct(lat, 0.99) * 1e3, errors=sum(w.errors for w in windows),
                  windows=len(windows), stable=ok, window_rps=[round(w.rps, 1) for w in windows])


async def rounds(calls: dict[str, Call], plan: Plan) -> dict[str, list[Figure]]:
    """Every call measured once per round, `plan.rounds` rounds, the order rotated."""
    names = list(calls)
    out: dict[str, list[Figure]] = {n: [] for n in names}
    for r in range(plan.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            out[name].append(await stable(calls[name], plan))
    return out


def summary(figures: list[Figure]) -> dict:
    """The median over rounds of each figure, with min-max, errors summed, stability."""
    def med(attr):
        values = [getattr(f, attr) for f in figures]
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}
    return {"rps": med("rps"), "p50_ms": med("p50_ms"), "p99_ms": med("p99_ms"),
            "errors": sum(f.errors for f in figures), "rounds": len(figures),
            "stable_rounds": sum(f.stable for f in figures),
            "window_rps": [f.window_rps for f in figures]}


async def open_loop(call: Call, rate: float, seconds: float) -> dict:
    """Requests due every 1/`rate` s for `seconds`, each in its own task; latency from the
    moment a request was due."""
    latencies, errors = [], 0
    period, t0 = 1.0 / rate, time.perf_counter() + 0.05
    n = int(rate * seconds)

    async def one(due: float):
        nonlocal errors
        try:
            await call()
            latencies.append(time.perf_counter() - due)
        except Exception:  # noqa: BLE001 - counted
            errors += 1

    tasks = []
    for i in range(n):
        due = t0 + i * period
        if (delay := due - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    return {"rate": rate, "requests": n, "errors": errors,
            "success": (n - errors) / n if n else float("nan"),
            "achieved_rps": len(latencies) / max(1e-9, time.perf_counter() - t0),
            "p50_ms": pct(latencies, 0.5) * 1e3, "p95_ms": pct(latencies, 0.95) * 1e3,
            "p99_ms": pct(latencies, 0.99) * 1e3}
