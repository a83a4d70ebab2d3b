"""A soak: the real local stack under steady mixed use for minutes, watched for drift.

One digits MLP is trained and deployed (endpoint `soak`); then for `--minutes` (default 10):
8 closed-loop REST clients query it without pause, and an XOR job is submitted every
`JOB_EVERY_S` and followed to its end. Every `SAMPLE_S` the resident memory of each
component (every process of its session and their descendants, bench/cluster.py) is read.

Figures: requests and failed requests, the p99 of the last minute against the first, jobs
submitted and failed, and each component's memory at the end against the first sample after
the warm-up minute (growth in MiB per minute). What leaks or slows down over time shows here
and nowhere else.

    .venv/bin/python bench/soak.py [--minutes N]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import scale, serve_load  # noqa: E402
from bench.cluster import by_component, snapshot, stack_pids  # noqa: E402
from bench.common import local_stack, print_table, row, save  # noqa: E402

CLIENTS, JOB_EVERY_S, SAMPLE_S, WARMUP_S = 8, 5.0, 30.0, 60.0


class Load:
    """CLIENTS closed-loop REST clients in a thread of their own, latencies kept per minute."""

    def __init__(self, url: str):
        self.url, self.stop = url, threading.Event()
        self.minutes: dict[int, list[float]] = {}
        self.errors = 0
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self):
        import aiohttp
        body, headers = scale.request_body(), {"content-type": "application/json"}
        t0 = time.monotonic()
        async with aiohttp.ClientSession() as http:
            async def client():
                while not self.stop.is_set():
                    t = time.monotonic()
                    try:
                        async with http.post(self.url, data=body, headers=headers) as r:
                            await r.read()
                            r.raise_for_status()
                    except Exception:  # noqa: BLE001 - counted
                        self.errors += 1
                        continue
                    minute = int((t - t0) // 60)
                    self.minutes.setdefault(minute, []).append(time.monotonic() - t)
            await asyncio.gather(*(client() for _ in range(CLIENTS)))


def submit_jobs(jobs, until: float) -> dict:
    """An XOR job every JOB_EVERY_S until `until`, each followed to its end."""
    from trainserve.core.pb import job_pb2
    from trainserve.core.spec import load_spec_file
    from bench.common import ROOT

    spec = load_spec_file(ROOT / "examples" / "xor_mlp.yaml")
    spec.ClearField("deploy")
    states: dict[str, int] = {}
    while time.monotonic() < until:
        t = time.monotonic()
        job = jobs.SubmitJob(job_pb2.SubmitJobRequest(spec=spec, request_id=uuid.uuid4().hex))
        for _ in jobs.WatchJob(job_pb2.WatchJobRequest(job_id=job.id), timeout=600):
            pass
        states[job.id] = jobs.GetJob(job_pb2.GetJobRequest(job_id=job.id)).state
        time.sleep(max(0.0, JOB_EVERY_S - (time.monotonic() - t)))
    failed = [j for j, s in states.items() if s != job_pb2.JOB_STATE_SUCCEEDED]
    return {"submitted": len(states), "failed": failed}


def rss_by_component(leaders: dict[str, int]) -> dict[str, float]:
    page_mib = os.sysconf("SC_PAGE_SIZE") / 2**20
    procs = snapshot()
    owner = stack_pids(procs, leaders)
    return by_component({pid: procs[pid]["rss_pages"] * page_mib for pid in owner}, owner)


def run(minutes: float) -> dict:
    from trainserve.core.pb import deployment_pb2
    with local_stack() as stack:
        jobs, deployments = scale.stubs(stack)
        model = scale.train_models(jobs, 1)[0]
        deployments.Deploy(deployment_pb2.DeployRequest(name="soak", model_name=model[0],
                                                        model_version=model[1]), timeout=60)
        url = f"http://{stack.config.serve_http}/v2/models/soak/infer"
        scale.first_answer_s(url)
        leaders = {n: pid for n in stack.components if (pid := stack.pid(n)) is not None}
        load, t0 = Load(url), time.monotonic()
        load.thread.start()
        until = t0 + minutes * 60
        samples: list[tuple[float, dict]] = []
        sampler = threading.Thread(target=_sample, args=(leaders, until, t0, samples))
        sampler.start()
        jobs_out = submit_jobs(jobs, until)
        sampler.join()
        load.stop.set()
        load.thread.join(timeout=30)
    return {"minutes": minutes, "jobs": jobs_out, "errors": load.errors,
            "latency_minutes": {m: {"requests": len(v), "p50_ms": serve_load.pct(v, 0.5) * 1e3,
                                    "p99_ms": serve_load.pct(v, 0.99) * 1e3}
                                for m, v in sorted(load.minutes.items())},
            "rss": [(round(t, 1), r) for t, r in samples]}


def _sample(leaders, until: float, t0: float, out: list) -> None:
    while time.monotonic() < until:
        out.append((time.monotonic() - t0, rss_by_component(leaders)))
        time.sleep(SAMPLE_S)


def rows(r: dict) -> list[dict]:
    lat = r["latency_minutes"]
    minutes = sorted(lat, key=int)
    first, last = lat[minutes[0]], lat[minutes[-1]]
    requests = sum(m["requests"] for m in lat.values())
    out = [row(f"REST requests over {r['minutes']:g} min, {CLIENTS} clients: failed",
               r["errors"], None, "<= 0", on="ours", note=f"{requests} answered"),
           row("p99 ms, last minute vs first", last["p99_ms"], first["p99_ms"], "<= 1.5"),
           row(f"jobs submitted every {JOB_EVERY_S:g} s meanwhile: failed",
               len(r["jobs"]["failed"]), None, "<= 0", on="ours",
               note=f"{r['jobs']['submitted']} submitted")]
    warm = [s for s in r["rss"] if s[0] >= WARMUP_S] or r["rss"]
    (t_a, a), (t_b, b) = warm[0], warm[-1]
    span_min = max(1e-9, (t_b - t_a) / 60)
    for name in sorted(b, key=lambda n: -b[n]):
        out.append(row(f"{name}: resident memory growth (MiB per minute), end vs after warm-up",
                       (b[name] - a.get(name, 0.0)) / span_min,
                       note=f"{a.get(name, 0.0):.0f} -> {b[name]:.0f} MiB over "
                            f"{span_min:.1f} min"))
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    minutes = parser.parse_args(argv or []).minutes
    result = run(minutes)
    table = rows(result)
    print_table(f"soak: {minutes:g} min of inference and jobs on the local stack", table)
    print("results:", save("soak", table, {"soak": json.loads(json.dumps(result))}))
    return table


if __name__ == "__main__":
    main(sys.argv[1:])
