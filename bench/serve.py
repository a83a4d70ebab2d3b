"""Our `trainserve` Serve application against the least a Ray Serve user would write to
serve the same model (bench/serve_minimal.py), like for like: same Serve mode, same protocol,
batching on both sides or on neither.

One digits LeNet-5 is trained in-process (3 epochs, `training.loop.train`), registered in a
throwaway redis-server the way the registry does it, and deployed twice: endpoint `digits`
(batching off) and `digits_batch` (max_batch_size 32, batch_wait_ms 2). Per Serve mode
(default; HAProxy, `RAY_SERVE_ENABLE_HA_PROXY=1 RAY_SERVE_USE_GRPC_BY_DEFAULT=1` in the Ray
head's environment), a child process starts its own Ray head (2 CPUs, loopback),
`ensure_serve` for ours, and beside it, on the same Serve, the baselines `minimal` and
`minimal_batch` (`@serve.batch` with the same size and wait). Measured:

- the model's own forward at batch 1 (preprocess + forward + softmax, 1 thread): the floor;
- sequential latency (1 and 32 instances per request), REST and gRPC, ours and the baseline,
  in rounds interleaved between them;
- 32 closed-loop clients (bench/serve_load.py): every figure taken only once 3 consecutive
  2 s windows agree within 10 %, in 5 rounds interleaved over ours/baseline x REST/gRPC x
  batching off/on; the median of the rounds, with min-max and the errors of every window;
- open-loop load at 50 % and 90 % of our measured capacity (batching off), ours and the
  baseline at the same rate: p50/p95/p99 from the moment each request was due, errors;
- the ResNet endpoint with batching on against off, and a rollout under load (ours alone).

Ratios are ours / baseline, measured in the same run on the same Ray and Serve.
`BENCH_SERVE_QUICK=1` shortens every window and round (a smoke run; figures not comparable).
`python bench/serve.py --rows` recomputes the rows of the saved results from their raw figures
(after a change to bench/serve_table.py).
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

from bench import serve_load, serve_minimal  # noqa: E402
from bench.common import RESULTS, free_port, print_table, save  # noqa: E402
from bench.serve_table import table_rows  # noqa: E402
from tests.ray_head import RayHead  # noqa: E402

EPOCHS, SEED, CLIENTS, LOAD_S, OPEN_S = 3, 0, 32, 5.0, 5.0
N_WARM, N_SEQ, SEQ_ROUNDS = 30, 1000, 5  # sequential figures: requests each, rounds
BATCH_OPTS = (32, 2.0)  # max_batch_size, batch_wait_ms
MODES = {"default": "default", "haproxy": "throughput"}  # label: SERVE_MODES name
ENDPOINT, ENDPOINT_BATCH, APP_ARG = "digits", "digits_batch", "--one"
OURS_APP = "trainserve"
# What every request asks for, so both sides answer the same bytes: ours would otherwise add
# the label and the class name; the minimal deployment ignores the field.
OUTPUTS = ("probabilities",)
QUICK = os.environ.get("BENCH_SERVE_QUICK") == "1"
PLAN = (serve_load.Plan(clients=CLIENTS, window_s=0.5, max_windows=3, warmup_s=0.2, rounds=1)
        if QUICK else serve_load.Plan(clients=CLIENTS))
if QUICK:
    N_WARM, N_SEQ, SEQ_ROUNDS, LOAD_S, OPEN_S = 5, 50, 1, 1.0, 1.0


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


# ------------------------------------------------------------------------------- clients

def _summ(times_s):
    pct = serve_load.pct
    return {"p50_ms": pct(times_s, 0.5) * 1e3, "p99_ms": pct(times_s, 0.99) * 1e3}


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
            p50s[name].append(serve_load.pct(round_times, 0.5))
            times[name] += round_times
    return {k: {"p50_ms": statistics.median(p50s[k]) * 1e3,
                "p99_ms": serve_load.pct(times[k], 0.99) * 1e3,
                "round_p50_ms": [round(v * 1e3, 4) for v in p50s[k]]} for k in calls}


def rest_caller(client, url: str, body: dict) -> Callable[[], Any]:
    payload, headers = json.dumps(body).encode(), {"content-type": "application/json"}
    return lambda: client.post(url, content=payload, headers=headers).raise_for_status()


_GRPC_METHOD = "/inference.GRPCInferenceService/ModelInfer"


def _grpc_md(app: str):
    return (("application", app),)  # several Serve applications: the proxy routes by it


def _grpc_request(x, endpoint: str = ENDPOINT):
    from trainserve._gen.inference import grpc_predict_v2_pb2 as pb
    t = pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32",
                                              shape=list(x.shape))
    t.contents.fp32_contents.extend(x.ravel().tolist())
    wanted = [pb.ModelInferRequest.InferRequestedOutputTensor(name=n) for n in OUTPUTS]
    return pb.ModelInferRequest(model_name=endpoint, inputs=[t], outputs=wanted)


def _grpc_stub(channel):
    from trainserve._gen.inference import grpc_predict_v2_pb2 as pb
    return channel.unary_unary(_GRPC_METHOD,
                               request_serializer=pb.ModelInferRequest.SerializeToString,
                               response_deserializer=pb.ModelInferResponse.FromString)


def grpc_caller(channel, x, app: str = OURS_APP, endpoint: str = ENDPOINT):
    call, req, md = _grpc_stub(channel), _grpc_request(x, endpoint), _grpc_md(app)
    return lambda: call(req, metadata=md, timeout=30)


async def _load(one_call, clients: int, seconds: float) -> dict:
    """`clients` loops calling `one_call()` for `seconds` after a 0.5 s warm-up."""
    w = await serve_load.window(one_call, clients, 0.5)
    w = await serve_load.window(one_call, clients, seconds)
    return {"rps": w.rps, "errors": w.errors, **_summ(w.latencies)}


def grpc_concurrent(target: str, x, endpoint: str = ENDPOINT, during=None) -> dict:
    """CLIENTS gRPC clients of ours for LOAD_S; `during`, if given, runs in a thread meanwhile
    (a rollout) and the load lasts until it returns."""
    import grpc
    req = _grpc_request(x, endpoint)

    async def run():
        async with grpc.aio.insecure_channel(target) as ch:
            stub = _grpc_stub(ch)

            async def call():
                await stub(req, metadata=_grpc_md(OURS_APP), timeout=60)
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


# ------------------------------------------------------------------ closed and open loop

def _targets(cfg) -> dict[str, dict]:
    """Every side of the like-for-like comparison: (REST URL, gRPC application, model name)."""
    http = f"http://127.0.0.1:{cfg.http_port}"
    return {"ours": {"url": f"{http}/v2/models/{ENDPOINT}/infer", "app": OURS_APP,
                     "model": ENDPOINT},
            "ours_batch": {"url": f"{http}/v2/models/{ENDPOINT_BATCH}/infer", "app": OURS_APP,
                           "model": ENDPOINT_BATCH},
            "base": {"url": f"{http}/minimal", "app": "minimal", "model": "minimal"},
            "base_batch": {"url": f"{http}/minimal_batch", "app": "minimal_batch",
                           "model": "minimal"}}


def _async_calls(http, channel, targets: dict, x) -> dict[str, serve_load.Call]:
    """"<proto>_<side>" -> an awaitable one-request call."""
    payload, headers = json.dumps(_body(x)).encode(), {"content-type": "application/json"}
    stub, calls = _grpc_stub(channel), {}
    for side, t in targets.items():
        async def rest(url=t["url"]):
            async with http.post(url, data=payload, headers=headers) as r:
                await r.read()
                r.raise_for_status()

        async def grpc_call(req=_grpc_request(x, t["model"]), md=_grpc_md(t["app"])):
            await stub(req, metadata=md, timeout=60)
        calls[f"rest_{side}"], calls[f"grpc_{side}"] = rest, grpc_call
    return calls


async def _closed_and_open(cfg, x) -> dict:
    import aiohttp
    import grpc

    conn = aiohttp.TCPConnector(limit=512)
    async with aiohttp.ClientSession(connector=conn,
                                     timeout=aiohttp.ClientTimeout(total=60)) as http, \
            grpc.aio.insecure_channel(f"127.0.0.1:{cfg.grpc_port}") as channel:
        calls = _async_calls(http, channel, _targets(cfg), x)
        figures = await serve_load.rounds(calls, PLAN)
        out = {f"conc_{k}": serve_load.summary(v) for k, v in figures.items()}
        for proto in ("rest", "grpc"):
            capacity = out[f"conc_{proto}_ours"]["rps"]["median"]
            for share in (50, 90):
                for side in ("ours", "base"):  # the same offered rate on both sides
                    out[f"open_{proto}_{side}_{share}"] = await serve_load.open_loop(
                        calls[f"{proto}_{side}"], capacity * share / 100, OPEN_S)
    return out


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
        _set_batching(client, mv, True, 0, ENDPOINT_BATCH)
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
    for endpoint in (ENDPOINT, ENDPOINT_BATCH, "resnet"):
        control.warm(endpoint)
    for name, batching in serve_minimal.APPS.items():
        serve.run(serve_minimal.app(str(artifact_dir), batching, *BATCH_OPTS), name=name,
                  route_prefix=f"/{name}", blocking=False)
    for name in serve_minimal.APPS:
        while str(getattr(serve.status().applications[name].status, "value", "")) \
                != "RUNNING":
            time.sleep(0.3)
    print(f"[{mode}] Serve + all applications up in {time.monotonic() - t:.1f} s",
          file=sys.stderr)


def _body(x) -> dict:
    return {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape),
                        "data": x.ravel().tolist()}],
            "outputs": [{"name": n} for n in OUTPUTS]}


def _same_answers(cfg, x1) -> None:
    """Every side answers the same probabilities, over REST and gRPC."""
    import grpc
    import httpx
    import numpy as np

    expected = None
    with grpc.insecure_channel(f"127.0.0.1:{cfg.grpc_port}") as ch:
        for t in _targets(cfg).values():
            rest = httpx.post(t["url"], json=_body(x1), timeout=30).json()
            got = [next(o["data"] for o in rest["outputs"] if o["name"] == "probabilities")]
            got.append(_grpc_probabilities(grpc_caller(ch, x1, t["app"], t["model"])()))
            for p in got:
                expected = p if expected is None else expected
                np.testing.assert_allclose(p, expected, rtol=1e-4, atol=1e-6)


def _grpc_probabilities(reply):
    """The probabilities of a ModelInferResponse, typed contents or raw bytes alike."""
    import numpy as np
    for i, out in enumerate(reply.outputs):
        if out.name == "probabilities":
            if reply.raw_output_contents:
                return np.frombuffer(reply.raw_output_contents[i], dtype=np.float32)
            return np.asarray(out.contents.fp32_contents, dtype=np.float32)
    raise AssertionError("no probabilities in the answer")


def _sequential_all(cfg, x1, x32) -> dict:
    import grpc
    import httpx

    t = _targets(cfg)
    with httpx.Client(timeout=30) as h, \
            grpc.insecure_channel(f"127.0.0.1:{cfg.grpc_port}") as ch:
        calls = {}
        for size, x in (("", x1), ("32", x32)):
            for side in ("base", "ours"):
                calls[f"seq{size}_rest_{side}"] = rest_caller(h, t[side]["url"], _body(x))
                calls[f"seq{size}_grpc_{side}"] = grpc_caller(ch, x, t[side]["app"],
                                                              t[side]["model"])
        return sequential(calls)


def _measure(mode: str, cfg, client, artifact_dir: Path, versions) -> dict:
    import numpy as np

    mv, mv2, resnet = versions
    _start(mode, cfg, artifact_dir)
    meta = json.loads((artifact_dir / "meta.json").read_text())
    rng = np.random.default_rng(0)
    x1 = rng.uniform(0, 16, size=(1, *meta["input_shape"])).astype(np.float32)
    x32 = rng.uniform(0, 16, size=(32, *meta["input_shape"])).astype(np.float32)
    _same_answers(cfg, x1)
    grpc_target = f"127.0.0.1:{cfg.grpc_port}"
    rows = {"forward": forward_floor(artifact_dir, x1), **_sequential_all(cfg, x1, x32)}
    rows |= asyncio.run(_closed_and_open(cfg, x1))
    rows["resnet_grpc"] = grpc_concurrent(grpc_target, x1, "resnet")
    _set_batching(client, resnet, True, cfg.resolve_ttl_s, "resnet")
    rows["resnet_grpc_batch"] = grpc_concurrent(grpc_target, x1, "resnet")
    _set_batching(client, mv, True, cfg.resolve_ttl_s)
    before = _batch_sizes()  # only this endpoint is under load now
    rows["steady_grpc_batch"] = grpc_concurrent(grpc_target, x1)
    rows["batch_sizes"] = _diff(_batch_sizes(), before)
    # A rollout (v1 -> 50 % canary v2 -> promoted) under the same gRPC load, batching on.
    rows["rollout_grpc"] = grpc_concurrent(
        grpc_target, x1, during=lambda: _rollout(client, mv, mv2, cfg.resolve_ttl_s))
    return rows


# ---------------------------------------------------------------------------------- main

def main(modes: list[str] | None = None) -> list[dict]:
    modes = modes or list(MODES)
    work = Path(tempfile.mkdtemp(prefix="ts-bench-serve-"))
    all_rows, raw = [], {}
    try:
        artifacts = {"lenet": str(train_model(work)),
                     "lenet_v2": str(train_model(work, seed=SEED + 1)),
                     "resnet": str(train_model(work, "resnet_digits", epochs=2))}
        for mode in modes:
            raw[mode] = _run_mode(mode, artifacts, work)
            all_rows += table_rows(mode, raw[mode])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table("serve: ours (the trainserve application) vs a minimal Serve deployment, "
                "same mode, protocol and batching; ratio ours/minimal", all_rows)
    meta = {"raw": raw, "epochs": EPOCHS, "clients": CLIENTS, "quick": QUICK,
            "plan": PLAN.__dict__, "open_s": OPEN_S}
    print(f"\nresults: {save('serve', all_rows, meta)}")
    return all_rows


def _run_mode(mode: str, artifacts: dict, work: Path) -> dict:
    """One Serve mode in a child process with a Ray head (and token) of its own."""
    out = work / f"{mode}.json"
    # Our own Ray token: ~/.ray/auth_token is shared with other clusters here.
    env = {k: v for k, v in os.environ.items()
           if k != "RAY_ADDRESS" and not k.startswith("RAY_AUTH")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32),
               PYTHONPATH=os.pathsep.join(
                   [str(Path(__file__).resolve().parent.parent),
                    env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    t = time.perf_counter()
    subprocess.run([sys.executable, __file__, APP_ARG, mode, json.dumps(artifacts), str(out)],
                   env=env, check=True, timeout=1500)
    print(f"[{mode}] done in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return json.loads(out.read_text())


def rebuild_rows(path: Path = RESULTS / "serve.json") -> Path:
    """Recompute the rows of a saved run from its raw figures (after a change to
    bench/serve_table.py), keeping what it was measured on."""
    doc = json.loads(path.read_text())
    doc["rows"] = [r for mode, raw in doc["raw"].items() for r in table_rows(mode, raw)]
    path.write_text(json.dumps(doc, indent=2, default=str))
    return path


if __name__ == "__main__":
    if sys.argv[1:] == ["--rows"]:
        print("rows rebuilt:", rebuild_rows())
    elif len(sys.argv) > 1 and sys.argv[1] == APP_ARG:
        one_mode(sys.argv[2], json.loads(sys.argv[3]), Path(sys.argv[4]))
    else:
        main(sys.argv[1:] or None)
