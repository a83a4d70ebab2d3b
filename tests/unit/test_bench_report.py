"""bench/: the README's results are the generated text of the committed result files; the
serving bench's load generator accepts a figure only when its windows agree, counts every
error, and times open-loop requests from when they were due; its table compares like with
like."""
from __future__ import annotations

import asyncio
import json
import time

import pytest

from bench import report, serve_load, serve_table
from bench.common import RESULTS


def test_the_readme_results_are_generated_from_the_committed_files():
    assert (RESULTS / "serve.json").exists() and (RESULTS / "spine.json").exists()
    assert report.readme_block() == report.results_markdown().strip(), (
        "bench/README.md's results differ from bench/results/*.json: run "
        "`.venv/bin/python bench/run.py --readme` (never type them)")


def test_a_section_names_its_provenance_or_why_it_is_missing(tmp_path):
    doc = {"time": 0, "commit": "abcdef1234567", "dirty": True, "python": "3.11.7",
           "versions": {"torch": "2.x", "ray": "2.y", "grpcio": "1.z"},
           "machine": {"processor": "CPU", "cpus": 2, "memory_gib": 24.0},
           "load": {"before": 1.0, "after": 2.5},
           "rows": [{"figure": "f", "ours": 2.0, "baseline": 1.0, "ratio": 2.0,
                     "target": "<= 1.2", "met": False, "spread": "1-3", "errors": "0 / 1"}]}
    (tmp_path / "serve.json").write_text(json.dumps(doc))
    md = report.results_markdown(tmp_path)
    assert "`abcdef1234` with local changes" in md and "load average 1.0 before" in md
    assert "| f | 2 | 1 | 2.00 | 1-3 | 0 / 1 | <= 1.2 | **no** |" in md
    assert "Targets met: 0 of 1" in md
    assert "### gpu\n\nNot run: no CUDA device" in md


def test_agree_is_within_the_tolerance_of_the_mean():
    assert serve_load.agree([100, 105, 95], 0.1)
    assert not serve_load.agree([100, 130, 95], 0.1)
    assert not serve_load.agree([0, 0, 0], 0.1)


def _timed_call(delays: list[float]):
    """An awaitable call that sleeps `delays[0]` until the test moves on to the next."""
    async def call():
        await asyncio.sleep(delays[0])
    return call


def test_a_figure_waits_for_agreeing_windows_and_says_when_they_never_do():
    plan = serve_load.Plan(clients=4, window_s=0.15, agree=3, tolerance=0.25, max_windows=5,
                           warmup_s=0.05)
    steady = asyncio.run(serve_load.stable(_timed_call([0.005]), plan))
    assert steady.errors == 0 and steady.p50_ms >= 5 and steady.rps > 0
    assert steady.windows >= 3 and (steady.stable or steady.windows == plan.max_windows)
    if steady.stable:  # the last three windows are the ones that agreed
        assert serve_load.agree(steady.window_rps[-3:], plan.tolerance + 0.01)

    start = time.perf_counter()

    async def drifting():  # calls twice as slow each window: windows never agree
        elapsed = time.perf_counter() - start
        await asyncio.sleep(0.002 * 2 ** (elapsed / plan.window_s))
    drift = asyncio.run(serve_load.stable(drifting, plan))
    assert not drift.stable and drift.windows == plan.max_windows


def test_errors_are_counted_not_dropped():
    n, raised = [0], [0]

    async def flaky():
        n[0] += 1
        mine = n[0]
        await asyncio.sleep(0.002)
        if mine % 4 == 0:
            raised[0] += 1
            raise RuntimeError("refused")
    plan = serve_load.Plan(clients=2, window_s=0.1, max_windows=3, warmup_s=0.0)
    fig = asyncio.run(serve_load.stable(flaky, plan))
    assert fig.errors == raised[0] > 0
    raised[0] = 0
    out = asyncio.run(serve_load.open_loop(flaky, rate=200, seconds=0.2))
    assert out["requests"] == 40 and out["errors"] == raised[0] > 0
    assert out["success"] == (40 - raised[0]) / 40


def test_open_loop_latency_counts_from_when_a_request_was_due():
    stalled = [True]

    async def stall_once():  # the first request stalls 0.2 s, the rest are instant
        if stalled[0]:
            stalled[0] = False
            time.sleep(0.2)  # blocks the loop: every request due meanwhile waits
        await asyncio.sleep(0)
    out = asyncio.run(serve_load.open_loop(stall_once, rate=100, seconds=0.5))
    assert out["errors"] == 0
    # Closed-loop timing would see one slow request; from due time, ~20 requests were late.
    assert out["p95_ms"] > 50 and out["p50_ms"] < 50


def test_rounds_rotate_the_order():
    order = []

    def named(name):
        async def call():
            order.append(name)
        return call
    plan = serve_load.Plan(clients=1, window_s=0.01, max_windows=1, agree=1, warmup_s=0.0,
                           rounds=2)
    asyncio.run(serve_load.rounds({"a": named("a"), "b": named("b")}, plan))
    firsts = [order[0], next(x for x in order if x != order[0])]
    assert firsts == ["a", "b"] and order[-1] == "a"


def _summary(rps, errors=0):
    stat = {"median": rps, "min": rps * 0.9, "max": rps * 1.1}
    return {"rps": stat, "p50_ms": {"median": 10, "min": 9, "max": 11},
            "p99_ms": {"median": 30, "min": 25, "max": 40}, "errors": errors, "rounds": 5,
            "stable_rounds": 5}


def test_every_serving_ratio_compares_like_with_like():
    raw = {f"conc_{p}_{s}": _summary(100 if s.startswith("ours") else 80)
           for p in ("rest", "grpc") for s in ("ours", "ours_batch", "base", "base_batch")}
    rows = serve_table.closed_loop_rows(raw, lambda f: f)
    rps = {r["figure"]: r for r in rows if r["figure"].endswith("req/s")}
    assert len(rps) == 4 and all(r["ratio"] == pytest.approx(1.25) for r in rps.values())
    assert rps["gRPC 32 clients, batching 32/2ms (both sides), req/s"]["target"] == ">= 1.5"
    assert all(r["errors"] == "0 / 0" and r["spread"] for r in rps.values())
