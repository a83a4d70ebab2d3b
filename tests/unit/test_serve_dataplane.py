"""The transport-neutral data plane: tensor codecs, signature validation, the predictor."""
import numpy as np
import pytest
import torch

from trainserve.core.errors import InvalidArgument, ModelNotReady
from trainserve.serve.dataplane import (InferInput, InferRequest, ModelSignature,
                                        RequestedOutput, TensorSpec, build_response,
                                        check_shape, decode_json, decode_raw, encode_raw,
                                        to_json_data)
from trainserve.serve.predictor import Predictor, load_predictor

SIG = ModelSignature(
    inputs=(TensorSpec("input", "FP32", (-1, 4)),),
    outputs=(TensorSpec("probabilities", "FP32", (-1, 3)), TensorSpec("label", "INT64", (-1,))),
    max_batch_size=8)


def _request(shape, datatype="FP32", name="input", outputs=()):
    data = np.zeros(shape, dtype=np.float32)
    return InferRequest([InferInput(name, datatype, tuple(shape), data)],
                        [RequestedOutput(o) for o in outputs])


# ---------------------------------------------------------------------------------- JSON


def test_json_data_flat_and_nested_give_the_same_tensor():
    flat = decode_json("x", "FP32", (2, 3), [1, 2, 3, 4, 5, 6])
    nested = decode_json("x", "FP32", (2, 3), [[1, 2, 3], [4, 5, 6]])
    assert flat.dtype == np.float32 and flat.shape == (2, 3)
    np.testing.assert_array_equal(flat, nested)


@pytest.mark.parametrize("datatype,data,dtype", [
    ("FP64", [0.5, 1.5], np.float64), ("INT32", [1, -2], np.int32),
    ("INT64", [2**40, 3], np.int64), ("UINT8", [0, 255], np.uint8),
    ("BOOL", [True, False], np.bool_), ("FP16", [0.5, 2], np.float16),
])
def test_json_datatypes(datatype, data, dtype):
    arr = decode_json("x", datatype, (2,), data)
    assert arr.dtype == dtype and arr.tolist() == [dtype(v).item() for v in data]


def test_json_bytes_are_utf8_strings():
    arr = decode_json("x", "BYTES", (2,), ["setosa", "é"])
    assert arr.tolist() == [b"setosa", "é".encode()]


@pytest.mark.parametrize("datatype,data,match", [
    ("FP32", [[1, 2], [3]], "not a regular"),
    ("FP32", ["a", "b"], "needs numbers"),
    ("INT32", [1.5, 2.0], "needs integers"),
    ("BOOL", [1, 0], "needs true/false"),
    ("UINT8", [256, 0], "out of range"),
    ("BYTES", [1, 2], "must be strings"),
    ("FP32", [1, 2, 3], r"shape \[2\] holds 2 values, but data has 3"),
    ("COMPLEX", [1, 2], "unsupported datatype 'COMPLEX'"),
])
def test_bad_json_data_is_an_invalid_argument(datatype, data, match):
    with pytest.raises(InvalidArgument, match=match):
        decode_json("x", datatype, (2,), data)


@pytest.mark.parametrize("shape", [[-1, 4], [1.5], "4", None, [True]])
def test_declared_shape_must_be_non_negative_integers(shape):
    with pytest.raises(InvalidArgument, match="shape must be a list of non-negative integers"):
        check_shape(shape, "input 'x'")


# ----------------------------------------------------------------------------------- raw


@pytest.mark.parametrize("datatype", ["FP32", "FP64", "INT8", "INT64", "UINT16", "BOOL", "FP16"])
def test_raw_round_trip(datatype):
    arr = (np.arange(6) % 2 == 0) if datatype == "BOOL" else np.arange(6) - 2
    arr = arr.astype(decode_json("x", datatype, (0,), []).dtype).reshape(2, 3)
    back = decode_raw("x", datatype, (2, 3), encode_raw(arr, datatype))
    np.testing.assert_array_equal(back, arr)
    assert back.dtype == arr.dtype


def test_raw_bytes_are_length_prefixed():
    arr = np.array([b"ab", b"", b"xyz"], dtype=object)
    raw = encode_raw(arr, "BYTES")
    assert raw == b"\x02\x00\x00\x00ab\x00\x00\x00\x00\x03\x00\x00\x00xyz"
    assert decode_raw("x", "BYTES", (3,), raw).tolist() == [b"ab", b"", b"xyz"]


def test_raw_size_must_match_the_shape():
    with pytest.raises(InvalidArgument, match=r"shape \[2, 4\] of FP32 needs 32 bytes, got 28"):
        decode_raw("x", "FP32", (2, 4), bytes(28))
    with pytest.raises(InvalidArgument, match="truncated BYTES"):
        decode_raw("x", "BYTES", (1,), b"\x05\x00\x00\x00ab")


def test_json_output_data_is_flat():
    assert to_json_data(np.array([[1.0, 2.0]], np.float32), "FP32") == [1.0, 2.0]
    assert to_json_data(np.array([b"a"], dtype=object), "BYTES") == ["a"]


# ----------------------------------------------------------------------------- signature


def test_a_valid_request_passes():
    arrays = SIG.validate_inputs(_request((3, 4)))
    assert arrays["input"].shape == (3, 4)


@pytest.mark.parametrize("request_,match", [
    (_request((2, 5)), r"shape \[2, 5\] does not match the expected FP32 \[-1, 4\]"),
    (_request((4,)), r"shape \[4\] does not match the expected FP32 \[-1, 4\]"),
    (_request((2, 4), "FP64"), r"datatype FP64, expected FP32 \[-1, 4\]"),
    (_request((2, 4), name="x"), r"got inputs 'x'; the model expects input 'input' FP32 \[-1, 4\]"),
    (_request((9, 4)), r"batch size 9 is outside 1..8 \(expected FP32 \[-1, 4\]\)"),
    (_request((0, 4)), r"batch size 0 is outside 1..8"),
    (InferRequest([]), "got inputs none; the model expects input 'input' FP32"),
])
def test_invalid_requests_name_what_was_expected(request_, match):
    with pytest.raises(InvalidArgument, match=match):
        SIG.validate_inputs(request_)


def test_requested_outputs_are_selected_in_order_or_all_by_default():
    assert [s.name for s in SIG.select_outputs([])] == ["probabilities", "label"]
    picked = SIG.select_outputs([RequestedOutput("label"), RequestedOutput("probabilities")])
    assert [s.name for s in picked] == ["label", "probabilities"]
    with pytest.raises(InvalidArgument, match="unknown output 'logits'; the model has "
                                              "'probabilities', 'label'"):
        SIG.select_outputs([RequestedOutput("logits")])
    with pytest.raises(InvalidArgument, match="classification extension is not supported"):
        SIG.select_outputs([RequestedOutput("label", {"classification": 2})])


def test_build_response_casts_to_the_declared_datatype():
    values = {"probabilities": np.ones((2, 3), np.float64), "label": np.array([0, 2])}
    resp = build_response("iris", "1", "req-7", list(SIG.outputs), values)
    assert [(o.name, o.datatype, o.shape, o.data.dtype) for o in resp.outputs] == [
        ("probabilities", "FP32", (2, 3), np.float32), ("label", "INT64", (2,), np.int64)]
    assert resp.id == "req-7"


# ----------------------------------------------------------------------------- predictor


def _classifier(n_in=4, n_out=3):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(n_in, 8), torch.nn.ReLU(),
                               torch.nn.Linear(8, n_out))


META = {"task": "classification", "class_names": ["a", "b", "c"], "input_shape": [4],
        "output_dim": 3,
        "preprocessing": {"kind": "standard", "shift": [1, 2, 3, 4], "scale": [2, 2, 2, 0.5]}}


def test_predictor_normalizes_then_classifies():
    module = _classifier()
    p = Predictor(module, META)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    out = p.predict(x)
    z = (x - np.array([1, 2, 3, 4], np.float32)) / np.array([2, 2, 2, 0.5], np.float32)
    expected = torch.softmax(module(torch.from_numpy(z)), 1).detach().numpy()
    np.testing.assert_allclose(out["probabilities"], expected, rtol=1e-6)
    assert out["label"].dtype == np.int64
    np.testing.assert_array_equal(out["label"], expected.argmax(1))
    assert out["class_name"].tolist() == [META["class_names"][i].encode()
                                          for i in expected.argmax(1)]


def test_predictor_accepts_read_only_wire_buffers():
    x = np.frombuffer(np.ones((1, 4), np.float32).tobytes(), np.float32).reshape(1, 4)
    assert Predictor(_classifier(), {**META, "preprocessing": {"kind": "none"}}).predict(x)


def test_regression_predicts_one_value_per_sample():
    meta = {"task": "regression", "input_shape": [4], "output_dim": 1,
            "preprocessing": {"kind": "minmax", "shift": [0.0], "scale": [2.0]}}
    module = _classifier(n_out=1)
    out = Predictor(module, meta).predict(np.ones((3, 4), np.float32))
    assert set(out) == {"prediction"} and out["prediction"].shape == (3, 1)
    expected = module(torch.full((3, 4), 0.5)).detach().numpy()
    np.testing.assert_allclose(out["prediction"], expected, rtol=1e-6)


def test_per_channel_statistics_broadcast_over_images():
    meta = {"task": "classification", "input_shape": [2, 3, 3], "output_dim": 2,
            "preprocessing": {"kind": "standard", "shift": [1.0, -1.0], "scale": [1.0, 2.0]}}
    p = Predictor(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(18, 2)), meta)
    z = p.preprocess(np.zeros((1, 2, 3, 3), np.float32))
    assert z[0, 0].tolist() == [[-1.0] * 3] * 3 and z[0, 1].tolist() == [[0.5] * 3] * 3


def test_statistics_that_fit_nothing_are_refused():
    with pytest.raises(ModelNotReady, match="preprocessing has 3 statistics"):
        Predictor(_classifier(), {**META, "preprocessing": {
            "kind": "standard", "shift": [0, 0, 0], "scale": [1, 1, 1]}})


def test_loader_failures_become_model_not_ready():
    def broken(_dir):
        raise FileNotFoundError("meta.json")

    with pytest.raises(ModelNotReady, match=r"cannot load the model in /m/1: "
                                            r"FileNotFoundError: meta.json"):
        load_predictor("/m/1", broken)
