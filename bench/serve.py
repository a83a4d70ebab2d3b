"""Our `trainserve` Serve application against a minimal hand-written Serve deployment.

One digits LeNet-5 is trained in-process (3 epochs, `train.loop.train`), registered in a
throwaway redis-server the way the registry does it, and deployed as endpoint `digits`. Per
Serve mode (default; HAProxy, `RAY_SERVE_ENABLE_HA_PROXY=1 RAY_SERVE_USE_GRPC_BY_DEFAULT=1`
in the Ray head's environment), a child process starts its own Ray head (2 CPUs, loopback),
`ensure_serve` for ours, and beside it, on the same Serve, the baseline: one `@serve.deployment`
class with a starlette handler that takes `{"inputs": [{"data": [...]}]}` and returns the
softmax (same module, same preprocessing, 1 torch thread, 0 CPUs reserved, 256 requests at
once, like our model host). Measured:

- the model's own forward at batch 1 (preprocess + forward + softmax, 1 thread): the floor;
- sequential REST latency (httpx, JSON, 1 instance), p50/p99, ours and the baseline;
- 32 concurrent clients (asyncio + httpx.AsyncClient) for a fixed time: requests/s and
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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, print_table, save  # noqa: E402
from tests.ray_head import RayHead  # noqa: E402

EPOCHS, SEED, N_SEQ, N_WARM, CLIENTS, LOAD_S = 3, 0, 300, 30, 32, 5.0
BATCH_OPTS = (32, 2.0)  # max_batch_size, batch_wait_ms
MODES = {"default": "default", "haproxy": "throughput"}  # label: SERVE_MODES name
ENDPOINT, BASE_PREFIX, APP_ARG = "digits", "/minimal", "--one"


# ------------------------------------------------------------------------------- training

def train_model(work: Path) -> Path:
    """Train the digits LeNet-5 for EPOCHS epochs; its artifact folder."""
    from trainserve.jobs.spec import load_spec_file
    from trainserve.train.loop import train
    from trainserve.train.reporting import NullReporter
    from trainserve.train.validate import check_spec

    spec = load_spec_file(Path(__file__).resolve().parent.parent / "examples/lenet5_digits.yaml")
    spec.name, spec.training.epochs, spec.training.seed = "bench-lenet5", EPOCHS, SEED
    t = time.perf_counter()
    result = train(check_spec(spec), work / "job", NullReporter(), num_threads=1)
    print(f"trained {EPOCHS} epochs in {time.perf_counter() - t:.1f} s, "
          f"test accuracy {result.metrics.get('test_accuracy', float('nan')):.3f}",
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
            from trainserve.train.artifacts import load_artifact
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
    from trainserve.train.artifacts import load_artifact
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


def sequential_rest(url: str, body: dict) -> dict:
    import httpx
    times = []
    with httpx.Client(timeout=30) as h:
        for i in range(N_WARM + N_SEQ):
            t = time.perf_counter()
            r = h.post(url, json=body)
            dt = time.perf_counter() - t
            r.raise_for_status()
            if i >= N_WARM:
                times.append(dt)
    return _summ(times)


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
    import httpx

    async def run():
        limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
        async with httpx.AsyncClient(timeout=60, limits=limits) as c:
            async def call():
                (await c.post(url, json=body)).raise_for_status()
            return await _load(call, CLIENTS, LOAD_S)
    return asyncio.run(run())


def _grpc_request(x):
    from trainserve._gen.inference import grpc_predict_v2_pb2 as pb
    t = pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32",
                                              shape=list(x.shape))
    t.contents.fp32_contents.extend(x.ravel().tolist())
    return pb.ModelInferRequest(model_name=ENDPOINT, inputs=[t])


_GRPC_METHOD = "/inference.GRPCInferenceService/ModelInfer"
_GRPC_MD = (("application", "trainserve"),)  # two Serve applications: the proxy needs it


def grpc_sequential(target: str, x) -> dict:
    import grpc
    from trainserve._gen.inference import grpc_predict_v2_pb2 as pb
    req, times = _grpc_request(x), []
    with grpc.insecure_channel(target) as ch:
        call = ch.unary_unary(_GRPC_METHOD,
                              request_serializer=pb.ModelInferRequest.SerializeToString,
                              response_deserializer=pb.ModelInferResponse.FromString)
        for i in range(N_WARM + N_SEQ):
            t = time.perf_counter()
            call(req, metadata=_GRPC_MD, timeout=30)
            if i >= N_WARM:
                times.append(time.perf_counter() - t)
    return _summ(times)


def grpc_concurrent(target: str, x) -> dict:
    import grpc
    from trainserve._gen.inference import grpc_predict_v2_pb2 as pb
    req = _grpc_request(x)

    async def run():
        async with grpc.aio.insecure_channel(target) as ch:
            stub = ch.unary_unary(_GRPC_METHOD,
                                  request_serializer=pb.ModelInferRequest.SerializeToString,
                                  response_deserializer=pb.ModelInferResponse.FromString)

            async def call():
                await stub(req, metadata=_GRPC_MD, timeout=60)
            return await _load(call, CLIENTS, LOAD_S)
    return asyncio.run(run())


# ------------------------------------------------------------------------ one Serve mode

def _set_batching(client, mv, on: bool, ttl_s: float) -> None:
    from trainserve.pb import deployment_pb2
    from trainserve.store.deployments import DeploymentStore
    dep = deployment_pb2.Deployment(name=ENDPOINT, model_name=mv.name, model_version=mv.version,
                                    state=deployment_pb2.DEPLOYMENT_STATE_PENDING)
    if on:
        dep.options.max_batch_size, dep.options.batch_wait_ms = BATCH_OPTS
    DeploymentStore(client).put(dep)
    time.sleep(ttl_s + 0.3)  # the gateway's resolution cache


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


def one_mode(mode: str, artifact_dir: Path, out: Path) -> None:
    """Runs in a child process whose environment holds the Ray head's token (and mode)."""
    import numpy as np
    import ray
    from ray import serve

    from tests.conftest import RedisServer
    from trainserve.pb import job_pb2
    from trainserve.registry.versions import register
    from trainserve.serve import control
    from trainserve.store.models import ModelStore
    from trainserve.store.redis import connect
    from trainserve.train.artifacts import load_artifact

    temp = Path(tempfile.mkdtemp(prefix="tsb"))  # short: Ray's socket paths < 108 chars
    head = RayHead(temp, os.environ, MODES[mode])
    redis_server = RedisServer(temp / "redis")
    rows: dict = {}
    try:
        address = head.start()
        ray.init(address=address, logging_level="WARNING", log_to_driver=False)
        redis_server.start()
        client = connect(redis_server.url)
        storage = temp / "storage"
        meta = json.loads((artifact_dir / "meta.json").read_text())
        spec = load_artifact(artifact_dir).spec
        mv = register(ModelStore(client), storage, job_pb2.Job(id="job-bench", spec=spec),
                      artifact_dir)
        cfg = control.ServeConfig(http_port=free_port(), grpc_port=free_port(),
                                  redis_url=redis_server.url, storage_dir=str(storage))
        _set_batching(client, mv, False, 0)
        t = time.monotonic()
        control.ensure_serve(cfg)
        control.warm(ENDPOINT)
        serve.run(_baseline_app(str(artifact_dir)), name="minimal", route_prefix=BASE_PREFIX,
                  blocking=False)
        while str(getattr(serve.status().applications["minimal"].status, "value", "")) \
                != "RUNNING":
            time.sleep(0.3)
        print(f"[{mode}] Serve + both applications up in {time.monotonic() - t:.1f} s",
              file=sys.stderr)

        shape = tuple(meta["input_shape"])
        rng = np.random.default_rng(0)
        x1 = rng.uniform(0, 16, size=(1, *shape)).astype(np.float32)
        x32 = rng.uniform(0, 16, size=(32, *shape)).astype(np.float32)

        def body(x):
            return {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape),
                                "data": x.ravel().tolist()}]}

        ours = f"http://127.0.0.1:{cfg.http_port}/v2/models/{ENDPOINT}/infer"
        base = f"http://127.0.0.1:{cfg.http_port}{BASE_PREFIX}"
        grpc_target = f"127.0.0.1:{cfg.grpc_port}"
        # Both answer the same probabilities.
        import httpx
        a = httpx.post(ours, json=body(x1), timeout=30).json()
        b = httpx.post(base, json=body(x1), timeout=30).json()
        pa = next(o["data"] for o in a["outputs"] if o["name"] == "probabilities")
        np.testing.assert_allclose(pa, b["outputs"][0]["data"], rtol=1e-4, atol=1e-6)

        rows["forward"] = forward_floor(artifact_dir, x1)
        rows["seq_rest_base"] = sequential_rest(base, body(x1))
        rows["seq_rest_ours"] = sequential_rest(ours, body(x1))
        rows["seq_grpc_ours"] = grpc_sequential(grpc_target, x1)
        rows["seq32_rest_base"] = sequential_rest(base, body(x32))
        rows["seq32_rest_ours"] = sequential_rest(ours, body(x32))
        rows["conc_rest_base"] = concurrent_rest(base, body(x1))
        rows["conc_rest_ours"] = concurrent_rest(ours, body(x1))
        rows["conc_grpc_ours"] = grpc_concurrent(grpc_target, x1)
        _set_batching(client, mv, True, cfg.resolve_ttl_s)
        before = _batch_sizes()
        rows["conc_rest_ours_batch"] = concurrent_rest(ours, body(x1))
        mid = _batch_sizes()
        rows["conc_grpc_ours_batch"] = grpc_concurrent(grpc_target, x1)
        # Forward passes per merged size while batching was on (warm-ups included).
        rows["batch_sizes_rest"] = _diff(mid, before)
        rows["batch_sizes_grpc"] = _diff(_batch_sizes(), mid)
    finally:
        try:
            serve.shutdown()
        except Exception:
            pass
        ray.shutdown()
        redis_server.stop()
        head.stop()
        shutil.rmtree(temp, ignore_errors=True)
    out.write_text(json.dumps(rows, default=str))


# ---------------------------------------------------------------------------------- main

def _table_rows(mode: str, r: dict) -> list[dict]:
    def row(fig, ours, base=None):
        return {"figure": f"[{mode}] {fig}", "ours": ours, "baseline": base,
                "ratio": (ours / base) if base else None}
    fw = r["forward"]
    out = [row("forward batch 1, p50 ms (floor)", fw["p50_ms"])]
    for k, label in (("seq_rest", "REST sequential batch 1"),
                     ("seq32_rest", "REST sequential 32 instances")):
        for q in ("p50_ms", "p99_ms"):
            out.append(row(f"{label}, {q.replace('_ms', '')} ms",
                           r[f"{k}_ours"][q], r[f"{k}_base"][q]))
    for q in ("p50_ms", "p99_ms"):
        out.append(row(f"gRPC sequential batch 1 (ours), {q.replace('_ms', '')} ms",
                       r["seq_grpc_ours"][q], r["seq_rest_base"][q]))
    cb = r["conc_rest_base"]
    for k, label in (("conc_rest_ours", "REST 32 clients, batching off"),
                     ("conc_rest_ours_batch", "REST 32 clients, batching 32/2ms"),
                     ("conc_grpc_ours", "gRPC 32 clients, batching off"),
                     ("conc_grpc_ours_batch", "gRPC 32 clients, batching 32/2ms")):
        c = r[k]
        out.append(row(f"{label}, req/s", c["rps"], cb["rps"]))
        out.append(row(f"{label}, p50 ms", c["p50_ms"], cb["p50_ms"]))
        out.append(row(f"{label}, p99 ms", c["p99_ms"], cb["p99_ms"]))
    for proto in ("rest", "grpc"):
        sizes = {int(k): n for k, n in r[f"batch_sizes_{proto}"].items()}
        passes = sum(sizes.values())
        if passes:
            out.append(row(f"{proto.upper()} batching on: mean requests per forward",
                           sum(k * n for k, n in sizes.items()) / passes))
    return out


def main(modes: list[str] | None = None) -> None:
    modes = modes or list(MODES)
    work = Path(tempfile.mkdtemp(prefix="ts-bench-serve-"))
    all_rows, raw = [], {}
    try:
        artifact = train_model(work)
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
            subprocess.run([sys.executable, __file__, APP_ARG, mode, str(artifact), str(out)],
                           env=env, check=True, timeout=600)
            print(f"[{mode}] done in {time.perf_counter() - t:.1f} s", file=sys.stderr)
            raw[mode] = json.loads(out.read_text())
            all_rows += _table_rows(mode, raw[mode])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table("serve: ours (trainserve gateway + model host) vs a minimal Serve deployment; "
                "ratio ours/minimal", all_rows)
    meta = {"raw": raw, "epochs": EPOCHS, "clients": CLIENTS, "load_s": LOAD_S}
    print(f"\nresults: {save('serve', all_rows, meta)}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == APP_ARG:
        one_mode(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
    else:
        main(sys.argv[1:] or None)
