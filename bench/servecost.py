"""Where one inference request's time goes inside the replica: the request path of our gateway
(`GrpcInference`, the REST app, over `InferenceService` and the model's `Predictor`) against
the minimal deployment's (`bench/serve_minimal.py`), both called in this process, one thread,
no Ray, no network, so only the code that differs is measured.

The digits LeNet-5 of the serve bench (trained here, 3 epochs), batch 1, asking for
`probabilities` only. Each side runs `CALLS` requests per round, 5 rounds interleaved; a
figure is the median round's microseconds per request, with the min-max. Then ours is taken
apart stage by stage (the same functions the path calls, each timed alone): parsing the wire
format, validating against the signature, the network's forward pass, the outputs
(softmax, label, class name) and building the response.

    .venv/bin/python bench/run.py servecost      # about 1 minute
"""
from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import serve_minimal  # noqa: E402
from bench.common import median, print_table, row, save, spread  # noqa: E402

CALLS, ROUNDS = 2000, 5


class Sides:
    """Both request paths over one trained model, in this process."""

    def __init__(self, artifact_dir: Path):
        import numpy as np
        import torch
        from trainserve.serve.grpc_api import GrpcInference
        from trainserve.serve.rest import build_rest_app
        from trainserve.serve.signature import version_record
        from trainserve.serve.testing import LocalServing
        from trainserve.training.artifacts import load_artifact
        from bench import serve

        torch.set_num_threads(1)
        loaded = load_artifact(artifact_dir)
        self.local = LocalServing(loader=lambda _: loaded)
        self.local.models.put(version_record("digits", 1, loaded.meta, str(artifact_dir)))
        self.local.deploy("digits", "digits", 1)
        self.grpc = GrpcInference(self.local.service)
        self.rest = build_rest_app(self.local.service)
        self.module, self.pre, self.shape = serve_minimal._load(str(artifact_dir))
        x = np.random.default_rng(0).random((1, *self.shape), dtype=np.float32)
        self.grpc_body = serve._grpc_request(x, "digits").SerializeToString()
        self.rest_body = json.dumps(serve._body(x)).encode()

    def request(self, path: str):
        from starlette.requests import Request
        body, sent = self.rest_body, False

        async def receive():
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode())]
        return Request({"type": "http", "method": "POST", "path": path, "headers": headers,
                        "query_string": b"", "root_path": ""}, receive)

    async def ours_grpc(self):
        from trainserve.serve.testing import RecordingContext
        context = RecordingContext()
        reply = await self.grpc.call("ModelInfer", self.grpc_body, context)
        assert context.code is None, context.details
        reply.SerializeToString()

    async def minimal_grpc(self):
        p = serve_minimal._softmax(self.module, self.pre,
                                   serve_minimal._grpc_input(self.grpc_body, self.shape))
        serve_minimal._grpc_answer(p).SerializeToString()

    async def ours_rest(self):
        response = await self.rest.handle(self.request("/v2/models/digits/infer"))
        assert response.status_code == 200, response.body

    async def minimal_rest(self):
        serve_minimal._json_answer(serve_minimal._softmax(
            self.module, self.pre, await serve_minimal._json_input(self.request("/"),
                                                                   self.shape)))


def _per_call_us(fn, calls: int = CALLS) -> float:
    async def loop():
        t = time.perf_counter()
        for _ in range(calls):
            await fn()
        return (time.perf_counter() - t) / calls * 1e6
    return asyncio.run(loop())


def _sync_us(fn, calls: int = CALLS) -> float:
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t) / calls * 1e6


def _interleaved(pairs: dict[str, tuple]) -> dict[str, dict[str, list[float]]]:
    """{protocol: {"ours": [us per round], "minimal": [...]}}, rounds interleaved."""
    out = {p: {"ours": [], "minimal": []} for p in pairs}
    for fns in pairs.values():  # warm-up: the first calls load and compile
        for fn in fns:
            _per_call_us(fn, 200)
    for _ in range(ROUNDS):
        for proto, (ours, minimal) in pairs.items():
            out[proto]["ours"].append(_per_call_us(ours))
            out[proto]["minimal"].append(_per_call_us(minimal))
    return out


def stages(s: Sides, artifact_dir: Path) -> dict[str, float]:
    """Microseconds of each stage of our gRPC request path, each timed alone."""
    from trainserve._gen.inference import grpc_predict_v2_pb2 as pb
    from trainserve.serve.dataplane import build_response
    from trainserve.serve.grpc_api import infer_request_from_proto, infer_response_to_proto
    from trainserve.serve.predictor import load_predictor
    from trainserve.training.artifacts import load_artifact

    service = s.local.service
    ep = asyncio.run(service.endpoint("digits"))
    predictor = load_predictor(str(artifact_dir), load_artifact)
    request = infer_request_from_proto(pb.ModelInferRequest.FromString(s.grpc_body))
    inputs = ep.signature.validate_inputs(request)
    specs = ep.signature.select_outputs(request.outputs, inputs)
    x = predictor.preprocess(inputs["input"])
    logits, values = predictor.forward(x), predictor.run(inputs)

    async def resolve():
        await service.endpoint("digits")

    times = {
        "parse (protobuf -> arrays)": lambda: infer_request_from_proto(
            pb.ModelInferRequest.FromString(s.grpc_body)),
        "resolve (cached endpoint)": resolve,
        "validate (signature, outputs)": lambda: (
            ep.signature.validate_inputs(request), ep.signature.validate_parameters(request),
            ep.signature.select_outputs(request.outputs, inputs)),
        "preprocess": lambda: predictor.preprocess(inputs["input"]),
        "forward (the network)": lambda: predictor.forward(x),
        "outputs (softmax, label, class name)": lambda: predictor._classify(logits),
        "response (build, serialize)": lambda: infer_response_to_proto(build_response(
            "digits", "1", "", specs, values)).SerializeToString(),
    }
    out = {}
    for name, fn in times.items():
        timer = _per_call_us if asyncio.iscoroutinefunction(fn) else _sync_us
        timer(fn, 100)
        out[name] = statistics.median(timer(fn, 1000) for _ in range(3))
    return out


def measure(artifact_dir: Path) -> list[dict]:
    s = Sides(artifact_dir)
    got = _interleaved({"gRPC": (s.ours_grpc, s.minimal_grpc),
                        "REST": (s.ours_rest, s.minimal_rest)})
    rows = []
    for proto, sides in got.items():
        rows.append(row(f"{proto} request in the replica, us (batch 1, in-process)",
                        median(sides["ours"]), median(sides["minimal"]),
                        spread=f"ours {spread(sides['ours'])}; "
                               f"minimal {spread(sides['minimal'])}",
                        note="baseline: bench/serve_minimal.py's handler"))
    for name, us in stages(s, artifact_dir).items():
        rows.append(row(f"ours, gRPC stage: {name}, us", us))
    return rows


def main() -> list[dict]:
    from bench.serve import train_model
    with tempfile.TemporaryDirectory(prefix="ts-bench-") as tmp:
        rows = measure(train_model(Path(tmp)))
    print_table("serve cost: one request inside the replica", rows)
    print("results:", save("servecost", rows, {"calls": CALLS, "rounds": ROUNDS}))
    return rows


if __name__ == "__main__":
    main()
