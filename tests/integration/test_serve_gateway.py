"""The serving layer end to end: a real redis-server, a real Ray head (`ray start`), Serve with
the `trainserve` application, real artifacts written by `training.artifacts` and registered by
the registry, and standard clients (tritonclient.http and tritonclient.grpc, raw httpx) that
send no extra headers or metadata.

tritonclient.grpc defines the same `inference.*` protobuf symbols as our stubs, which cannot
share a process (our unit tests import ours), so the gRPC client runs in a child process.
"""
from __future__ import annotations

import dataclasses
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from tests.conftest import free_port
from tests.ray_head import SERVE_MODES, connected_head

pytestmark = pytest.mark.integration

IRIS_CLASSES = ("setosa", "versicolor", "virginica")


# ---------------------------------------------------------------------------- the stack


# Both of Serve's modes (tests/ray_head.py): every test runs against each, so the
# throughput-oriented one is known to be correct too, gRPC ingress included.
@pytest.fixture(scope="module", params=SERVE_MODES)
def ray_head(request):
    """A one-node Ray cluster of 2 CPUs on loopback, on free ports; this process connects."""
    with connected_head(request.param):
        yield request.param


def _wait_for(check, timeout_s, what, alive=lambda: True):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if not alive():
            raise RuntimeError(f"{what} exited")
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout_s} s")


class Stack:
    """What the tests talk to, and the reference models they compare against."""

    def __init__(self, cfg, storage: Path, redis_url: str):
        self.cfg, self.storage, self.redis_url = cfg, storage, redis_url
        self.rest = f"http://127.0.0.1:{cfg.http_port}"
        self.grpc = f"127.0.0.1:{cfg.grpc_port}"
        self.model_dirs: dict[str, Path] = {}

    def reference(self, model_id: str, x: np.ndarray) -> np.ndarray:
        """The model's own forward on the preprocessed input, outside Serve."""
        from trainserve.training.artifacts import load_artifact
        loaded = load_artifact(self.model_dirs[model_id])
        with torch.inference_mode():
            return loaded.module(torch.from_numpy(loaded.preprocessing.apply(x))).numpy()


def _register(redis_client, storage: Path, tmp: Path, name: str, dataset: str, task: str,
              classes: tuple, n_in: int, seed: int, job_id: str):
    """Write an artifact of a random MLP through train/ and register it; its model dir."""
    from trainserve.core.pb import job_pb2, spec_pb2
    from trainserve.registry.versions import register
    from trainserve.core.tenancy import Principal
    from trainserve.store.models import ModelStore
    from trainserve.training.artifacts import save_artifact
    from trainserve.training.data import Preprocessing
    from trainserve.training.datasets import DatasetInfo
    from trainserve.training.zoo import build_model

    spec = spec_pb2.JobSpec(name=name)
    spec.dataset.name = dataset
    spec.model.mlp.hidden.extend([16])
    spec.model.mlp.activation = "relu"
    spec.training.seed = seed
    info = DatasetInfo(dataset, task, len(classes), classes, (n_in,), 100)
    torch.manual_seed(seed)
    model = build_model(spec, info)
    rng = np.random.default_rng(seed)
    pre = Preprocessing("standard", tuple(rng.normal(5, 1, n_in).tolist()),
                        tuple(rng.uniform(0.5, 2, n_in).tolist()))
    artifact = save_artifact(tmp / job_id, model, spec, info, pre, {"test_accuracy": 0.5})
    job = job_pb2.Job(id=job_id, spec=spec, user="tester")
    mv = register(ModelStore(redis_client), storage, job, artifact, Principal("tester", "user"))
    return mv, Path(mv.artifact_uri)


def _deploy(redis_client, endpoint: str, model_name: str, version: int) -> None:
    from trainserve.core.pb import deployment_pb2
    from trainserve.store.deployments import DeploymentStore
    DeploymentStore(redis_client).put(deployment_pb2.Deployment(
        name=endpoint, model_name=model_name, model_version=version,
        state=deployment_pb2.DEPLOYMENT_STATE_PENDING))


@pytest.fixture(scope="module")
def stack(ray_head, redis_server, tmp_path_factory):
    from trainserve.serve import control
    from trainserve.store.redis import connect

    storage = tmp_path_factory.mktemp("storage")
    tmp = tmp_path_factory.mktemp("artifacts")
    client = connect(redis_server.url)
    cfg = control.ServeConfig(http_port=free_port(), grpc_port=free_port(),
                              redis_url=redis_server.url, storage_dir=str(storage))
    s = Stack(cfg, storage, redis_server.url)
    s.mode = ray_head
    for endpoint, (name, dataset, task, classes, n_in, seed) in {
        "iris": ("iris-mlp", "iris", "classification", IRIS_CLASSES, 4, 1),
        "diabetes": ("diabetes-mlp", "diabetes", "regression", (), 10, 2),
    }.items():
        mv, path = _register(client, storage, tmp, name, dataset, task, classes, n_in, seed,
                             f"job-{endpoint}")
        s.model_dirs[f"{mv.name}:{mv.version}"] = path
        _deploy(client, endpoint, mv.name, mv.version)
    started = time.monotonic()
    control.ensure_serve(cfg)
    s.startup_s = time.monotonic() - started
    s.client = client
    yield s
    control.shutdown()
    client.close()


# --------------------------------------------------------------------------- the control


def test_ensure_serve_is_idempotent_and_warm_loads(stack):
    from trainserve.serve import control
    t = time.monotonic()
    control.ensure_serve(stack.cfg)  # a restarted dispatcher calls it again
    assert time.monotonic() - t < 10 and control.app_status() == "RUNNING"
    assert control.warm("iris") == "iris-mlp:1"
    assert control.warm("diabetes") == "diabetes-mlp:1"
    assert control.endpoint_addresses(stack.cfg, "iris") == (
        f"{stack.rest}/v2/models/iris", stack.grpc)


def test_ensure_serve_applies_a_changed_config(stack):
    from trainserve.serve import control
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [3, 4],
                        "data": [1.0] * 12}]}
    control.ensure_serve(dataclasses.replace(stack.cfg, max_batch_size=2))
    try:
        r = httpx.post(f"{stack.rest}/v2/models/iris/infer", json=body, timeout=30)
        assert r.status_code == 400 and "outside 1..2" in r.json()["error"]
    finally:
        control.ensure_serve(stack.cfg)
    assert httpx.post(f"{stack.rest}/v2/models/iris/infer", json=body,
                      timeout=30).status_code == 200
    print(f"\nServe + application start ({stack.mode}): {stack.startup_s:.1f} s")


def test_warm_reports_why_it_cannot(stack):
    from trainserve.core.errors import ModelNotReady, NotFound
    from trainserve.serve import control
    from trainserve.serve.signature import version_record
    from trainserve.store.models import ModelStore

    with pytest.raises(NotFound, match="model 'ghost' is not deployed"):
        control.warm("ghost")
    broken = stack.storage / "broken"
    broken.mkdir(exist_ok=True)
    (broken / "meta.json").write_text("{not json")
    meta = {"task": "classification", "class_names": [], "input_shape": [4], "output_dim": 3}
    ModelStore(stack.client).put(version_record("broken-mlp", 1, meta, str(broken)))
    _deploy(stack.client, "broken", "broken-mlp", 1)
    with pytest.raises(ModelNotReady, match=r"cannot load the model in .*broken: JSONDecodeError"):
        control.warm("broken")


# ------------------------------------------------------------------- tritonclient.http


def _x(n=5, n_in=4, seed=0):
    return np.random.default_rng(seed).normal(5, 1, size=(n, n_in)).astype(np.float32)


def test_tritonclient_http_health_metadata_and_infer(stack):
    import tritonclient.http as httpclient

    c = httpclient.InferenceServerClient(stack.rest.removeprefix("http://"))
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("iris") and not c.is_model_ready("ghost")
    md = c.get_model_metadata("iris")
    assert md["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert md["versions"] == ["1"]
    x = _x()
    for binary in (True, False):
        inp = httpclient.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        outs = [httpclient.InferRequestedOutput(n, binary_data=binary)
                for n in ("probabilities", "label", "class_name")]
        result = c.infer("iris", [inp], outputs=outs)
        logits = stack.reference("iris-mlp:1", x)
        probs = torch.softmax(torch.from_numpy(logits), 1).numpy()
        np.testing.assert_allclose(result.as_numpy("probabilities"), probs, rtol=1e-5)
        np.testing.assert_array_equal(result.as_numpy("label"), logits.argmax(1))
        assert [n.decode() if isinstance(n, bytes) else n
                for n in result.as_numpy("class_name").tolist()] == [
            IRIS_CLASSES[i] for i in logits.argmax(1)]


def test_tritonclient_http_errors(stack):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    c = httpclient.InferenceServerClient(stack.rest.removeprefix("http://"))
    x = _x(n_in=3)
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException) as err:
        c.infer("iris", [inp])
    assert err.value.status() == "400" and "expected FP32 [-1, 4]" in err.value.message()
    inp = httpclient.InferInput("input", [1, 4], "FP32")
    inp.set_data_from_numpy(_x(1))
    with pytest.raises(InferenceServerException) as err:
        c.infer("ghost", [inp])
    assert err.value.status() == "404" and "not deployed" in err.value.message()


# ------------------------------------------------------------------------------- httpx


def test_raw_rest(stack):
    with httpx.Client(base_url=stack.rest, timeout=30) as h:
        assert h.get("/v2/health/live").json() == {"live": True}
        assert h.get("/v2").json()["name"] == "trainserve"
        r = h.post("/v2/models/iris/infer", content=b"{oops")
        assert r.status_code == 400 and "malformed JSON body" in r.json()["error"]
        body = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 4],
                            "data": [1, 2, 3, 4]}]}
        r = h.post("/v2/models/iris/infer", json=body)
        assert r.status_code == 400 and "expected FP32 [-1, 4]" in r.json()["error"]
        body["inputs"][0].update(datatype="FP32", shape=[1, 3], data=[1, 2, 3])
        r = h.post("/v2/models/iris/infer", json=body)
        assert r.status_code == 400 and "expected FP32 [-1, 4]" in r.json()["error"]
        assert h.post("/v2/models/ghost/infer", json=body).status_code == 404
        assert h.get("/v2/models/iris/versions/7").status_code == 404


def test_v1_predict(stack):
    x = _x(3)
    with httpx.Client(base_url=stack.rest, timeout=30) as h:
        preds = h.post("/v1/models/iris:predict", json={"instances": x.tolist()}).json()
        logits = stack.reference("iris-mlp:1", x)
        assert [p["label"] for p in preds["predictions"]] == logits.argmax(1).tolist()
        assert [p["class_name"] for p in preds["predictions"]] == [
            IRIS_CLASSES[i] for i in logits.argmax(1)]
        xd = _x(2, 10)
        preds = h.post("/v1/models/diabetes:predict", json={"instances": xd.tolist()}).json()
        np.testing.assert_allclose(preds["predictions"],
                                   stack.reference("diabetes-mlp:1", xd)[:, 0], rtol=1e-5)
        r = h.post("/v1/models/iris:predict", json={"instances": [[1, 2]]})
        assert r.status_code == 400 and "each instance must be FP32 [4]" in r.json()["error"]


# ------------------------------------------------------------------- tritonclient.grpc

_GRPC_PROBE = r"""
import json, sys, time
import numpy as np
import tritonclient.grpc as g
from tritonclient.utils import InferenceServerException

target, n = sys.argv[1], int(sys.argv[2])
x = np.asarray(json.loads(sys.stdin.read()), dtype=np.float32)
c = g.InferenceServerClient(target)
out = {"live": c.is_server_live(), "ready": c.is_server_ready(),
       "model_ready": c.is_model_ready("iris"), "ghost_ready": c.is_model_ready("ghost"),
       "metadata": json.loads(__import__("google.protobuf.json_format", fromlist=["x"])
                              .MessageToJson(c.get_model_metadata("iris")))}

def infer(arr, model="iris"):
    inp = g.InferInput("input", list(arr.shape), "FP32")
    inp.set_data_from_numpy(arr)
    return c.infer(model, [inp])

r = infer(x)
out["probabilities"] = r.as_numpy("probabilities").tolist()
out["label"] = r.as_numpy("label").tolist()
errors = {}
for case, (arr, model) in {"shape": (x[:, :3].copy(), "iris"), "unknown": (x, "ghost")}.items():
    try:
        infer(arr, model)
        errors[case] = None
    except InferenceServerException as e:
        errors[case] = [e.status(), e.message()]
out["errors"] = errors
one = x[:1].copy()
times = []
for _ in range(n):
    t = time.perf_counter()
    infer(one)
    times.append(time.perf_counter() - t)
out["latency_s"] = times
print(json.dumps(out))
"""


def _grpc_probe(stack, x, n):
    proc = subprocess.run([sys.executable, "-c", _GRPC_PROBE, stack.grpc, str(n)],
                          input=json.dumps(x.tolist()), text=True, capture_output=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_tritonclient_grpc(stack):
    x = _x()
    out = _grpc_probe(stack, x, n=0)
    assert out["live"] and out["ready"] and out["model_ready"] and not out["ghost_ready"]
    assert out["metadata"]["inputs"] == [{"name": "input", "datatype": "FP32",
                                          "shape": ["-1", "4"]}]
    logits = stack.reference("iris-mlp:1", x)
    np.testing.assert_allclose(out["probabilities"],
                               torch.softmax(torch.from_numpy(logits), 1).numpy(), rtol=1e-5)
    assert out["label"] == logits.argmax(1).tolist()
    status, message = out["errors"]["shape"]
    assert status == "StatusCode.INVALID_ARGUMENT" and "expected FP32 [-1, 4]" in message
    status, message = out["errors"]["unknown"]
    assert status == "StatusCode.NOT_FOUND" and "not deployed" in message


# ---------------------------------------------------------------------------- redeploy


def test_redeploy_takes_effect_within_two_seconds(stack, tmp_path):
    mv, path = _register(stack.client, stack.storage, tmp_path, "iris-mlp", "iris",
                         "classification", IRIS_CLASSES, 4, 9, "job-iris-2")
    stack.model_dirs[f"{mv.name}:{mv.version}"] = path
    with httpx.Client(base_url=stack.rest, timeout=30) as h:
        body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4],
                            "data": [5, 5, 5, 5]}]}
        assert h.post("/v2/models/iris/infer", json=body).json()["model_version"] == "1"
        _deploy(stack.client, "iris", mv.name, mv.version)
        t = time.monotonic()
        _wait_for(lambda: h.post("/v2/models/iris/infer", json=body).json()["model_version"]
                  == str(mv.version), 2.5, "the re-deploy")
        print(f"\nre-deploy visible after {time.monotonic() - t:.2f} s")
        _deploy(stack.client, "iris", mv.name, 1)  # back, for the tests that follow
        time.sleep(stack.cfg.resolve_ttl_s + 0.1)


# ----------------------------------------------------------------------------- latency


def _summary(times_s):
    ms = sorted(t * 1e3 for t in times_s)
    return {"p50_ms": round(statistics.median(ms), 3),
            "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 3),
            "mean_ms": round(statistics.fmean(ms), 3)}


def test_sequential_latency_rest_grpc_vs_forward(stack, record_property):
    import tritonclient.http as httpclient
    from trainserve.training.artifacts import load_artifact

    n = 300
    one = _x(1)
    torch.set_num_threads(stack.cfg.torch_threads)  # the same threads as the model host
    loaded = load_artifact(stack.model_dirs["iris-mlp:1"])
    forward = []
    for _ in range(n):
        t = time.perf_counter()
        with torch.inference_mode():
            torch.softmax(loaded.module(torch.from_numpy(loaded.preprocessing.apply(one))), 1)
        forward.append(time.perf_counter() - t)

    c = httpclient.InferenceServerClient(stack.rest.removeprefix("http://"))
    inp = httpclient.InferInput("input", [1, 4], "FP32")
    inp.set_data_from_numpy(one)
    for _ in range(20):  # warm up connections and the replicas' code paths
        c.infer("iris", [inp])
    rest = []
    for _ in range(n):
        t = time.perf_counter()
        c.infer("iris", [inp])
        rest.append(time.perf_counter() - t)
    with httpx.Client(base_url=stack.rest, timeout=30) as h:
        body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4],
                            "data": one.tolist()}]}
        for _ in range(20):
            h.post("/v2/models/iris/infer", json=body)
        rest_json = []
        for _ in range(n):
            t = time.perf_counter()
            h.post("/v2/models/iris/infer", json=body)
            rest_json.append(time.perf_counter() - t)
    grpc_times = _grpc_probe(stack, one, n + 20)["latency_s"][20:]

    report = {"forward (preprocess+forward+softmax, 1 thread)": _summary(forward),
              "REST tritonclient.http binary": _summary(rest),
              "REST httpx JSON": _summary(rest_json),
              "gRPC tritonclient.grpc": _summary(grpc_times)}
    print(f"\nsequential batch-1 latency, iris MLP, n={n}, Serve mode {stack.mode}:")
    for k, v in report.items():
        print(f"  {k:50s} {v}")
    record_property(f"latency_{stack.mode}", json.dumps(report))
    assert report["gRPC tritonclient.grpc"]["p50_ms"] < 1000  # it answers; numbers are the point
