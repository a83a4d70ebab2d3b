"""The serving bench's baseline: the least a Ray Serve user would write to serve the same
model, over both protocols, with and without Serve's own `@serve.batch`.

One `@serve.deployment` per application: `minimal` answers each request with its own forward
pass, `minimal_batch` merges concurrent requests with `@serve.batch` (the same max size and
wait as our endpoint's batching). Each takes the Open Inference Protocol's JSON body on REST
(`__call__`) and its `ModelInfer` message on gRPC (Serve's proxy calls the method named like
the RPC on the application picked by the `application` metadata key), and answers the softmax,
with the same module, preprocessing, torch threads (1), CPUs reserved (0) and requests in
flight (256) as our model host.
"""
from __future__ import annotations

APPS = {"minimal": False, "minimal_batch": True}  # application name: batches


def _load(path: str):
    import torch

    from trainserve.training.artifacts import load_artifact
    torch.set_num_threads(1)
    loaded = load_artifact(path)
    return loaded.module, loaded.preprocessing, tuple(loaded.meta["input_shape"])


def _softmax(module, pre, x):
    import torch
    with torch.inference_mode():
        return torch.softmax(module(torch.from_numpy(pre.apply(x))), 1).numpy()


def _json_answer(p):
    from starlette.responses import JSONResponse
    return JSONResponse({"outputs": [{"name": "probabilities", "datatype": "FP32",
                                      "shape": list(p.shape), "data": p.ravel().tolist()}]})


def _grpc_answer(p):
    from trainserve._gen.inference import grpc_predict_v2_pb2 as pb
    out = pb.ModelInferResponse.InferOutputTensor(name="probabilities", datatype="FP32",
                                                  shape=list(p.shape))
    out.contents.fp32_contents.extend(p.ravel().tolist())
    return pb.ModelInferResponse(model_name="minimal", outputs=[out])


async def _json_input(request, shape):
    import numpy as np
    body = await request.json()
    return np.asarray(body["inputs"][0]["data"], dtype=np.float32).reshape(-1, *shape)


def _grpc_input(request, shape):
    import numpy as np

    from trainserve._gen.inference import grpc_predict_v2_pb2 as pb
    if isinstance(request, bytes):  # Serve's proxy forwards the serialized message
        request = pb.ModelInferRequest.FromString(request)
    return np.asarray(request.inputs[0].contents.fp32_contents,
                      dtype=np.float32).reshape(-1, *shape)


def app(artifact_dir: str, batching: bool, max_batch: int, wait_ms: float):
    """The bound application: `Minimal`, or `MinimalBatch` when `batching`."""
    from ray import serve

    options = dict(max_ongoing_requests=256, ray_actor_options={"num_cpus": 0})

    @serve.deployment(name="minimal", **options)
    class Minimal:
        def __init__(self, path: str):
            self.module, self.pre, self.shape = _load(path)

        async def __call__(self, request):
            return _json_answer(_softmax(self.module, self.pre,
                                         await _json_input(request, self.shape)))

        async def ModelInfer(self, request):  # noqa: N802 - the RPC's name
            return _grpc_answer(_softmax(self.module, self.pre,
                                         _grpc_input(request, self.shape)))

    @serve.deployment(name="minimal_batch", **options)
    class MinimalBatch:
        def __init__(self, path: str):
            self.module, self.pre, self.shape = _load(path)

        @serve.batch(max_batch_size=max_batch, batch_wait_timeout_s=wait_ms / 1000)
        async def forward(self, xs):
            import numpy as np
            sizes = [len(x) for x in xs]
            p = _softmax(self.module, self.pre, np.concatenate(xs))
            return np.split(p, np.cumsum(sizes)[:-1])

        async def __call__(self, request):
            return _json_answer(await self.forward(await _json_input(request, self.shape)))

        async def ModelInfer(self, request):  # noqa: N802 - the RPC's name
            return _grpc_answer(await self.forward(_grpc_input(request, self.shape)))

    return (MinimalBatch if batching else Minimal).bind(artifact_dir)
