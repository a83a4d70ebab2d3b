"""The gRPC binding: proto <-> domain conversion, status codes, and wire compatibility with
tritonclient.grpc's own messages.

tritonclient.grpc and our stubs both define the `inference.*` protobuf symbols, which cannot
share one process's descriptor pool; tritonclient runs in a child process here.
"""
import asyncio
import json
import re
import subprocess
import sys

import grpc
import numpy as np
import pytest
import torch

from trainserve._gen.inference import grpc_predict_v2_pb2 as pb
from trainserve.core.errors import InvalidArgument
from trainserve.serve.grpc_api import (GrpcInference, add_inference_servicer,
                                       infer_request_from_proto)
from trainserve.serve.predictor import Predictor
from trainserve.serve.testing import LocalServing, RecordingContext

META = {"task": "classification", "class_names": ["no", "yes"], "input_shape": [3],
        "output_dim": 2, "preprocessing": {"kind": "minmax", "shift": [0, 0, 0],
                                           "scale": [10, 10, 10]}}
X = np.arange(6, dtype=np.float32).reshape(2, 3)


def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))



@pytest.fixture(scope="module")
def servicer():
    local = LocalServing()
    local.register("clf", 2, mlp(), META, endpoint="clf")
    return GrpcInference(local.service)


def call(servicer, rpc, request):
    ctx = RecordingContext()
    return asyncio.run(getattr(servicer, rpc)(request, ctx)), ctx


def raw_request(x=X, name="input", datatype="FP32", model="clf"):
    req = pb.ModelInferRequest(model_name=model)
    req.inputs.add(name=name, datatype=datatype, shape=list(x.shape))
    req.raw_input_contents.append(x.tobytes())
    return req


def test_infer_with_raw_contents(servicer):
    resp, ctx = call(servicer, "ModelInfer", raw_request())
    assert ctx.code is None
    assert [(o.name, o.datatype, list(o.shape)) for o in resp.outputs] == [
        ("probabilities", "FP32", [2, 2]), ("label", "INT64", [2]), ("class_name", "BYTES", [2])]
    want = Predictor(mlp(), META).predict(X)
    probs = np.frombuffer(resp.raw_output_contents[0], np.float32).reshape(2, 2)
    np.testing.assert_allclose(probs, want["probabilities"], rtol=1e-6)
    assert np.frombuffer(resp.raw_output_contents[1], np.int64).tolist() == want["label"].tolist()


def test_infer_with_typed_contents_and_requested_outputs(servicer):
    req = pb.ModelInferRequest(model_name="clf", model_version="2", id="r9")
    req.inputs.add(name="input", datatype="FP32", shape=[2, 3],
                   contents=pb.InferTensorContents(fp32_contents=X.reshape(-1).tolist()))
    req.outputs.add(name="label")
    resp, ctx = call(servicer, "ModelInfer", req)
    assert ctx.code is None and resp.id == "r9" and resp.model_version == "2"
    assert [o.name for o in resp.outputs] == ["label"]


@pytest.mark.parametrize("build,code,match", [
    (lambda: raw_request(X[:, :2]), "INVALID_ARGUMENT", r"expected FP32 \[-1, 3\]"),
    (lambda: raw_request(X.astype(np.float64), datatype="FP64"), "INVALID_ARGUMENT",
     r"datatype FP64, expected FP32 \[-1, 3\]"),
    (lambda: raw_request(name="features"), "INVALID_ARGUMENT", "expects input 'input'"),
    (lambda: raw_request(model="nope"), "NOT_FOUND", "model 'nope' is not deployed"),
])
def test_errors_map_to_status_codes(servicer, build, code, match):
    resp, ctx = call(servicer, "ModelInfer", build())
    assert ctx.code == grpc.StatusCode[code]
    assert re.search(match, ctx.details)
    assert resp == pb.ModelInferResponse()


def test_conversion_errors():
    req = raw_request()
    req.raw_input_contents.append(b"")
    with pytest.raises(InvalidArgument, match="raw_input_contents has 2 entries for 1 inputs"):
        infer_request_from_proto(req)
    req = raw_request()
    req.inputs[0].contents.fp32_contents.extend([1.0])
    with pytest.raises(InvalidArgument, match="contents and raw_input_contents are both set"):
        infer_request_from_proto(req)
    req = pb.ModelInferRequest()
    req.inputs.add(name="input", datatype="FP16", shape=[1])
    with pytest.raises(InvalidArgument, match="FP16 must be sent in raw_input_contents"):
        infer_request_from_proto(req)
    req = pb.ModelInferRequest()
    req.inputs.add(name="input", datatype="INT8", shape=[1],
                   contents=pb.InferTensorContents(int_contents=[300]))
    with pytest.raises(InvalidArgument, match="out of range for INT8"):
        infer_request_from_proto(req)
    req = pb.ModelInferRequest()
    req.inputs.add(name="input", datatype="FP32", shape=[-1, 3])
    with pytest.raises(InvalidArgument, match="non-negative integers"):
        infer_request_from_proto(req)


def test_parameters_are_plain_values():
    req = raw_request()
    req.parameters["priority"].int64_param = 3
    req.outputs.add(name="label").parameters["binary_data"].bool_param = True
    r = infer_request_from_proto(req)
    assert r.parameters == {"priority": 3} and r.outputs[0].parameters == {"binary_data": True}


def test_health_and_metadata(servicer):
    assert call(servicer, "ServerLive", pb.ServerLiveRequest())[0].live
    assert call(servicer, "ServerReady", pb.ServerReadyRequest())[0].ready
    assert call(servicer, "ServerMetadata", pb.ServerMetadataRequest())[0].name == "trainserve"
    assert call(servicer, "ModelReady", pb.ModelReadyRequest(name="clf"))[0].ready
    md, _ = call(servicer, "ModelMetadata", pb.ModelMetadataRequest(name="clf"))
    assert (md.name, list(md.versions), md.inputs[0].datatype, list(md.inputs[0].shape)) == (
        "clf", ["2"], "FP32", [-1, 3])
    resp, ctx = call(servicer, "ModelReady", pb.ModelReadyRequest(name="nope"))
    assert not resp.ready and ctx.code is None  # tritonclient's is_model_ready wants a bool
    _, ctx = call(servicer, "ModelMetadata", pb.ModelMetadataRequest(name="nope"))
    assert ctx.code == grpc.StatusCode.NOT_FOUND


def test_serve_hands_over_request_bytes(servicer):
    ctx = RecordingContext()
    resp = asyncio.run(servicer.call("ModelInfer", raw_request().SerializeToString(), ctx))
    assert ctx.code is None and len(resp.outputs) == 3
    resp = asyncio.run(servicer.call("ModelInfer", b"\xff\xff", ctx))
    assert ctx.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "cannot parse inference.ModelInferRequest" in ctx.details


def test_servicer_function_registers_the_six_rpcs_without_deserializers():
    class Server:
        def add_generic_rpc_handlers(self, handlers):
            self.generic = handlers[0]

        def add_registered_method_handlers(self, service, handlers):
            self.registered = (service, handlers)

    class Servicer:
        def __getattr__(self, name):
            return lambda request, context: None

    server = Server()
    add_inference_servicer(Servicer(), server)
    service, handlers = server.registered
    assert service == "inference.GRPCInferenceService"
    assert sorted(handlers) == sorted(["ServerLive", "ServerReady", "ServerMetadata",
                                       "ModelMetadata", "ModelReady", "ModelInfer"])
    assert all(h.request_deserializer is None and h.response_serializer is None
               for h in handlers.values())


# ------------------------------------------------------------- tritonclient compatibility

_TRITON_SIDE = r"""
import json, sys
import numpy as np
import tritonclient.grpc as g
from tritonclient.grpc import service_pb2 as s

def fields(d):
    out = {d.full_name: [(f.name, f.number, f.type, f.is_repeated) for f in d.fields]}
    for n in d.nested_types:
        out.update(fields(n))
    return out

if sys.argv[1] == "describe":
    names = ["ServerLiveRequest", "ServerLiveResponse", "ServerReadyRequest",
             "ServerReadyResponse", "ModelReadyRequest", "ModelReadyResponse",
             "ServerMetadataRequest", "ServerMetadataResponse", "ModelMetadataRequest",
             "ModelMetadataResponse", "ModelInferRequest", "ModelInferResponse",
             "InferParameter", "InferTensorContents"]
    out = {}
    for n in names:
        out.update(fields(s.DESCRIPTOR.message_types_by_name[n]))
    svc = s.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    out["rpcs"] = {m.name: [m.input_type.full_name, m.output_type.full_name] for m in svc.methods}
    inp = g.InferInput("input", [2, 3], "FP32")
    inp.set_data_from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3))
    from tritonclient.grpc._utils import _get_inference_request
    req = _get_inference_request(model_name="clf", inputs=[inp], model_version="",
        request_id="t1", outputs=[g.InferRequestedOutput("probabilities")], sequence_id=0,
        sequence_start=False, sequence_end=False, priority=0, timeout=None, parameters=None)
    out["request_hex"] = req.SerializeToString().hex()
    print(json.dumps(out))
else:
    resp = s.ModelInferResponse.FromString(bytes.fromhex(sys.stdin.read()))
    result = g.InferResult(resp)
    print(json.dumps({o.name: result.as_numpy(o.name).tolist() for o in resp.outputs}))
"""


def _triton(mode, stdin=""):
    out = subprocess.run([sys.executable, "-c", _TRITON_SIDE, mode], input=stdin, text=True,
                         capture_output=True, timeout=120, check=True)
    return json.loads(out.stdout)


def _fields(d):
    out = {d.full_name: [[f.name, f.number, f.type, f.is_repeated] for f in d.fields]}
    for n in d.nested_types:
        out.update(_fields(n))
    return out


@pytest.fixture(scope="module")
def triton():
    return _triton("describe")


def test_messages_are_wire_compatible_with_tritonclient(triton):
    ours = {}
    for msg in pb.DESCRIPTOR.message_types_by_name.values():
        ours.update(_fields(msg))
    for name, fields in triton.items():
        if name.startswith("inference."):
            assert ours[name] == fields, name
    svc = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert len(svc.methods) == 6  # Triton has more: its extensions, which we do not serve
    for m in svc.methods:
        assert [m.input_type.full_name, m.output_type.full_name] == triton["rpcs"][m.name]


def test_a_tritonclient_request_round_trips(servicer, triton):
    req = pb.ModelInferRequest.FromString(bytes.fromhex(triton["request_hex"]))
    resp, ctx = call(servicer, "ModelInfer", req)
    assert ctx.code is None and resp.id == "t1"
    decoded = _triton("decode", resp.SerializeToString().hex())
    want = Predictor(mlp(), META).predict(X)
    np.testing.assert_allclose(decoded["probabilities"], want["probabilities"], rtol=1e-6)
