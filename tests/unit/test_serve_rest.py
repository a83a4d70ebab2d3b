"""The REST binding (OIP v2 with the binary extension, KServe v1) over in-memory serving,
through Starlette's test client; the binary bodies are made and read by tritonclient.http."""
import gzip
import json
import re

import numpy as np
import pytest
import torch
import tritonclient.http as httpclient
from starlette.testclient import TestClient

from trainserve.serve.predictor import Predictor
from trainserve.serve.rest import build_rest_app
from trainserve.serve.testing import LocalServing
from trainserve.serve.signature import version_record

IRIS_META = {"task": "classification", "class_names": ["setosa", "versicolor", "virginica"],
             "input_shape": [4], "output_dim": 3,
             "preprocessing": {"kind": "standard", "shift": [5.8, 3.0, 3.7, 1.2],
                               "scale": [0.8, 0.4, 1.7, 0.7]}}
DIABETES_META = {"task": "regression", "class_names": [], "input_shape": [3], "output_dim": 1,
                 "preprocessing": {"kind": "none", "shift": [], "scale": []}}
X = np.random.default_rng(0).normal(5, 1, size=(5, 4)).astype(np.float32)


def mlp(n_in, n_out):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(n_in, 8), torch.nn.ReLU(),
                               torch.nn.Linear(8, n_out))


@pytest.fixture(scope="module")
def local():
    serving = LocalServing()
    serving.register("iris-mlp", 3, mlp(4, 3), IRIS_META, endpoint="iris")
    serving.register("diabetes-mlp", 1, mlp(3, 1), DIABETES_META, endpoint="diabetes")
    serving.models.put(version_record("gone", 1, IRIS_META, "/nowhere"))
    serving.deploy("broken", "gone", 1)
    return serving


@pytest.fixture(scope="module")
def client(local):
    return TestClient(build_rest_app(local.service), raise_server_exceptions=False)


def expected(x=X):
    return Predictor(mlp(4, 3), IRIS_META).predict(x)


def v2_body(x=X, datatype="FP32", name="input", **extra):
    return {"inputs": [{"name": name, "datatype": datatype, "shape": list(np.shape(x)),
                        "data": np.asarray(x).tolist()}], **extra}


def test_health_and_server_metadata(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").status_code == 200
    md = client.get("/v2").json()
    assert md["name"] == "trainserve" and "binary_tensor_data" in md["extensions"]


def test_model_metadata(client):
    md = client.get("/v2/models/iris").json()
    assert md == client.get("/v2/models/iris/versions/3").json()
    assert md["versions"] == ["3"] and md["platform"] == "pytorch"
    assert md["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert [o["name"] for o in md["outputs"]] == ["probabilities", "label", "class_name"]


def test_model_ready(client):
    assert client.get("/v2/models/iris/ready").json() == {"name": "iris", "ready": True}
    assert client.get("/v2/models/iris/versions/3/ready").status_code == 200
    assert client.get("/v2/models/broken/ready").status_code == 503
    assert client.get("/v2/models/nope/ready").status_code == 404


def test_json_infer_matches_the_model(client):
    r = client.post("/v2/models/iris/infer", json=v2_body(id="req-1"))
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["model_name"], doc["model_version"], doc["id"]) == ("iris", "3", "req-1")
    outs = {o["name"]: o for o in doc["outputs"]}
    assert outs["probabilities"]["shape"] == [5, 3] and outs["label"]["datatype"] == "INT64"
    np.testing.assert_allclose(np.reshape(outs["probabilities"]["data"], (5, 3)),
                               expected()["probabilities"], rtol=1e-6)
    assert outs["label"]["data"] == expected()["label"].tolist()
    assert outs["class_name"]["data"] == [IRIS_META["class_names"][i]
                                          for i in expected()["label"]]


def test_flat_json_data_and_versioned_route(client):
    body = v2_body()
    body["inputs"][0]["data"] = X.reshape(-1).tolist()
    r = client.post("/v2/models/iris/versions/3/infer", json=body)
    assert r.status_code == 200
    assert r.json()["outputs"][1]["data"] == expected()["label"].tolist()


def test_requested_outputs_with_one_binary(client):
    body = v2_body(outputs=[{"name": "label"},
                            {"name": "probabilities", "parameters": {"binary_data": True}}])
    r = client.post("/v2/models/iris/infer", json=body)
    header_length = int(r.headers["Inference-Header-Content-Length"])
    result = httpclient.InferenceServerClient.parse_response_body(
        r.content, header_length=header_length)
    assert [o["name"] for o in result.get_response()["outputs"]] == ["label", "probabilities"]
    np.testing.assert_array_equal(result.as_numpy("probabilities"), expected()["probabilities"])
    np.testing.assert_array_equal(result.as_numpy("label"), expected()["label"])


@pytest.mark.parametrize("outputs", [None, ["probabilities", "class_name"]])
def test_tritonclient_binary_request_and_response(client, outputs):
    inp = httpclient.InferInput("input", [5, 4], "FP32")
    inp.set_data_from_numpy(X, binary_data=True)
    requested = [httpclient.InferRequestedOutput(o, binary_data=True) for o in outputs or []]
    body, json_size = httpclient.InferenceServerClient.generate_request_body(
        [inp], outputs=requested or None)
    r = client.post("/v2/models/iris/infer", content=body,
                    headers={"Inference-Header-Content-Length": str(json_size)})
    assert r.status_code == 200, r.text
    result = httpclient.InferenceServerClient.parse_response_body(
        r.content, header_length=int(r.headers["Inference-Header-Content-Length"]))
    np.testing.assert_array_equal(result.as_numpy("probabilities"), expected()["probabilities"])
    names = result.as_numpy("class_name").tolist()
    assert names == [IRIS_META["class_names"][i].encode() for i in expected()["label"]]


def test_gzip_request_body(client):
    body = gzip.compress(json.dumps(v2_body()).encode())
    r = client.post("/v2/models/iris/infer", content=body,
                    headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert r.status_code == 200


@pytest.mark.parametrize("body,match", [
    (v2_body(X[:, :3]), r"shape \[5, 3\] does not match the expected FP32 \[-1, 4\]"),
    (v2_body(X.astype(np.float64), "FP64"), r"datatype FP64, expected FP32 \[-1, 4\]"),
    (v2_body(name="x"), r"got inputs 'x'; the model expects input 'input' FP32 \[-1, 4\]"),
    ({"inputs": []}, "non-empty 'inputs' list"),
    ({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4]}]},
     "neither 'data' nor binary_data_size"),
    ({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2]}]},
     r"shape \[1, 4\] holds 4 values, but data has 2"),
    (v2_body(outputs=[{"name": "logits"}]), "unknown output 'logits'"),
    ([1, 2], "the request body must be a JSON object"),
])
def test_bad_requests_are_400_naming_the_expectation(client, body, match):
    r = client.post("/v2/models/iris/infer", json=body)
    assert r.status_code == 400
    assert re.search(match, r.json()["error"]), r.json()


def test_malformed_json_is_400(client):
    r = client.post("/v2/models/iris/infer", content=b'{"inputs": [')
    assert r.status_code == 400 and r.json()["error"].startswith("malformed JSON body")


@pytest.mark.parametrize("header,extra,match", [
    ("9999", b"", "not a length within"),
    ("abc", b"", "not a length within"),
    (None, b"\0" * 4, "4 bytes of binary data belong to no input"),
])
def test_bad_binary_framing_is_400(client, header, extra, match):
    doc = json.dumps(v2_body()).encode()
    r = client.post("/v2/models/iris/infer", content=doc + extra,
                    headers={"Inference-Header-Content-Length": header or str(len(doc))})
    assert r.status_code == 400 and match in r.json()["error"]


def test_binary_size_past_the_end_is_400(client):
    doc = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4],
                                  "parameters": {"binary_data_size": 16}}]}).encode()
    r = client.post("/v2/models/iris/infer", content=doc + bytes(8),
                    headers={"Inference-Header-Content-Length": str(len(doc))})
    assert r.status_code == 400 and "runs past the 8 bytes" in r.json()["error"]


def test_unknown_model_and_version_are_404(client):
    r = client.post("/v2/models/nope/infer", json=v2_body())
    assert r.status_code == 404 and r.json() == {"error": "model 'nope' is not deployed"}
    assert client.get("/v2/models/iris/versions/2").status_code == 404
    assert client.get("/v3/whatever").json() == {"error": "Not Found"}


def test_v1_predict_classifier(client):
    r = client.post("/v1/models/iris:predict", json={"instances": X[:2].tolist()})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    exp = expected(X[:2])
    assert [p["label"] for p in preds] == exp["label"].tolist()
    assert [p["class_name"] for p in preds] == [IRIS_META["class_names"][i] for i in exp["label"]]
    np.testing.assert_allclose([p["probabilities"] for p in preds], exp["probabilities"],
                               rtol=1e-6)


def test_v1_predict_regression_gives_numbers(client):
    x = [[0.1, 0.2, 0.3], [1.0, 2.0, 3.0]]
    preds = client.post("/v1/models/diabetes:predict", json={"instances": x}).json()["predictions"]
    want = mlp(3, 1)(torch.tensor(x)).detach().numpy()[:, 0]
    np.testing.assert_allclose(preds, want, rtol=1e-6)


@pytest.mark.parametrize("body,status,match", [
    ({"instances": [[1, 2, 3]]}, 400, r"each instance must be FP32 [4]"),
    ({"instances": [[1, 2, 3, 4], [1]]}, 400, "not a regular"),
    ({"inputs": [[1, 2, 3, 4]]}, 400, '{"instances": [...]}'),
    ({"instances": [["a", "b", "c", "d"]]}, 400, "needs numbers"),
])
def test_v1_predict_bad_instances(client, body, status, match):
    r = client.post("/v1/models/iris:predict", json=body)
    assert r.status_code == status and match in r.json()["error"], r.json()


def test_v1_predict_unknown_model(client):
    assert client.post("/v1/models/nope:predict", json={"instances": [[1]]}).status_code == 404


def test_unexpected_errors_are_a_generic_500(local):
    class Exploding:
        async def load(self, *a):
            pass

        async def predict(self, *a):
            raise RuntimeError("secret internals")

    from trainserve.serve.service import InferenceService
    app = build_rest_app(InferenceService(local.resolver, Exploding()))
    r = TestClient(app, raise_server_exceptions=False).post("/v2/models/iris/infer",
                                                             json=v2_body())
    assert r.status_code == 500 and r.json() == {"error": "internal error"}


def test_routing_refusals_answer_in_the_error_shape(client):
    r = client.get("/v2/nowhere")
    assert r.status_code == 404 and r.json() == {"error": "Not Found"}
    r = client.get("/v2/models/iris/infer")
    assert r.status_code == 405 and r.json() == {"error": "Method Not Allowed"}
    assert r.headers["allow"] == "POST"


def test_a_trailing_slash_reaches_the_same_route(client):
    assert client.get("/v2/health/live/").json() == {"live": True}
    r = client.post("/v2/models/iris/infer/", json=v2_body())
    assert r.status_code == 200 and r.json()["model_name"] == "iris"
