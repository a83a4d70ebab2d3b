"""Hostile tenants on the inference endpoints, against a real stack of its own with inference
auth on (the shared `stack` stays open for the other tests): user B's token neither reaches
nor reads user A's endpoint (404 / NOT_FOUND, as for one that does not exist) over REST and
gRPC; a gzip bomb and oversized bodies are refused (413 / RESOURCE_EXHAUSTED) quickly, without
being read or inflated whole, the serving processes' memory sampled while they are in flight.

The endpoints are real deployments made through the job API; each serves a model version
registered for its user, so the Deployment records' `user` is that user, as after a job.
"""
from __future__ import annotations

import os
import select
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import ray  # noqa: F401  (puts the psutil Ray bundles on sys.path)
import torch

import psutil  # noqa: E402

from tests.conftest import free_port
from tests.integration.conftest import _dump_logs
from tests.integration.helpers import admin_token
from tests.unit.test_serve_bodies import gzip_bomb

pytestmark = pytest.mark.integration

MiB = 2**20
X = np.random.default_rng(0).normal(5, 1, size=(3, 4)).astype(np.float32)
CLASSES = ("setosa", "versicolor", "virginica")
ENDPOINTS = {"alice": "alice-iris", "bob": "bob-iris"}
# The bound this file states for the serving processes' memory while a hostile request is in
# flight (before the limits, a 1.5 MiB gzip body raised the machine's memory by ~13.8 GB).
MAX_GROWTH = 200 * MiB


def _register_for(redis, storage: Path, tmp: Path, user: str, name: str, seed: int):
    """Write an artifact of a small random MLP and register it as a version of model `name`
    owned by `user` (as the dispatcher does after `user`'s job)."""
    from trainserve.core.pb import job_pb2, spec_pb2
    from trainserve.registry.versions import register
    from trainserve.store.models import ModelStore
    from trainserve.core.tenancy import Principal
    from trainserve.training.artifacts import save_artifact
    from trainserve.training.data import Preprocessing
    from trainserve.training.datasets import DatasetInfo
    from trainserve.training.zoo import build_model

    spec = spec_pb2.JobSpec(name=name)
    spec.dataset.name = "iris"
    spec.model.mlp.hidden.extend([16])
    spec.model.mlp.activation = "relu"
    spec.training.seed = seed
    info = DatasetInfo("iris", "classification", len(CLASSES), CLASSES, (4,), 100)
    torch.manual_seed(seed)
    pre = Preprocessing("standard", (5.0,) * 4, (1.0,) * 4)
    job_id = f"job-{user}"
    artifact = save_artifact(tmp / job_id, build_model(spec, info), spec, info, pre,
                             {"test_accuracy": 0.5})
    job = job_pb2.Job(id=job_id, spec=spec, user=user)
    return register(ModelStore(redis), storage, job, artifact, Principal(user, "user"))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    from trainserve.client import Client
    from trainserve.local import Config
    from trainserve.local import LocalStack
    from trainserve.serve.auth import create_token
    from trainserve.store.redis import connect

    root = Path(tempfile.mkdtemp(prefix="ts-hi-"))  # short: Ray's socket paths
    cfg = Config(state_dir=root / "state", api_port=free_port(), serve_http_port=free_port(),
                 serve_grpc_port=free_port(), api_metrics_port=free_port(),
                 dispatcher_metrics_port=free_port(), ray_dashboard_port=free_port(),
                 redis_port=free_port(), ray_gcs_port=free_port(), console_port=free_port(),
                 ray_num_cpus=2, ray_temp_dir=str(root / "ray"), inference_auth=True)
    path = cfg.inference_token_path
    tokens = {user: create_token(path, user=user)[0] for user in ENDPOINTS}
    tokens["admin"] = create_token(path, role="admin")[0]
    s = LocalStack(cfg)
    try:
        s.up()
        redis = connect(cfg.redis_url)
        tmp = tmp_path_factory.mktemp("artifacts")
        versions = {user: _register_for(redis, cfg.storage_path, tmp, user, f"{user}-mlp", i)
                    for i, user in enumerate(ENDPOINTS)}
        redis.close()
        with Client(cfg.api_address, token=admin_token(cfg)) as ts:
            for user, mv in versions.items():
                dep = ts.deploy(mv.name, mv.version, name=ENDPOINTS[user], wait=True)
                assert dep.user == user  # the endpoint belongs to the model's owner
    except BaseException:
        _dump_logs(cfg)
        s.down()
        raise
    yield s, tokens
    s.down()
    if not os.environ.get("TRAINSERVE_KEEP_TEST_STATE"):
        shutil.rmtree(root, ignore_errors=True)


def bearer(token: str) -> dict:
    return {"authorization": f"Bearer {token}"}


def v2_body() -> dict:
    return {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(X.shape),
                        "data": X.reshape(-1).tolist()}]}


# ------------------------------------------------------------------------ (a) ownership


def test_rest_another_users_endpoint_is_not_found(hostile):
    stack, tokens = hostile
    base = f"http://{stack.config.serve_http}"
    calls = [("post", "/v2/models/{}/infer", v2_body()), ("get", "/v2/models/{}", None),
             ("get", "/v2/models/{}/versions/1", None), ("get", "/v2/models/{}/ready", None),
             ("get", "/v1/models/{}", None),
             ("post", "/v1/models/{}:predict", {"instances": X.tolist()})]
    with httpx.Client(base_url=base, timeout=60) as http:
        def call(method, path, body, who, name):
            kwargs = {"json": body} if body is not None else {}
            return getattr(http, method)(path.format(name), headers=bearer(tokens[who]),
                                         **kwargs)
        for method, path, body in calls:
            for who, name in (("alice", "alice-iris"), ("admin", "alice-iris"),
                              ("bob", "bob-iris"), ("admin", "bob-iris")):
                r = call(method, path, body, who, name)
                assert r.status_code == 200, (method, path, who, name, r.text)
            for who, name in (("bob", "alice-iris"), ("alice", "bob-iris")):
                foreign = call(method, path, body, who, name)
                unknown = call(method, path, body, who, "no-such-endpoint")
                assert foreign.status_code == unknown.status_code == 404, (method, path, who)
                assert foreign.json() == {"error": f"model {name!r} is not deployed"}
                assert "signature" not in foreign.text and "inputs" not in foreign.text
    # The server's own probes stay open.
    assert httpx.get(f"{base}/v2/health/live", timeout=30).status_code == 200
    assert httpx.get(f"{base}/v2/health/ready", timeout=30).status_code == 200


def _grpc(channel, rpc: str, request, token: str):
    from trainserve._gen.inference import grpc_predict_v2_pb2 as pb
    from trainserve.serve.grpc_api import SERVICE
    response = getattr(pb, f"{rpc}Response")
    call = channel.unary_unary(f"/{SERVICE}/{rpc}",
                               request_serializer=lambda m: m.SerializeToString(),
                               response_deserializer=response.FromString)
    return call(request, metadata=(("authorization", f"Bearer {token}"),), timeout=60)


def _infer_request(name: str):
    from trainserve._gen.inference import grpc_predict_v2_pb2 as pb
    req = pb.ModelInferRequest(model_name=name)
    req.inputs.add(name="input", datatype="FP32", shape=list(X.shape))
    req.raw_input_contents.append(X.tobytes())
    return req


def test_grpc_another_users_endpoint_is_not_found(hostile):
    from trainserve._gen.inference import grpc_predict_v2_pb2 as pb

    stack, tokens = hostile
    with grpc.insecure_channel(stack.config.serve_grpc) as channel:
        for who, name in (("alice", "alice-iris"), ("admin", "alice-iris"), ("bob", "bob-iris")):
            resp = _grpc(channel, "ModelInfer", _infer_request(name), tokens[who])
            assert resp.model_name == name and len(resp.outputs) == 3
            md = _grpc(channel, "ModelMetadata", pb.ModelMetadataRequest(name=name), tokens[who])
            assert md.name == name and md.inputs[0].name == "input"
            assert _grpc(channel, "ModelReady", pb.ModelReadyRequest(name=name),
                         tokens[who]).ready
        for name in ("alice-iris", "no-such-endpoint"):  # the same answer for both
            for rpc, request in (("ModelInfer", _infer_request(name)),
                                 ("ModelMetadata", pb.ModelMetadataRequest(name=name))):
                with pytest.raises(grpc.RpcError) as info:
                    _grpc(channel, rpc, request, tokens["bob"])
                assert info.value.code() == grpc.StatusCode.NOT_FOUND, (rpc, name)
                assert info.value.details() == f"model {name!r} is not deployed"
            assert not _grpc(channel, "ModelReady", pb.ModelReadyRequest(name=name),
                             tokens["bob"]).ready


# ------------------------------------------------------------------- (b) (c) body limits


def _serving_processes(stack) -> list[psutil.Process]:
    """This stack's Serve processes: the replicas, the proxies and HAProxy (all in the
    session of its Ray head component)."""
    sid = stack.pid("ray")
    found = []
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            if os.getsid(p.pid) != sid:
                continue
            text = " ".join(p.info["cmdline"] or ()) + " " + (p.info["name"] or "")
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
        if "ServeReplica" in text or "ProxyActor" in text or "haproxy" in text:
            found.append(p)
    return found


class RssSampler:
    """The summed RSS of `processes`, sampled every 10 ms in a thread: its baseline and peak."""

    def __init__(self, processes: list[psutil.Process]):
        self.processes = processes
        self.baseline = self._sample()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        total = 0
        for p in self.processes:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            time.sleep(0.01)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.2)  # what the request left behind counts too
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def test_a_gzip_bomb_is_refused_quickly_in_bounded_memory(hostile):
    stack, tokens = hostile
    bomb = gzip_bomb(1024 * MiB)  # 1 MiB that inflates to 1 GiB
    assert len(bomb) < 2 * MiB
    processes = _serving_processes(stack)
    assert any("ServeReplica" in " ".join(p.cmdline()) for p in processes), processes
    url = f"http://{stack.config.serve_http}/v2/models/alice-iris/infer"
    with RssSampler(processes) as rss:
        started = time.monotonic()
        r = httpx.post(url, content=bomb, timeout=120,
                       headers={**bearer(tokens["alice"]), "Content-Encoding": "gzip",
                                "Content-Type": "application/json"})
        elapsed = time.monotonic() - started
    assert r.status_code == 413, r.text
    assert "gzip request body once inflated is larger than the limit of 16777216 bytes" in \
        r.json()["error"]
    assert elapsed < 10, elapsed  # it took 88 s to be refused before the limit
    print(f"gzip bomb: 413 in {elapsed:.2f} s; serving processes' RSS grew by "
          f"{rss.growth / MiB:.1f} MiB at most ({len(processes)} processes)")
    assert rss.growth < MAX_GROWTH, rss.growth / MiB
    # The endpoint still answers its owner.
    ok = httpx.post(url, json=v2_body(), headers=bearer(tokens["alice"]), timeout=60)
    assert ok.status_code == 200, ok.text


def _send_until_answered(address: str, head: bytes, chunk: bytes, offer: int,
                         chunked: bool) -> tuple[int, bytes, int]:
    """Send `head` then up to `offer` bytes of body in `chunk`s until the server answers
    (waiting for it once all is sent); (status, the answer's body, body bytes sent by then).
    A server that waits for more than `offer` bytes gets none: no answer within a minute."""
    host, _, port = address.rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    sock.sendall(head)
    sock.setblocking(False)
    sent, pending = 0, b""
    frame = (f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n") if chunked else chunk
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            more = bool(pending) or sent < offer
            readable, writable, _ = select.select([sock], [sock] if more else [], [], 1)
            if readable:
                break
            if writable:
                if not pending:
                    pending, sent = frame, sent + len(chunk)
                try:
                    pending = pending[sock.send(pending):]
                except (BrokenPipeError, ConnectionResetError):
                    break
        return (*_read_answer(sock, deadline), sent)
    finally:
        sock.close()


def _read_answer(sock: socket.socket, deadline: float) -> tuple[int, bytes]:
    sock.setblocking(True)
    sock.settimeout(max(1.0, deadline - time.monotonic()))
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            break
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next((int(v) for k, _, v in (line.partition(":") for line in lines[1:])
                   if k.strip().lower() == "content-length"), 0)
    while len(body) < length:
        more = sock.recv(65536)
        if not more:
            break
        body += more
    return int(lines[0].split()[1]), body


def _post_head(stack, token: str, framing: str) -> bytes:
    return (f"POST /v2/models/alice-iris/infer HTTP/1.1\r\nHost: {stack.config.serve_http}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"{framing}\r\n\r\n").encode()


def test_an_oversized_body_is_refused_before_it_is_read(hostile):
    """1 GiB declared, 1 MiB sent, then nothing: only a server that goes by the declared
    length answers (one that reads up to its limit, or all of it, would wait)."""
    stack, tokens = hostile
    chunk = b" " * (256 * 1024)
    head = _post_head(stack, tokens["alice"], f"Content-Length: {1024 * MiB}")
    with RssSampler(_serving_processes(stack)) as rss:
        started = time.monotonic()
        status, body, sent = _send_until_answered(stack.config.serve_http, head, chunk, MiB,
                                                  chunked=False)
        elapsed = time.monotonic() - started
    print(f"declared 1 GiB, sent {sent / MiB:.1f} MiB: {status} in {elapsed:.2f} s; RSS +"
          f"{rss.growth / MiB:.1f} MiB")
    assert status == 413, body
    assert b"1073741824 bytes by its Content-Length" in body and b"16777216 bytes" in body
    assert elapsed < 10
    assert rss.growth < MAX_GROWTH


def test_a_chunked_body_is_refused_once_past_the_limit(hostile):
    stack, tokens = hostile
    offer, chunk = 1024 * MiB, b" " * (256 * 1024)
    head = _post_head(stack, tokens["alice"], "Transfer-Encoding: chunked")
    with RssSampler(_serving_processes(stack)) as rss:
        status, body, sent = _send_until_answered(stack.config.serve_http, head, chunk, offer,
                                                  chunked=True)
    print(f"chunked: {status} after {sent / MiB:.1f} MiB sent; RSS +{rss.growth / MiB:.1f} MiB")
    assert status == 413, body
    assert b"the request body is larger than the limit of 16777216 bytes" in body
    assert 16 * MiB <= sent < 96 * MiB  # counted while it came: 1 GiB was offered
    assert rss.growth < MAX_GROWTH


def test_grpc_refuses_an_oversized_message(hostile):
    stack, tokens = hostile
    req = _infer_request("alice-iris")
    req.raw_input_contents[0] = bytes(20 * MiB)
    with grpc.insecure_channel(stack.config.serve_grpc) as channel:
        with pytest.raises(grpc.RpcError) as info:
            _grpc(channel, "ModelInfer", req, tokens["alice"])
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value.details()
        print(f"gRPC 20 MiB message: {info.value.details()}")
        assert "16777216" in info.value.details()  # the limit, by whichever layer
        assert len(_grpc(channel, "ModelInfer", _infer_request("alice-iris"),
                         tokens["alice"]).outputs) == 3
