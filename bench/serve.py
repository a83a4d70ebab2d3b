"""Our `trainserve` Serve application against a minimal hand-written Serve deployment.

One digits LeNet-5 is trained in-process (3 epochs, `training.loop.train`), registered in a
throwaway redis-server the way the registry does it, and deployed as endpoint `digits`. Per
Serve mode (default; HAProxy, `RAY_SERVE_ENABLE_HA_PROXY=1 RAY_SERVE_USE_GRPC_BY_DEFAULT=1`
in the Ray head's environment), a child process starts its own Ray head (2 CPUs, loopback),
`ensure_serve` for ours, and beside it, on the same Serve, the baseline: one `@serve.deployment`
class with a starlette handler that takes `{"inputs": [{"data": [...]}]}` and returns the
softmax (same module, same preprocessing, 1 torch thread, 0 CPUs reserved, 256 requests at
once, like our model host). Measured:

- the model's own forward at batch 1 (preprocess + forward + softmax, 1 thread): the floor;
- sequential REST latency (httpx, JSON, 1 instance), p50/p99, ours and the baseline, in
  rounds interleaved between the two (p50: the median of the rounds'), since a request is
  about a millisecond and a neighbour's burst moves a single run's p50 by 10-20 %;
- 32 concurrent clients (asyncio + aiohttp) for a fixed time: requests/s and
  p50/p99, ours with the endpoint's dynamic batching off and on (max_batch_size 32,
  batch_wait_ms 2), against the baseline (no batching);
- ours over OIP gRPC (raw stubs), sequential and 32 concurrent;
- requests of 32 instances each, sequential, REST, both.

Ratios are ours / baseline, measured in the same run on the same Ray and Serve.
"""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, print_table, save  # noqa: E402
from tests.ray_head import RayHead  # noqa: E402

EPOCHS, SEED, CLIENTS, LOAD_S = 3, 0, 32, 5.0
N_WARM, N_SEQ, SEQ_ROUNDS = 30, 1000, 5  # sequential figures: requests each, rounds
BATCH_OPTS = (32, 2.0)  # max_batch_size, batch_wait_ms
MODES = {"default": "default", "haproxy": "throughput"}  # label: SERVE_MODES name
ENDPOINT, BASE_PREFIX, APP_ARG = "digits", "/minimal", "--one"


# ------------------------------------------------------------------------------- training

def train_model(work: Path, example: str = "lenet5_digits", seed: int = SEED,
                epochs: int = EPOCHS) -> Path:
    """Train `examples/<example>.yaml` for `epochs` epochs; its artifact folder."""
    from trainserve.core.spec import load_spec_file
    from trainserve.training.loop import train
    from trainserve.training.reporting import NullReporter
    from trainserve.training.validate import check_spec

    spec = load_spec_file(Path(__file__).resolve().parent.parent / f"examples/{example}.yaml")
    spec.name, spec.training.epochs, spec.training.seed = f"bench-{example}", epochs, seed
    t = time.perf_counter()
    result = train(check_spec(spec), work / f"job-{example}-{seed}", NullReporter(),
                   num_threads=1)
    print(f"{example} (seed {seed}): trained {epochs} epochs in {time.perf_counter() - t:.1f} s,"
          f" test accuracy {result.metrics.get('test_accuracy', float('nan')):.3f}",
          file=sys.stderr)
    return Path(result.artifact_dir)


# ------------------------------------------------------------------------------ baseline

def _baseline_app(artifact_dir: str):
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    @serve.deployment(name="minimal", max_ongoing_requests=256,
                      ray_actor_options={"num_cpus": 0})
    class Minimal:
        def __init__(self, path: str):
            import torch
            from trainserve.training.artifacts import load_artifact
            torch.set_num_threads(1)
            loaded = load_artifact(path)
            self.module, self.pre = loaded.module, loaded.preprocessing
            self.shape = tuple(loaded.meta["input_shape"])

        async def __call__(self, request: Request):
            import numpy as np
            import torch
            body = await request.json()
            x = np.asarray(body["inputs"][0]["data"], dtype=np.float32).reshape(-1, *self.shape)
            with torch.inference_mode():
                p = torch.softmax(self.module(torch.from_numpy(self.pre.apply(x))), 1).numpy()
            return JSONResponse({"outputs": [{"name": "probabilities", "datatype": "FP32",
                                              "shape": list(p.shape),
                                              "data": p.ravel().tolist()}]})

    return Minimal.bind(artifact_dir)


# ------------------------------------------------------------------------------- clients

def _pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * (len(xs) - 1) + 0.5))] if xs else float("nan")


def _summ(times_s):
    return {"p50_ms": _pct(times_s, 0.5) * 1e3, "p99_ms": _pct(times_s, 0.99) * 1e3}


def forward_floor(artifact_dir: Path, x) -> dict:
    import torch
    from trainserve.training.artifacts import load_artifact
    torch.set_num_threads(1)
    loaded = load_artifact(artifact_dir)
    pre, module, times = loaded.preprocessing, loaded.module, []
    for i in range(N_SEQ * 3 + 100):
        t = time.perf_counter()
        with torch.inference_mode():
            torch.softmax(module(torch.from_numpy(pre.apply(x))), 1)
        if i >= 100:
            times.append(time.perf_counter() - t)
    return _summ(times)


def sequential(calls: dict[str, Callable[[], Any]]) -> dict[str, dict]:
    """Each of `calls` (one request each) N_WARM times, then N_SEQ times in SEQ_ROUNDS
    rounds interleaved between them, so that a noisy neighbour slows all alike. Per call:
    the median of the rounds' p50 and the p99 over every round."""
    for call in calls.values():
        for _ in range(N_WARM):
            call()
    times: dict[str, list[float]] = {k: [] for k in calls}
    p50s: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(SEQ_ROUNDS):
        for name, call in calls.items():
            round_times = []
            for _ in range(N_SEQ // SEQ_ROUNDS):
                t = time.perf_counter()
                call()
                round_times.append(time.perf_counter() - t)
            p50s[name].append(_pct(round_times, 0.5))
            times[name] += round_times
    return {k: {"p50_ms": statistics.median(p50s[k]) * 1e3,
                "p99_ms": _pct(times[k], 0.99) * 1e3,
                "round_p50_ms": [round(v * 1e3, 4) for v in p50s[k]]} for k in calls}


def rest_caller(client, url: str, body: dict) -> Callable[[], Any]:
    payload, headers = json.dumps(body).encode(), {"content-type": "application/json"}
    return lambda: client.post(url, content=payload, headers=headers).raise_for_status()


def grpc_caller(channel, x) -> Callable[[], Any]:
    from trainserve._gen.inference import grpc_predict_v2_pb2 as pb
    call = channel.unary_unary(_GRPC_METHOD,
                               request_serializer=pb.ModelInferRequest.SerializeToString,
                               response_deserializer=pb.ModelInferResponse.FromString)
    req = _grpc_request(x)
    return lambda: call(req, metadata=_GRPC_MD, timeout=30)


async def _load(one_call, clients: int, seconds: float) -> dict:
    """`clients` loops calling `one_call()` for `seconds` after a 0.5 s warm-up."""
    times, errors = [], 0
    start = time.perf_counter()
    t_measure, t_end = start + 0.5, start + 0.5 + seconds

    async def worker():
        nonlocal errors
        while True:
            t = time.perf_counter()
            if t >= t_end:
                return
            try:
                await one_call()
            except Exception:
                errors += 1
                continue
            if t >= t_measure:
                times.append(time.perf_counter() - t)

    await asyncio.gather(*(worker() for _ in range(clients)))
    return {"rps": len(times) / seconds, "errors": errors, **_summ(times)}


def concurrent_rest(url: str, body: dict) -> dict:
    """CLIENTS asyncio clients on aiohttp (lighter than httpx: the load generator shares the
    machine's cores with Serve)."""
    import aiohttp

    payload = json.dumps(body).encode()
    headers = {"content-type": "application/json"}

    async def run():
        conn = aiohttp.TCPConnector(limit=CLIENTS)
        async with aiohttp.ClientSession(connector=conn,
                                         timeout=aiohttp.ClientTimeout(total=60)) as c:
            async def call():
                async with c.post(url, data=payload, headers=headers) as r:
                    await r.read()
                    r.raise_for_status()
            return await _load(call, CLIENTS, LOAD_S)
    return asyncio.run(run())


def _grpc_request(x, endpoint: str = ENDPOINT):
    from trainserve._gen.inference import grpc_predict_v2_pb2 as pb
    t = pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32",
                                              shape=list(x.shape))
    t.contents.fp32_contents.extend(x.ravel().tolist())
    return pb.ModelInferRequest(model_name=endpoint, inputs=[t])


_GRPC_METHOD = "/inference.GRPCInferenceService/ModelInfer"
_GRPC_MD = (("application", "trainserve"),)  # two Serve applications: the proxy needs it


def grpc_concurrent(target: str, x, endpoint: str = ENDPOINT, during=None) -> dict:
    """CLIENTS gRPC clients for LOAD_S; `during(loop)`, if given, runs in a thread meanwhile
    (a rollout) and the load lasts until it returns."""
    import grpc
    from trainserve._gen.inference import grpc_predict_v2_pb2 as pb
    req = _grpc_request(x, endpoint)

    async def run():
        async with grpc.aio.insecure_channel(target) as ch:
            stub = ch.unary_unary(_GRPC_METHOD,
                                  request_serializer=pb.ModelInferRequest.SerializeToString,
                                  response_deserializer=pb.ModelInferResponse.FromString)

            async def call():
                await stub(req, metadata=_GRPC_MD, timeout=60)
            if during is None:
                return await _load(call, CLIENTS, LOAD_S)
            return await _load_during(call, CLIENTS, during)
    return asyncio.run(run())


async def _load_during(one_call, clients: int, action) -> dict:
    """`clients` loops calling `one_call()` from 1 s before `action()` (run in a thread) to
    1 s after it returns; every call counted, failures included."""
    times, errors, done = [], [], asyncio.Event()

    async def worker():
        while not done.is_set():
            t = time.perf_counter()
            try:
                await one_call()
                times.append(time.perf_counter() - t)
            except Exception as exc:  # noqa: BLE001 - every failure counts
                errors.append(repr(exc)[:200])

    async def drive():
        await asyncio.sleep(1.0)
        await asyncio.to_thread(action)
        await asyncio.sleep(1.0)
        done.set()

    t0 = time.perf_counter()
    await asyncio.gather(drive(), *(worker() for _ in range(clients)))
    seconds = time.perf_counter() - t0
    return {"rps": len(times) / seconds, "errors": len(errors), "error_samples": errors[:5],
            "requests": len(times) + len(errors), **_summ(times)}


# ------------------------------------------------------------------------ one Serve mode

def _set_batching(client, mv, on: bool, ttl_s: float, endpoint: str = ENDPOINT) -> None:
    from trainserve.core.pb import deployment_pb2
    from trainserve.store.deployments import DeploymentStore
    dep = deployment_pb2.Deployment(name=endpoint, model_name=mv.name, model_version=mv.version,
                                    state=deployment_pb2.DEPLOYMENT_STATE_PENDING)
    if on:
        dep.options.max_batch_size, dep.options.batch_wait_ms = BATCH_OPTS
    DeploymentStore(client).put(dep)
    time.sleep(ttl_s + 0.3)  # the gateway's resolution cache


def _rollout(client, mv1, mv2, ttl_s: float) -> None:
    """What `trainserve rollout` (50 %) then `promote` do to the endpoint: the canary record,
    the dispatcher's `Deployer` loading it, its share of traffic, then the promotion."""
    from trainserve.dispatch.deployer import Deployer
    from trainserve.core.pb import deployment_pb2
    from trainserve.store.deployments import DeploymentStore

    store = DeploymentStore(client)
    dep = store.get(ENDPOINT)
    assert (dep.model_name, dep.model_version) == (mv1.name, mv1.version)
    dep.canary_version, dep.canary_percent = mv2.version, 50
    dep.canary_state = deployment_pb2.DEPLOYMENT_STATE_PENDING
    store.put(dep)
    Deployer(client, store, "bench").reconcile(ENDPOINT)
    assert store.get(ENDPOINT).canary_state == deployment_pb2.DEPLOYMENT_STATE_READY
    time.sleep(ttl_s + 2.0)  # both versions answer
    dep = store.get(ENDPOINT)
    dep.model_version, dep.canary_version, dep.canary_percent = mv2.version, 0, 0
    dep.canary_state = deployment_pb2.DEPLOYMENT_STATE_UNSPECIFIED
    store.put(dep)
    time.sleep(ttl_s + 1.0)


def _batch_sizes() -> dict[str, int]:
    from ray import serve
    stats = serve.get_app_handle("trainserve").stats.remote().result(timeout_s=30)
    sizes: dict[str, int] = {}
    for per_model in stats["batch_sizes"].values():
        for size, n in per_model.items():
            sizes[str(size)] = sizes.get(str(size), 0) + n
    return sizes


def _diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    d = {k: n - before.get(k, 0) for k, n in after.items()}
    return {k: n for k, n in sorted(d.items(), key=lambda kv: int(kv[0])) if n}


def _registered(client, storage: Path, artifact_dir: Path, job_id: str):
    from trainserve.core.pb import job_pb2
    from trainserve.registry.versions import register
    from trainserve.store.models import ModelStore
    from trainserve.core.tenancy import Principal
    from trainserve.training.artifacts import load_artifact
    spec = load_artifact(artifact_dir).spec
    owner = Principal("bench", "user")
    return register(ModelStore(client), storage, job_pb2.Job(id=job_id, spec=spec,
                                                             user=owner.user),
                    artifact_dir, owner)


def one_mode(mode: str, artifacts: dict[str, str], out: Path) -> None:
    """Runs in a child process whose environment holds the Ray head's token (and mode)."""
    import ray

    from tests.conftest import RedisServer
    from trainserve.serve import control
    from trainserve.store.redis import connect

    temp = Path(tempfile.mkdtemp(prefix="tsb"))  # short: Ray's socket paths < 108 chars
    head = RayHead(temp, os.environ, MODES[mode])
    redis_server = RedisServer(temp / "redis")
    try:
        address = head.start()
        ray.init(address=address, logging_level="WARNING", log_to_driver=False)
        redis_server.start()
        client = connect(redis_server.url)
        storage = temp / "storage"
        mv = _registered(client, storage, Path(artifacts["lenet"]), "job-bench-1")
        mv2 = _registered(client, storage, Path(artifacts["lenet_v2"]), "job-bench-2")
        resnet = _registered(client, storage, Path(artifacts["resnet"]), "job-bench-3")
        cfg = control.ServeConfig(http_port=free_port(), grpc_port=free_port(),
                                  redis_url=redis_server.url, storage_dir=str(storage))
        _set_batching(client, mv, False, 0)
        _set_batching(client, resnet, False, 0, "resnet")
        rows = _measure(mode, cfg, client, Path(artifacts["lenet"]), (mv, mv2, resnet))
    finally:
        try:
            from ray import serve
            serve.shutdown()
        except Exception:
            pass
        ray.shutdown()
        redis_server.stop()
        head.stop()
        shutil.rmtree(temp, ignore_errors=True)
    out.write_text(json.dumps(rows, default=str))


def _start(mode: str, cfg, artifact_dir: Path) -> None:
    from ray import serve

    from trainserve.serve import control
    t = time.monotonic()
    control.ensure_serve(cfg)
    control.warm(ENDPOINT)
    control.warm("resnet")
    serve.run(_baseline_app(str(artifact_dir)), name="minimal", route_prefix=BASE_PREFIX,
              blocking=False)
    while str(getattr(serve.status().applications["minimal"].status, "value", "")) \
            != "RUNNING":
        time.sleep(0.3)
    print(f"[{mode}] Serve + both applications up in {time.monotonic() - t:.1f} s",
          file=sys.stderr)


def _body(x) -> dict:
    return {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape),
                        "data": x.ravel().tolist()}]}


def _measure(mode: str, cfg, client, artifact_dir: Path, versions) -> dict:
    import grpc
    import httpx
    import numpy as np

    mv, mv2, resnet = versions
    _start(mode, cfg, artifact_dir)
    meta = json.loads((artifact_dir / "meta.json").read_text())
    rng = np.random.default_rng(0)
    x1 = rng.uniform(0, 16, size=(1, *meta["input_shape"])).astype(np.float32)
    x32 = rng.uniform(0, 16, size=(32, *meta["input_shape"])).astype(np.float32)
    ours = f"http://127.0.0.1:{cfg.http_port}/v2/models/{ENDPOINT}/infer"
    base = f"http://127.0.0.1:{cfg.http_port}{BASE_PREFIX}"
    grpc_target = f"127.0.0.1:{cfg.grpc_port}"
    # Both answer the same probabilities.
    a = httpx.post(ours, json=_body(x1), timeout=30).json()
    b = httpx.post(base, json=_body(x1), timeout=30).json()
    pa = next(o["data"] for o in a["outputs"] if o["name"] == "probabilities")
    np.testing.assert_allclose(pa, b["outputs"][0]["data"], rtol=1e-4, atol=1e-6)

    with httpx.Client(timeout=30) as h, grpc.insecure_channel(grpc_target) as ch:
        rows = {"forward": forward_floor(artifact_dir, x1), **sequential({
            "seq_rest_base": rest_caller(h, base, _body(x1)),
            "seq_rest_ours": rest_caller(h, ours, _body(x1)),
            "seq_grpc_ours": grpc_caller(ch, x1),
            "seq32_rest_base": rest_caller(h, base, _body(x32)),
            "seq32_rest_ours": rest_caller(h, ours, _body(x32)),
            "seq32_grpc_ours": grpc_caller(ch, x32)})}
    rows |= {"conc_rest_base": concurrent_rest(base, _body(x1)),
             "conc_rest_ours": concurrent_rest(ours, _body(x1)),
             "conc_grpc_ours": grpc_concurrent(grpc_target, x1),
             "resnet_grpc": grpc_concurrent(grpc_target, x1, "resnet")}
    _set_batching(client, mv, True, cfg.resolve_ttl_s)
    _set_batching(client, resnet, True, cfg.resolve_ttl_s, "resnet")
    before = _batch_sizes()
    rows["conc_rest_ours_batch"] = concurrent_rest(ours, _body(x1))
    mid = _batch_sizes()
    rows["conc_grpc_ours_batch"] = grpc_concurrent(grpc_target, x1)
    rows["resnet_grpc_batch"] = grpc_concurrent(grpc_target, x1, "resnet")
    # Forward passes per merged size while batching was on (warm-ups included).
    rows["batch_sizes_rest"] = _diff(mid, before)
    rows["batch_sizes_grpc"] = _diff(_batch_sizes(), mid)
    # A rollout (v1 -> 50 % canary v2 -> promoted) under the same gRPC load, batching on.
    rows["rollout_grpc"] = grpc_concurrent(
        grpc_target, x1, during=lambda: _rollout(client, mv, mv2, cfg.resolve_ttl_s))
    return rows


# ---------------------------------------------------------------------------------- main

def _row(fig: str, ours: float, base: float | None = None, target: str | None = None) -> dict:
    """A table row; `target` like "<= 1.2" or ">= 3" applies to the ratio ours/baseline."""
    ratio = (ours / base) if base else None
    row = {"figure": fig, "ours": ours, "baseline": base, "ratio": ratio}
    if target is not None and ratio is not None:
        op, bound = target.split()
        row.update(target=target, met=ratio <= float(bound) if op == "<=" else
                   ratio >= float(bound))
    return row


def _table_rows(mode: str, r: dict) -> list[dict]:
    def row(fig, ours, base=None, target=None):
        return _row(f"[{mode}] {fig}", ours, base, target)
    out = [row("forward batch 1, p50 ms (floor)", r["forward"]["p50_ms"])]
    for k, label in (("seq_rest", "REST sequential batch 1"),
                     ("seq32_rest", "REST sequential 32 instances")):
        for q in ("p50_ms", "p99_ms"):
            target = "<= 1.2" if k == "seq_rest" and q == "p50_ms" else None
            out.append(row(f"{label}, {q.replace('_ms', '')} ms",
                           r[f"{k}_ours"][q], r[f"{k}_base"][q], target))
    for k, label, base in (("seq_grpc_ours", "gRPC sequential batch 1 (ours)", "seq_rest_base"),
                           ("seq32_grpc_ours", "gRPC sequential 32 instances (ours)",
                            "seq32_rest_base")):
        for q in ("p50_ms", "p99_ms"):
            target = "<= 1.2" if k == "seq_grpc_ours" and q == "p50_ms" else None
            out.append(row(f"{label}, {q.replace('_ms', '')} ms", r[k][q], r[base][q], target))
    cb = r["conc_rest_base"]
    for k, label in (("conc_rest_ours", "REST 32 clients, batching off"),
                     ("conc_rest_ours_batch", "REST 32 clients, batching 32/2ms"),
                     ("conc_grpc_ours", "gRPC 32 clients, batching off"),
                     ("conc_grpc_ours_batch", "gRPC 32 clients, batching 32/2ms")):
        c = r[k]
        out.append(row(f"{label}, req/s", c["rps"], cb["rps"]))
        out.append(row(f"{label}, p50 / p99 ms", c["p50_ms"], cb["p50_ms"]))
        out[-1]["figure"] += f" (p99 {c['p99_ms']:.0f} vs {cb['p99_ms']:.0f})"
    for proto in ("rest", "grpc"):
        sizes = {int(k): n for k, n in r[f"batch_sizes_{proto}"].items()}
        passes = sum(sizes.values())
        if passes:
            out.append(row(f"{proto.upper()} batching on: mean requests per forward",
                           sum(k * n for k, n in sizes.items()) / passes))
    on, off = r["resnet_grpc_batch"], r["resnet_grpc"]
    out.append(row("ResNet gRPC 32 clients req/s, batching on vs off", on["rps"], off["rps"]))
    ro, steady = r["rollout_grpc"], r["conc_grpc_ours_batch"]
    out.append(row(f"gRPC 32 clients during a rollout, p99 ms (vs steady; {ro['requests']} "
                   f"requests, {ro['errors']} failed)", ro["p99_ms"], steady["p99_ms"]))
    out.append(row("gRPC 32 clients during a rollout, failed requests", ro["errors"]))
    return out


def _cross_mode_rows(raw: dict) -> list[dict]:
    """The throughput targets: ours in the stack's mode (HAProxy) against the minimal
    deployment with Serve's default settings."""
    if not {"default", "haproxy"} <= set(raw):
        return []
    base = raw["default"]["conc_rest_base"]["rps"]
    ours = raw["haproxy"]
    return [_row(f"ours (HAProxy mode) {label} req/s vs minimal REST (default mode)",
                 ours[k]["rps"], base, ">= 3")
            for k, label in (("conc_rest_ours", "REST 32 clients"),
                             ("conc_rest_ours_batch", "REST 32 clients, batching"),
                             ("conc_grpc_ours", "gRPC 32 clients"),
                             ("conc_grpc_ours_batch", "gRPC 32 clients, batching"))]


def main(modes: list[str] | None = None) -> list[dict]:
    modes = modes or list(MODES)
    work = Path(tempfile.mkdtemp(prefix="ts-bench-serve-"))
    all_rows, raw = [], {}
    try:
        artifacts = {"lenet": str(train_model(work)),
                     "lenet_v2": str(train_model(work, seed=SEED + 1)),
                     "resnet": str(train_model(work, "resnet_digits", epochs=2))}
        for mode in modes:
            out = work / f"{mode}.json"
            # Our own Ray token: ~/.ray/auth_token is shared with other clusters here.
            env = {k: v for k, v in os.environ.items()
                   if k != "RAY_ADDRESS" and not k.startswith("RAY_AUTH")}
            env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32),
                       PYTHONPATH=os.pathsep.join(
                           [str(Path(__file__).resolve().parent.parent),
                            env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
            t = time.perf_counter()
            subprocess.run([sys.executable, __file__, APP_ARG, mode, json.dumps(artifacts),
                            str(out)],
                           env=env, check=True, timeout=600)
            print(f"[{mode}] done in {time.perf_counter() - t:.1f} s", file=sys.stderr)
            raw[mode] = json.loads(out.read_text())
            all_rows += _table_rows(mode, raw[mode])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    all_rows += _cross_mode_rows(raw)
    print_table("serve: ours (the trainserve application) vs a minimal Serve deployment; "
                "ratio ours/minimal", all_rows)
    meta = {"raw": raw, "epochs": EPOCHS, "clients": CLIENTS, "load_s": LOAD_S}
    print(f"\nresults: {save('serve', all_rows, meta)}")
    return all_rows


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == APP_ARG:
        one_mode(sys.argv[2], json.loads(sys.argv[3]), Path(sys.argv[4]))
    else:
        main(sys.argv[1:] or None)
