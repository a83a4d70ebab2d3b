"""Hostile input through the real server: property-based fuzzing (hypothesis) of `SubmitJob`
specs, dataset uploads and inference payloads (REST and gRPC) against the session stack.

Whatever arrives, the answer is a refusal that names what is wrong (INVALID_ARGUMENT with a
field path, HTTP 400 with an error message) or a success — never INTERNAL, UNKNOWN, a 500
or a dead server. A spec the server accepts is cancelled at once."""
from __future__ import annotations

import json
import math
import uuid

import grpc
import httpx
import numpy as np
import pytest
from google.protobuf import descriptor as pb_descriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.helpers import example, submit, wait_job
from trainserve.core.state import JobState
from trainserve.core.pb import dataset_pb2, dataset_pb2_grpc, job_pb2, spec_pb2

pytestmark = pytest.mark.integration

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))
REFUSALS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED,
            grpc.StatusCode.OUT_OF_RANGE}
BASES = ["xor_mlp", "mlp_diabetes", "lenet5_digits", "lstm_sine", "vae_digits", "gan_rings",
         "seq2seq_reverse_attention", "tune_digits_asha"]

# --------------------------------------------------------------------- hostile values

HOSTILE_STRINGS = ["", " ", "../../etc/passwd", "/etc/passwd", "a\x00b", "é" * 300,
                   "x" * 5000, "${HOME}", "'; DROP TABLE jobs; --", "\u202e", "nan", "-1",
                   "__import__('os').system('id')", "relu", "adam", "mse", "digits"]
HOSTILE_INTS = [0, -1, 1, 2, 3, 7, 64, 1000, 2 ** 31 - 1, -2 ** 31]
HOSTILE_FLOATS = [0.0, -0.0, -1.0, 1e-12, 0.5, 1.0, 3.0, 1e6, 1e308, -1e308, math.inf, -math.inf,
                  math.nan]


def _leaf_paths(desc, prefix=(), depth=0):
    """(field path, field descriptor) of every scalar field reachable in `desc`, 4 deep,
    through singular messages (maps and repeated messages have no path of names)."""
    for f in desc.fields:
        path = prefix + (f.name,)
        if f.type == pb_descriptor.FieldDescriptor.TYPE_MESSAGE:
            if f.is_repeated or depth >= 4:
                continue
            if f.message_type.full_name.startswith("google.protobuf"):
                continue
            yield from _leaf_paths(f.message_type, path, depth + 1)
        else:
            yield path, f


LEAVES = list(_leaf_paths(spec_pb2.JobSpec.DESCRIPTOR))


def _value_for(field):
    T = pb_descriptor.FieldDescriptor
    if field.type == T.TYPE_STRING:
        return st.sampled_from(HOSTILE_STRINGS)
    if field.type == T.TYPE_BOOL:
        return st.booleans()
    if field.type in (T.TYPE_DOUBLE, T.TYPE_FLOAT):
        return st.sampled_from(HOSTILE_FLOATS) | st.floats(-1e3, 1e3)
    if field.type == T.TYPE_ENUM:
        return st.sampled_from([v.number for v in field.enum_type.values] + [99])
    if field.type == T.TYPE_BYTES:
        return st.binary(max_size=64)
    bounds = (0, 2 ** 32 - 1) if field.type in (T.TYPE_UINT32, T.TYPE_FIXED32) else \
        (-2 ** 31, 2 ** 31 - 1)
    return st.sampled_from(HOSTILE_INTS) | st.integers(*bounds)


@st.composite
def mutated_specs(draw):
    """An example spec with one to three fields anywhere in it set to hostile values."""
    spec = example(draw(st.sampled_from(BASES)))
    spec.name = "fuzz-" + uuid.uuid4().hex[:8]
    spec.ClearField("deploy")
    for _ in range(draw(st.integers(1, 3))):
        path, field = draw(st.sampled_from(LEAVES))
        msg = spec
        for name in path[:-1]:
            msg = getattr(msg, name)
        value = draw(_value_for(field))
        if field.is_repeated:
            getattr(msg, path[-1]).extend([value] * draw(st.integers(0, 3)))
        else:
            setattr(msg, path[-1], value)
    return spec


# ------------------------------------------------------------------------------ jobs

@FUZZ
@given(spec=mutated_specs())
def test_fuzzed_specs_are_accepted_or_refused_with_a_field(stubs, spec):
    try:
        job = submit(stubs, spec)
    except grpc.RpcError as err:
        assert err.code() in REFUSALS, (err.code(), err.details(), spec)
        if err.code() == grpc.StatusCode.INVALID_ARGUMENT:
            assert err.details().split(":")[0].startswith("spec"), err.details()
        return
    stubs.jobs.CancelJob(job_pb2.CancelJobRequest(job_id=job.id), timeout=30)


def test_the_server_still_trains_after_the_fuzzing(stubs):
    job = wait_job(stubs, submit(stubs, example("xor_mlp", name="after-fuzz")).id, 180)
    assert JobState(job.state) == JobState.SUCCEEDED, job.message


# -------------------------------------------------------------------------- datasets

def _upload(channel, name: str, fmt: str, content: bytes):
    stub = dataset_pb2_grpc.DatasetServiceStub(channel)

    def parts():
        yield dataset_pb2.UploadDatasetRequest(
            header=dataset_pb2.DatasetUploadHeader(name=name, format=fmt))
        for i in range(0, len(content), 1 << 20):
            yield dataset_pb2.UploadDatasetRequest(chunk=content[i:i + (1 << 20)])
    return stub.UploadDataset(parts(), timeout=120)


csv_cells = st.sampled_from(["1", "2.5", "-3", "", "nan", "NaN", "inf", "abc", "1e999", '"x,y"',
                             "0x10", " 4 ", "\x00", "é"])


@st.composite
def hostile_csvs(draw):
    cols = draw(st.integers(1, 6))
    header = ",".join(draw(st.sampled_from(["a", "b", "c", "", "a", "label", "x y", "é"]))
                      for _ in range(cols))
    rows = [",".join(draw(csv_cells) for _ in range(draw(st.integers(0, cols + 1))))
            for _ in range(draw(st.integers(0, 6)))]
    return ("\n".join([header, *rows]) + draw(st.sampled_from(["", "\n", "\r\n"]))).encode()


@FUZZ
@given(content=hostile_csvs() | st.binary(max_size=300),
       fmt=st.sampled_from(["csv", "npz", "exe", ""]))
def test_fuzzed_uploads_are_stored_or_refused_with_a_reason(channel, content, fmt):
    try:
        ds = _upload(channel, "fuzz-upload", fmt, content)
    except grpc.RpcError as err:
        assert err.code() in REFUSALS, (err.code(), err.details())
        assert err.details(), err.code()
        return
    assert ds.sha256 and ds.num_rows >= 0


def _rows(bad_row: str) -> bytes:
    good = [f"{i % 7},{i % 5},{i % 2}" for i in range(40)]
    return ("a,b,label\n" + "\n".join(good[:3] + [bad_row] + good[3:]) + "\n").encode()


@pytest.mark.parametrize("content,words", [
    (_rows("nan,3,1"), "missing values (blank, NA, NaN): 'a' (1 missing)"),
    (_rows("1,inf,1"), "column 'b' has a non-finite value (row 5"),
    (_rows(",3,1"), "missing values (blank, NA, NaN): 'a' (1 missing)"),
    (_rows("hello,3,1"), "column 'a' is not numeric (row 5: 'hello')"),
    (_rows("1,3"), "row 5 has 2 fields"),
])
def test_bad_csv_content_is_refused_when_a_job_uses_it(stubs, channel, content, words):
    name = "bad-" + uuid.uuid4().hex[:6]
    try:
        _upload(channel, name, "csv", content)
    except grpc.RpcError as err:  # refused already at upload: as good
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and words in err.details(), \
            err.details()
        return
    spec = example("xor_mlp")
    spec.dataset.Clear()
    spec.dataset.name, spec.dataset.target_column = name, "label"
    with pytest.raises(grpc.RpcError) as err:
        submit(stubs, spec)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in err.value.details() and err.value.details().startswith("spec.dataset")


def test_a_million_columns_is_refused(channel):
    content = (",".join(f"c{i}" for i in range(1_000_000)) + "\n" +
               2 * (",".join("1" for _ in range(1_000_000)) + "\n")).encode()
    with pytest.raises(grpc.RpcError) as err:
        _upload(channel, "wide", "csv", content)
    assert err.value.code() in (grpc.StatusCode.INVALID_ARGUMENT,
                                grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert "column" in err.value.details()


# ------------------------------------------------------------------------- inference

@pytest.fixture(scope="module")
def endpoint(stack, stubs):
    """An XOR classifier deployed as `fuzz-xor`: (REST base, gRPC target)."""
    spec = example("xor_mlp", name="fuzz-xor-model", deploy={"name": "fuzz-xor"})
    job = wait_job(stubs, submit(stubs, spec).id, 180)
    assert JobState(job.state) == JobState.SUCCEEDED, job.message
    base = f"http://{stack.config.serve_http}/v2/models/fuzz-xor"
    for _ in range(240):
        if httpx.get(f"{base}/ready", timeout=10).status_code == 200:
            break
        import time
        time.sleep(0.5)
    return base, stack.config.serve_grpc


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 40, 2 ** 40) | st.floats() |
    st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(
        st.sampled_from(["inputs", "outputs", "name", "shape", "datatype", "data",
                         "parameters", "id", "binary_data_size", "x"]) | st.text(max_size=5),
        children, max_size=5),
    max_leaves=30)


@st.composite
def oip_requests(draw):
    """OIP v2 requests with some part wrong: shape, datatype, data, names, sizes."""
    shape = draw(st.lists(st.integers(-2, 5000), min_size=0, max_size=4))
    n = max(0, int(np.prod([max(s, 0) for s in shape]))) if shape else 1
    n = min(n, 64)
    datatype = draw(st.sampled_from(["FP32", "FP64", "INT64", "BYTES", "BOOL", "UINT8", "FP16",
                                     "BF16", "", "fp32", "STRING"]))
    data = draw(st.sampled_from([[0.5] * n, [0.5] * (n + 1), ["a"] * n, [[0.5, 0.5]], [],
                                 [math.inf] * n, [None] * n]))
    inp = {"name": draw(st.sampled_from(["input", "INPUT", "", "x"])), "shape": shape,
           "datatype": datatype, "data": data}
    doc = {"inputs": [inp]}
    if draw(st.booleans()):
        doc["outputs"] = [{"name": draw(st.sampled_from(["label", "probabilities", "nope"]))}]
    if draw(st.booleans()):
        doc["parameters"] = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3))
    return doc


def _assert_refused_or_answered(r: httpx.Response):
    assert r.status_code < 500, (r.status_code, r.text[:300])
    if r.status_code != 200:
        assert r.json().get("error"), r.text[:300]


@FUZZ
@given(doc=oip_requests() | json_values)
def test_fuzzed_rest_inference_never_500(endpoint, doc):
    r = httpx.post(f"{endpoint[0]}/infer", content=json.dumps(doc, allow_nan=True),
                   headers={"content-type": "application/json"}, timeout=30)
    _assert_refused_or_answered(r)


@FUZZ
@given(body=st.binary(max_size=400),
       encoding=st.sampled_from([None, "gzip", "deflate", "br"]),
       header_length=st.sampled_from([None, "0", "-5", "10", "99999999", "abc"]))
def test_fuzzed_rest_bytes_never_500(endpoint, body, encoding, header_length):
    headers = {"content-type": "application/octet-stream"}
    if encoding:
        headers["content-encoding"] = encoding
    if header_length:
        headers["inference-header-content-length"] = header_length
    r = httpx.post(f"{endpoint[0]}/infer", content=body, headers=headers, timeout=30)
    _assert_refused_or_answered(r)


@st.composite
def grpc_requests(draw):
    from trainserve._gen.inference import grpc_predict_v2_pb2 as pb
    req = pb.ModelInferRequest(model_name=draw(st.sampled_from(["fuzz-xor", "", "nope",
                                                                "../x"])),
                               model_version=draw(st.sampled_from(["", "1", "99", "x"])))
    for _ in range(draw(st.integers(0, 2))):
        t = req.inputs.add(name=draw(st.sampled_from(["input", "x", ""])),
                           datatype=draw(st.sampled_from(["FP32", "INT64", "BYTES", "FP16",
                                                          "", "BOOL"])),
                           shape=draw(st.lists(st.integers(-3, 10 ** 6), max_size=4)))
        kind = draw(st.sampled_from(["fp32", "int64", "bytes", "raw", "none"]))
        if kind == "fp32":
            t.contents.fp32_contents.extend(draw(st.lists(st.floats(width=32), max_size=16)))
        elif kind == "int64":
            t.contents.int64_contents.extend(draw(st.lists(st.integers(-2 ** 63, 2 ** 63 - 1),
                                                           max_size=16)))
        elif kind == "bytes":
            t.contents.bytes_contents.extend(draw(st.lists(st.binary(max_size=8), max_size=4)))
        elif kind == "raw":
            req.raw_input_contents.append(draw(st.binary(max_size=64)))
    return req


@FUZZ
@given(req=grpc_requests())
def test_fuzzed_grpc_inference_never_internal(endpoint, req):
    from trainserve._gen.inference import grpc_predict_v2_pb2_grpc as pbg
    with grpc.insecure_channel(endpoint[1]) as ch:
        try:
            pbg.GRPCInferenceServiceStub(ch).ModelInfer(req, timeout=30)
        except grpc.RpcError as err:
            assert err.code() in REFUSALS, (err.code(), err.details())
            assert err.details()


@FUZZ
@given(raw=st.binary(max_size=300))
def test_undecodable_grpc_bytes_are_invalid_argument(endpoint, raw):
    with grpc.insecure_channel(endpoint[1]) as ch:
        call = ch.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                              request_serializer=lambda b: b,
                              response_deserializer=lambda b: b)
        try:
            call(raw, timeout=30)
        except grpc.RpcError as err:
            assert err.code() in REFUSALS, (err.code(), err.details())
