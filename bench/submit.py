"""Submission throughput and ListJobs latency of the job API (redis-server + the API only, no
dispatcher, so nothing consumes the queue).

- 1000 SubmitJob calls from 20 concurrent clients (threads, one channel each), after a
  warm-up of 100: submissions/s. Baseline: the same 1000 through the store (`JobStore.submit`,
  the Lua script), 20 threads, in this process: the cost without gRPC and validation. 5
  rounds, the two sides interleaved; medians with min-max.
- ListJobs (one page of the default 50, and of 1000) with 10 000 jobs stored: p50 of 200
  calls. Baseline: `JobStore.list` in this process.
- During the burst: the CPU of the API process, of redis-server and of the client threads
  per call (from /proc and getrusage), and the Redis commands per call.
Targets: >= 500 submissions/s; ListJobs p50 <= 50 ms.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, median, print_table, row, save, spread  # noqa: E402

CLIENTS = 20
BURST = 1000
STORED = 10_000
CALLS = 200
ROUNDS = 5


def _spec():
    from trainserve.core.spec import parse_spec
    return parse_spec({"dataset": {"name": "xor"}, "model": {"mlp": {}},
                       "training": {"epochs": 1}})


def _rate(fn, n: int, clients: int) -> float:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(fn, range(n)))
    return n / (time.perf_counter() - t0)


def _p50_ms(fn, calls: int = CALLS) -> float:
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return median(times)


def _measure(stack) -> list[dict]:

    from trainserve.jobs.service import JobsCore
    from trainserve.core.tenancy import Principal
    from trainserve.core.pb import job_pb2, job_pb2_grpc
    from trainserve.store import keys
    from trainserve.store.jobs import JobStore
    from trainserve.store.redis import connect

    spec = _spec()
    stubs = [job_pb2_grpc.JobServiceStub(stack.api_channel())
             for _ in range(CLIENTS)]

    def api_submit(i):
        stubs[i % CLIENTS].SubmitJob(job_pb2.SubmitJobRequest(
            spec=spec, request_id=uuid.uuid4().hex), timeout=30)

    r = connect(stack.config.redis_url)
    store = JobStore(r)
    # The spec with defaults, as stored; submitted as the stack's admin, who sends the burst
    # (its model name is claimed for that user).
    admin = Principal("admin", "admin")
    full = JobsCore(r).submit(spec, "probe", admin.user, admin)[0].spec
    _rate(api_submit, 100, CLIENTS)
    api_rates, store_rates, costs = [], [], []
    for _ in range(ROUNDS):  # interleaved: a noisy neighbour slows both sides alike
        before = _costs(stack, r)
        api_rates.append(_rate(api_submit, BURST, CLIENTS))
        costs.append({k: (v - before[k]) / BURST for k, v in _costs(stack, r).items()})
        store_rates.append(_rate(lambda i: store.submit(full, uuid.uuid4().hex), BURST,
                                 CLIENTS))
    cost = {k: median([c[k] for c in costs]) for k in costs[0]}
    have = r.zcard(keys.JOBS)
    _rate(lambda i: store.submit_raw(full, uuid.uuid4().hex), max(0, STORED - have), CLIENTS)
    rows = [row(f"SubmitJob/s, {CLIENTS} clients, {BURST} calls", median(api_rates),
                median(store_rates), ">= 500", on="ours",
                spread=f"ours {spread(api_rates)}; store {spread(store_rates)}",
                note="baseline: JobStore.submit in the bench process")]
    rows += [row(f"SubmitJob: CPU of the {who} per call, us", cost[key] * 1e6,
                 note="during the bursts above (median)")
             for who, key in (("API process", "api"), ("redis-server", "redis"),
                              ("20 client threads", "client"))]
    rows.append(row("SubmitJob: Redis commands per call", cost["commands"],
                    note="most inside the one submit script: 3 round trips"))
    for size in (50, 1000):
        ours = _p50_ms(lambda: stubs[0].ListJobs(job_pb2.ListJobsRequest(page_size=size),
                                                 timeout=30), CALLS if size == 50 else 50)
        base = _p50_ms(lambda: store.list(page_size=size), CALLS if size == 50 else 50)
        rows.append(row(f"ListJobs p50 ms, page of {size}, {r.zcard(keys.JOBS)} jobs", ours,
                        base, "<= 50" if size == 50 else None, on="ours",
                        note="baseline: JobStore.list in the bench process"))
    return rows


def _costs(stack, r) -> dict[str, float]:
    """CPU seconds so far of the API and redis-server processes and of this process (the
    clients), and the commands Redis has processed (less the one asking)."""
    import resource

    from bench.cluster import parse_stat
    hz = os.sysconf("SC_CLK_TCK")

    def cpu(pid: int) -> float:
        return parse_stat(Path(f"/proc/{pid}/stat").read_text())["ticks"] / hz
    own = resource.getrusage(resource.RUSAGE_SELF)
    return {"api": cpu(stack.pid("api")), "redis": cpu(stack.pid("redis")),
            "client": own.ru_utime + own.ru_stime,
            "commands": float(r.info("stats")["total_commands_processed"]) - 1}


def main() -> list[dict]:
    from trainserve.local import Config
    from trainserve.local import LocalStack

    root = Path(tempfile.mkdtemp(prefix="ts-bench-"))
    stack = LocalStack(Config(state_dir=root / "state", ray_temp_dir=str(root / "ray"),
                              **{k: free_port() for k in (
                                  "api_port", "serve_http_port", "serve_grpc_port",
                                  "api_metrics_port", "dispatcher_metrics_port",
                                  "ray_dashboard_port", "redis_port", "ray_gcs_port")}))
    try:
        stack.up(["redis", "api"])
        rows = _measure(stack)
    finally:
        stack.down()
        shutil.rmtree(root, ignore_errors=True)
    print_table("job API: submissions and listing", rows)
    print("results:", save("submit", rows, {"clients": CLIENTS, "burst": BURST,
                                            "stored": STORED, "rounds": ROUNDS}))
    return rows


if __name__ == "__main__":
    main()
