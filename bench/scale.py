"""Serving at scale on the real local stack: many deployed models, and more replicas.

- **Models.** `EVICT_AT` digits MLPs are trained through the job API (1 epoch each, a seed of
  their own: distinct weights), then deployed one endpoint each through the API's `Deploy`. For
  every endpoint: `Deploy` -> the first successful REST answer. At 1, 10 and 50 endpoints: the
  model host's resident memory (the gateway replica runs the models itself) and 32 closed-loop
  clients spread over every endpoint (bench/serve_load.py: 3 agreeing windows). Memory per
  model is the growth from 1 to N models over N - 1, set against the weights' size on disk.
  Past the host's model cache (`MAX_MODELS_PER_REPLICA`), the least recently used model leaves
  the replica: the first answer of an evicted model is timed, against its next answer.
- **Replicas.** A second stack with 2 inference replicas: requests/s of one endpoint against
  clients (1, 8, 32), against the same on the first stack (1 replica), REST.

Plots: `bench/results/scale_models.png` (memory and requests/s against deployed models) and
`bench/results/scale_replicas.png` (requests/s against clients, per replica count).
"""
from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import serve_load  # noqa: E402
from bench.cluster import snapshot, stack_pids  # noqa: E402
from bench.common import RESULTS, local_stack, print_table, row, save  # noqa: E402

MODEL_COUNTS = (1, 10, 50)
CLIENT_COUNTS = (1, 8, 32)
PLAN = serve_load.Plan(clients=32, window_s=2.0, rounds=1)


def stubs(stack):
    from trainserve.core.pb import deployment_pb2_grpc, job_pb2_grpc
    channel = stack.api_channel()
    return job_pb2_grpc.JobServiceStub(channel), deployment_pb2_grpc.DeploymentServiceStub(channel)


def train_models(jobs, n: int) -> list[tuple[str, int]]:
    """`n` digits MLPs registered through the job API: [(model name, version)]."""
    from bench import train as bench_train
    from trainserve.core.pb import job_pb2

    submitted = []
    for i in range(n):
        spec = bench_train.digits_spec("MLP", epochs=1)
        spec.name, spec.training.seed = f"scale-mlp-{i:03d}", i
        submitted.append(jobs.SubmitJob(job_pb2.SubmitJobRequest(
            spec=spec, request_id=uuid.uuid4().hex)).id)
    out = []
    for job_id in submitted:
        for _ in jobs.WatchJob(job_pb2.WatchJobRequest(job_id=job_id), timeout=600):
            pass
        job = jobs.GetJob(job_pb2.GetJobRequest(job_id=job_id))
        if not job.model_name:
            raise RuntimeError(f"job {job_id} registered no model: {job.message}")
        out.append((job.model_name, job.model_version))
    return out


SHAPE = (1, 8, 8)  # a digits image, the input of the registered MLPs


def request_body() -> bytes:
    import numpy as np
    x = np.random.default_rng(0).uniform(0, 16, size=(1, *SHAPE)).astype(np.float32)
    return json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, *SHAPE],
                                   "data": x.ravel().tolist()}]}).encode()


_HTTP = None


def _http():
    """One keep-alive client for every timed request, so no figure includes a connection's
    set-up."""
    global _HTTP
    if _HTTP is None:
        import httpx
        _HTTP = httpx.Client(timeout=10)
    return _HTTP


def first_answer_s(url: str, timeout: float = 60.0) -> float:
    """Seconds until `url` answers an inference with 200 (polled every 10 ms)."""
    t0, body, last = time.perf_counter(), request_body(), None
    while time.perf_counter() - t0 < timeout:
        last = _http().post(url, content=body, headers={"content-type": "application/json"})
        if last.status_code == 200:
            return time.perf_counter() - t0
        time.sleep(0.01)
    raise TimeoutError(f"{url} did not answer within {timeout} s; last answer "
                       f"{last.status_code if last else None}: {last.text[:300] if last else ''}")


def deploy_and_time(deployments, url_of, name: str, model: tuple[str, int]) -> float:
    """`Deploy` -> the endpoint's first successful answer, in seconds."""
    from trainserve.core.pb import deployment_pb2
    t0 = time.perf_counter()
    deployments.Deploy(deployment_pb2.DeployRequest(name=name, model_name=model[0],
                                                    model_version=model[1]), timeout=60)
    return time.perf_counter() - t0 + first_answer_s(url_of(name))


# ------------------------------------------------------------------------- processes

def replica_rss_mib(stack) -> float:
    """Resident memory of the stack's `trainserve` replicas (the model host), MiB."""
    from trainserve.local import cmdline

    page_mib = os.sysconf("SC_PAGE_SIZE") / 2**20
    procs = snapshot()
    ours = [pid for pid in stack_pids(procs, {"ray": stack.pid("ray")})
            if cmdline(pid).startswith("ray::ServeReplica:trainserve")]
    if not ours:
        raise RuntimeError("no trainserve replica among the stack's Ray processes")
    return sum(procs[pid]["rss_pages"] for pid in ours) * page_mib


# ----------------------------------------------------------------------------- load

async def _spread_load(urls: list[str], clients: int) -> dict:
    import aiohttp
    body, headers = request_body(), {"content-type": "application/json"}
    turn = [0]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as http:
        async def call():
            turn[0] += 1
            async with http.post(urls[turn[0] % len(urls)], data=body, headers=headers) as r:
                await r.read()
                r.raise_for_status()
        plan = serve_load.Plan(**{**PLAN.__dict__, "clients": clients})
        return serve_load.summary([await serve_load.stable(call, plan)])


def load(urls: list[str], clients: int = 32) -> dict:
    return asyncio.run(_spread_load(urls, clients))


# ----------------------------------------------------------------------------- parts

def models_part(stack) -> dict:
    from trainserve.serve.host import MAX_MODELS_PER_REPLICA

    jobs, deployments = stubs(stack)
    evict_at = MAX_MODELS_PER_REPLICA + 4
    models = train_models(jobs, evict_at)
    url_of = lambda name: f"http://{stack.config.serve_http}/v2/models/{name}/infer"  # noqa
    names = [f"scale-{i:03d}" for i in range(evict_at)]
    out = {"deploy_s": [], "at": {}, "weights_bytes": _weights_bytes(stack, models[0])}
    for i, name in enumerate(names):
        out["deploy_s"].append(deploy_and_time(deployments, url_of, name, models[i]))
        if i + 1 in MODEL_COUNTS:
            out["at"][i + 1] = {"rss_mib": replica_rss_mib(stack),
                                "load": load([url_of(n) for n in names[:i + 1]])}
    # Every model has answered once since names[0]; the cache keeps the newest.
    out["evicted_first_s"] = first_answer_s(url_of(names[0]))
    out["warm_again_s"] = first_answer_s(url_of(names[0]))
    out["rss_after_evicting_mib"] = replica_rss_mib(stack)
    out["max_models_per_replica"] = MAX_MODELS_PER_REPLICA
    return out


def _weights_bytes(stack, model) -> int:
    """Size on disk of one registered version's weights (all are the same architecture)."""
    files = list(Path(stack.config.storage_path).rglob("model.safetensors"))
    if not files:
        raise RuntimeError("no registered weights found under the stack's storage")
    return files[0].stat().st_size


def replicas_part(stack, label: str) -> dict:
    jobs, deployments = stubs(stack)
    model = train_models(jobs, 1)[0]
    url = f"http://{stack.config.serve_http}/v2/models/one/infer"
    deploy_and_time(deployments, lambda n: url, "one", model)
    return {c: load([url], c) for c in CLIENT_COUNTS}


# ------------------------------------------------------------------------------ table

def model_rows(m: dict) -> list[dict]:
    deploy = m["deploy_s"]
    counts = sorted(m["at"])
    first, last = counts[0], counts[-1]
    per_model_mib = (m["at"][last]["rss_mib"] - m["at"][first]["rss_mib"]) / (last - first)
    weights_mib = m["weights_bytes"] / 2**20
    rows = [
        row("Deploy -> first answer (s), median over every endpoint",
            statistics.median(deploy), None, "<= 3", on="ours",
            spread=f"{min(deploy):.3g}-{max(deploy):.3g} over {len(deploy)}"),
        row(f"model host memory per deployed model above its weights (MiB), {first} -> {last}"
            " models", per_model_mib - weights_mib, None, "<= 5", on="ours",
            note=f"{per_model_mib:.3g} MiB per model, weights {weights_mib:.3g} MiB"),
        row(f"first answer of an evicted model (ms), past {m['max_models_per_replica']} "
            "models per replica, vs its next answer", m["evicted_first_s"] * 1e3,
            m["warm_again_s"] * 1e3),
        row("... the same, target on the evicted answer itself (ms)", m["evicted_first_s"] * 1e3,
            None, "<= 200", on="ours"),
    ]
    one = m["at"][first]["load"]
    for n in counts:
        at = m["at"][n]
        rows.append(row(f"{n} models deployed: model host RSS (MiB)", at["rss_mib"]))
        rows.append(row(f"{n} models deployed: REST req/s, 32 clients over all of them, vs 1 "
                        "model", at["load"]["rps"]["median"], one["rps"]["median"],
                        errors=f"{at['load']['errors']} / {one['errors']}",
                        note=f"stable: {bool(at['load']['stable_rounds'])}"))
    return rows


def replica_rows(by_replicas: dict[int, dict]) -> list[dict]:
    rows = []
    for clients in CLIENT_COUNTS:
        one, two = by_replicas[1][clients], by_replicas[2][clients]
        rows.append(row(f"REST req/s, {clients} clients: 2 replicas vs 1", two["rps"]["median"],
                        one["rps"]["median"], errors=f"{two['errors']} / {one['errors']}",
                        note=f"p99 {two['p99_ms']['median']:.3g} vs "
                             f"{one['p99_ms']['median']:.3g} ms"))
    return rows


def plots(m: dict, by_replicas: dict[int, dict]) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = sorted(m["at"])
    base, weights = m["at"][counts[0]]["rss_mib"], m["weights_bytes"] / 2**20
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(counts, [m["at"][n]["rss_mib"] - base for n in counts], "o-", label="model host")
    a.plot(counts, [(n - counts[0]) * weights for n in counts], "--", label="their weights")
    a.set(xlabel="deployed models", ylabel=f"RSS above {counts[0]} model (MiB)",
          title="Memory", ylim=(0, None))
    a.legend()
    b.plot(counts, [m["at"][n]["load"]["rps"]["median"] for n in counts], "o-")
    b.set(xlabel="deployed models", ylabel="req/s (32 clients)", title="Throughput",
          ylim=(0, None))
    fig.tight_layout()
    first = RESULTS / "scale_models.png"
    fig.savefig(first, dpi=100)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for reps, by_clients in sorted(by_replicas.items()):
        ax.plot(CLIENT_COUNTS, [by_clients[c]["rps"]["median"] for c in CLIENT_COUNTS], "o-",
                label=f"{reps} replica{'s' if reps > 1 else ''}")
    ax.set(xlabel="concurrent clients", ylabel="REST req/s", title="Replicas", ylim=(0, None))
    ax.legend()
    fig.tight_layout()
    second = RESULTS / "scale_replicas.png"
    fig.savefig(second, dpi=100)
    plt.close("all")
    return [first, second]


def main() -> list[dict]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    by_replicas = {}
    with local_stack() as stack:
        m = models_part(stack)
        by_replicas[1] = replicas_part(stack, "1 replica")
    with local_stack(serve_replicas=2) as stack:
        by_replicas[2] = replicas_part(stack, "2 replicas")
    rows = model_rows(m) + replica_rows(by_replicas)
    print_table("scale: many models, more replicas (real local stack, 2 CPUs)", rows)
    print("plots:", *plots(m, by_replicas))
    print("results:", save("scale", rows, {"models": m, "replicas": by_replicas,
                                           "plan": PLAN.__dict__}))
    return rows


if __name__ == "__main__":
    main()
