"""The optional `attention` output: listed in the metadata, sent only when a request names it
(REST and gRPC), shaped [N, layers, heads, queries, keys] with rows summing to 1, the same
as the network's own weights, and refused beyond its size limit. seq2seq with attention,
GPT and the transformer encoder are trained here and served in process (BERT's:
test_bert_serving.py)."""
import asyncio

import numpy as np
import pytest
import torch
from starlette.testclient import TestClient

from tests.unit.served_models import serve_trained
from trainserve._gen.inference import grpc_predict_v2_pb2 as pb
from trainserve.serve import task_io
from trainserve.serve.grpc_api import GrpcInference
from trainserve.serve.rest import build_rest_app
from trainserve.serve.testing import RecordingContext
from trainserve.training.artifacts import load_artifact

SPECS = {
    "s2s": {"dataset": {"name": "digit_reversal", "numSamples": 200, "sequenceLength": 6},
            "model": {"seq2seq": {"hiddenSize": 16, "embeddingDim": 8, "attention": True}}},
    "plain-s2s": {"dataset": {"name": "digit_reversal", "numSamples": 200,
                              "sequenceLength": 6},
                  "model": {"seq2seq": {"hiddenSize": 16, "embeddingDim": 8}}},
    "gpt": {"dataset": {"name": "corpus", "sequenceLength": 16},
            "model": {"gpt": {"dModel": 16, "numHeads": 2, "numLayers": 2}}},
    "tr": {"dataset": {"name": "iris"},
           "model": {"transformer": {"dModel": 8, "numHeads": 2, "numLayers": 2,
                                     "pooling": "cls"}}},
}
IDS = np.random.default_rng(1).integers(0, 10, (3, 6))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    return serve_trained(SPECS, tmp_path_factory)


@pytest.fixture(scope="module")
def client(served):
    return TestClient(build_rest_app(served.service))


def module(served, name):
    return load_artifact(asyncio.run(served.resolver.resolve(name)).artifact_dir).module


def infer(client, name, inputs, outputs=None, parameters=None):
    body = {"inputs": inputs, **({"outputs": [{"name": o} for o in outputs]} if outputs else {}),
            **({"parameters": parameters} if parameters else {})}
    r = client.post(f"/v2/models/{name}/infer", json=body)
    return r.status_code, r.json()


def by_name(doc):
    return {o["name"]: o for o in doc["outputs"]}


def ids(x=IDS):
    return [{"name": "input", "datatype": "INT64", "shape": list(x.shape),
             "data": x.reshape(-1).tolist()}]


def weights(out):
    return np.asarray(out["data"], np.float32).reshape(out["shape"])


def test_metadata_lists_the_optional_output(client):
    md = {n: {o["name"]: o for o in client.get(f"/v2/models/{n}").json()["outputs"]}
          for n in SPECS}
    assert md["s2s"]["attention"] == {"name": "attention", "datatype": "FP32",
                                      "shape": [-1, 1, 1, 6, 6]}
    assert md["gpt"]["attention"]["shape"] == [-1, 2, 2, -1, -1]
    assert md["tr"]["attention"]["shape"] == [-1, 2, 2, 5, 5]  # CLS + 4 features
    assert "attention" not in md["plain-s2s"]


def test_default_responses_are_unchanged(client):
    code, doc = infer(client, "s2s", ids())
    assert code == 200 and list(by_name(doc)) == ["tokens"]


def test_seq2seq_attention_is_greedy_decodings(served, client):
    code, doc = infer(client, "s2s", ids(), outputs=["tokens", "attention"])
    assert code == 200, doc
    out = by_name(doc)
    assert list(out) == ["tokens", "attention"] and out["attention"]["datatype"] == "FP32"
    w = weights(out["attention"])
    assert w.shape == (3, 1, 1, 6, 6)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
    net_w = module(served, "s2s").attention(torch.from_numpy(IDS))[0].numpy()
    np.testing.assert_allclose(w[:, 0], net_w, atol=1e-6)


def test_gpt_attention_is_causal_over_each_prompt(client):
    prompts = [{"name": "prompt", "datatype": "BYTES", "shape": [2], "data": ["The model", "a"]}]
    code, doc = infer(client, "gpt", prompts, outputs=["text", "attention"],
                      parameters={"seed": 1, "max_new_tokens": 4})
    assert code == 200, doc
    out = by_name(doc)
    assert [len(t) for t in out["text"]["data"]] == [4, 4]
    w = weights(out["attention"])
    assert w.shape == (2, 2, 2, 9, 9)  # padded to the longest prompt
    np.testing.assert_allclose(w[0].sum(-1), 1.0, atol=1e-5)
    assert float(np.abs(np.triu(w, 1)).max()) == 0.0
    assert np.allclose(w[1, :, :, 0, 0], 1.0) and float(np.abs(w[1, :, :, 1:]).max()) == 0.0


def test_gpt_attention_covers_the_last_context_characters(client):
    prompts = [{"name": "prompt", "datatype": "BYTES", "shape": [1], "data": ["The model " * 4]}]
    code, doc = infer(client, "gpt", prompts, outputs=["attention"],
                      parameters={"max_new_tokens": 1})
    assert code == 200 and by_name(doc)["attention"]["shape"] == [1, 2, 2, 16, 16]


def test_transformer_attention_per_layer_and_head(served, client):
    x = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], np.float32)
    code, doc = infer(client, "tr", [{"name": "input", "datatype": "FP32", "shape": [2, 4],
                                      "data": x.reshape(-1).tolist()}], outputs=["attention"])
    assert code == 200, doc
    w = weights(by_name(doc)["attention"])
    assert w.shape == (2, 2, 2, 5, 5)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)


def test_a_model_without_attention_has_no_such_output(client):
    code, doc = infer(client, "plain-s2s", ids(), outputs=["attention"])
    assert code == 400 and "unknown output 'attention'" in doc["error"]


def test_a_request_parameter_cannot_ask_for_it(client):
    code, doc = infer(client, "s2s", ids(), parameters={"attention": True})
    assert code == 200 and list(by_name(doc)) == ["tokens"]


def test_too_big_an_attention_output_is_refused(client, monkeypatch):
    monkeypatch.setattr(task_io, "MAX_ATTENTION_VALUES", 3 * 36 - 1)
    code, doc = infer(client, "s2s", ids(), outputs=["attention"])
    assert code == 429, doc
    assert "3 x 1 x 1 x 6 x 6" in doc["error"] and "limit of 107" in doc["error"]
    assert infer(client, "s2s", ids(IDS[:2]), outputs=["attention"])[0] == 200


def test_grpc_names_the_output_and_gets_raw_fp32(served):
    req = pb.ModelInferRequest(model_name="s2s")
    t = req.inputs.add(name="input", datatype="INT64", shape=[3, 6])
    t.contents.int64_contents[:] = IDS.reshape(-1).tolist()
    req.outputs.add(name="attention")
    ctx = RecordingContext()
    resp = asyncio.run(GrpcInference(served.service).ModelInfer(req, ctx))
    assert ctx.code is None, ctx.details
    assert [(o.name, o.datatype, list(o.shape)) for o in resp.outputs] == [
        ("attention", "FP32", [3, 1, 1, 6, 6])]
    w = np.frombuffer(resp.raw_output_contents[0], "<f4").reshape(3, 1, 1, 6, 6)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)


def test_the_cli_says_the_output_comes_on_request(served):
    from trainserve.cli.render import tensor_specs
    mv = served.models.get("s2s", 1)
    assert tensor_specs(mv.outputs) == ("tokens INT64 [-1, 6]; "
                                        "attention FP32 [-1, 1, 1, 6, 6] (on request)")
