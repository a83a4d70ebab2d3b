"""Serving the generative and token tasks: VAE samples beside reconstruction, GAN samples, seq2seq
greedy decoding, GPT text completion; request parameters (seed, max_new_tokens, temperature,
top_k) over REST and gRPC, metadata, and the 400s of bad requests. Tiny models are trained here
and loaded through the artifact loader, as the model host loads them."""
import asyncio

import numpy as np
import pytest
import torch
from starlette.testclient import TestClient

from tests.unit.served_models import serve_trained
from trainserve._gen.inference import grpc_predict_v2_pb2 as pb
from trainserve.core.errors import InvalidArgument
from trainserve.serve.dataplane import InferInput, InferRequest
from trainserve.serve.grpc_api import GrpcInference
from trainserve.serve.predictor import Predictor
from trainserve.serve.rest import build_rest_app
from trainserve.serve.testing import RecordingContext
from trainserve.training.artifacts import load_artifact

SPECS = {
    "vae": {"dataset": {"name": "digits"},
            "model": {"autoencoder": {"kind": "variational", "hidden": [16], "latentDim": 3}}},
    "gan": {"dataset": {"name": "rings", "numSamples": 200},
            "model": {"gan": {"generatorHidden": [8], "discriminatorHidden": [8]}}},
    "s2s": {"dataset": {"name": "digit_reversal", "numSamples": 200, "sequenceLength": 6},
            "model": {"seq2seq": {"hiddenSize": 16, "embeddingDim": 8}}},
    "gpt": {"dataset": {"name": "corpus", "sequenceLength": 16},
            "model": {"gpt": {"dModel": 16, "numHeads": 2, "numLayers": 1}}},
}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    return serve_trained(SPECS, tmp_path_factory)


@pytest.fixture(scope="module")
def client(served):
    return TestClient(build_rest_app(served.service))


def infer(client, name, inputs, parameters=None, outputs=None):
    body = {"inputs": inputs, **({"parameters": parameters} if parameters else {}),
            **({"outputs": [{"name": o} for o in outputs]} if outputs else {})}
    r = client.post(f"/v2/models/{name}/infer", json=body)
    return r.status_code, r.json()


def outputs(doc):
    return {o["name"]: o for o in doc["outputs"]}


def num_samples(n):
    return [{"name": "num_samples", "datatype": "INT64", "shape": [1], "data": [n]}]


def prompts(*texts):
    return [{"name": "prompt", "datatype": "BYTES", "shape": [len(texts)], "data": list(texts)}]


def tensors(doc):
    return {o["name"]: (o["datatype"], o["shape"]) for o in doc}


# --- metadata ---------------------------------------------------------------------------------

def test_metadata_describes_every_task(client):
    md = {name: client.get(f"/v2/models/{name}").json() for name in SPECS}
    assert tensors(md["vae"]["inputs"]) == {"input": ("FP32", [-1, 1, 8, 8]),
                                            "num_samples": ("INT64", [1])}
    assert tensors(md["vae"]["outputs"]) == {"reconstruction": ("FP32", [-1, 1, 8, 8]),
                                             "latent": ("FP32", [-1, 3]),
                                             "samples": ("FP32", [-1, 1, 8, 8])}
    assert tensors(md["gan"]["inputs"]) == {"num_samples": ("INT64", [1])}
    assert tensors(md["s2s"]["inputs"]) == {"input": ("INT64", [-1, 6])}
    assert tensors(md["s2s"]["outputs"]) == {"tokens": ("INT64", [-1, 6])}
    assert tensors(md["gpt"]["inputs"]) == {"prompt": ("BYTES", [-1])}
    assert tensors(md["gpt"]["outputs"]) == {"text": ("BYTES", [-1]),  # attention: on request
                                             "attention": ("FP32", [-1, 1, 2, -1, -1])}


# --- VAE and GAN samples ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["vae", "gan"])
def test_samples_follow_the_seed(client, name):
    shape = [4, 1, 8, 8] if name == "vae" else [4, 2]
    code, a = infer(client, name, num_samples(4), {"seed": 3})
    assert code == 200, a
    assert list(outputs(a)) == ["samples"] and outputs(a)["samples"]["shape"] == shape
    assert infer(client, name, num_samples(4), {"seed": 3})[1] == a
    assert infer(client, name, num_samples(4), {"seed": 4})[1] != a
    unseeded = [infer(client, name, num_samples(4))[1] for _ in range(2)]
    assert unseeded[0] != unseeded[1]


def test_vae_samples_are_in_the_callers_units(served):
    """The decoded prior samples with the training normalization undone."""
    ep = asyncio.run(served.resolver.resolve("vae"))
    loaded = load_artifact(ep.artifact_dir)
    got = Predictor(loaded.module, loaded.meta).run({"num_samples": np.array([2])}, {"seed": 5})
    net = loaded.module.sample(2, torch.Generator().manual_seed(5)).numpy()
    pre = loaded.meta["preprocessing"]
    want = net * np.asarray(pre["scale"]).reshape(1, 8, 8) + np.asarray(pre["shift"]).reshape(
        1, 8, 8)
    np.testing.assert_allclose(got["samples"], want, rtol=1e-4, atol=1e-4)


def test_vae_reconstruction_is_unchanged(client):
    x = np.random.default_rng(0).uniform(0, 16, (2, 1, 8, 8)).tolist()
    code, doc = infer(client, "vae", [{"name": "input", "datatype": "FP32",
                                       "shape": [2, 1, 8, 8], "data": x}])
    assert code == 200, doc
    assert {n: o["shape"] for n, o in outputs(doc).items()} == {
        "reconstruction": [2, 1, 8, 8], "latent": [2, 3]}


@pytest.mark.parametrize("body, message", [
    ({"inputs": num_samples(2) + [{"name": "input", "datatype": "FP32", "shape": [1, 1, 8, 8],
                                   "data": [0.0] * 64}]},
     "got inputs 'num_samples', 'input'; the model expects one of input 'input' FP32 "
     "[-1, 1, 8, 8]; or input 'num_samples' INT64 [1]"),
    ({"inputs": [{"name": "z", "datatype": "INT64", "shape": [1], "data": [1]}]},
     "got inputs 'z'; the model expects one of"),
    ({"inputs": num_samples(2), "outputs": [{"name": "latent"}]},
     "unknown output 'latent'; a request with input 'num_samples' has 'samples'"),
    ({"inputs": num_samples(0)}, "input 'num_samples': expected one integer in [1, 10000]"),
    ({"inputs": num_samples(2), "parameters": {"seed": "3"}}, "parameter 'seed': expected an "
                                                              "integer"),
    ({"inputs": num_samples(2), "parameters": {"seed": 1.5}}, "parameter 'seed'"),
    ({"inputs": num_samples(2), "parameters": {"seed": -1}}, "parameter 'seed'"),
])
def test_bad_vae_requests_are_400_naming_the_field(client, body, message):
    r = client.post("/v2/models/vae/infer", json=body)
    assert r.status_code == 400 and message in r.json()["error"], r.json()


def test_unknown_parameters_are_ignored(client):
    code, doc = infer(client, "gan", num_samples(1), {"binary_data_output": False, "x": "y"})
    assert code == 200, doc


# --- gRPC parameters ---------------------------------------------------------------------------

def grpc_infer(served, request):
    ctx = RecordingContext()
    return asyncio.run(GrpcInference(served.service).ModelInfer(request, ctx)), ctx


def grpc_samples(served, seed):
    req = pb.ModelInferRequest(model_name="gan")
    req.inputs.add(name="num_samples", datatype="INT64", shape=[1]).contents.int64_contents[:] = [3]
    if seed is not None:
        seed(req.parameters["seed"])
    return grpc_infer(served, req)


def test_grpc_request_parameters_reach_the_model(served):
    def int64(p):
        p.int64_param = 7

    a, ctx = grpc_samples(served, int64)
    assert ctx.code is None, ctx.details
    assert list(a.outputs[0].shape) == [3, 2]
    assert grpc_samples(served, int64)[0].raw_output_contents == a.raw_output_contents
    assert grpc_samples(served, None)[0].raw_output_contents != a.raw_output_contents

    def string(p):
        p.string_param = "7"

    _, ctx = grpc_samples(served, string)
    assert ctx.code.name == "INVALID_ARGUMENT" and "parameter 'seed'" in ctx.details


# --- seq2seq ------------------------------------------------------------------------------------

def test_seq2seq_answers_the_greedy_decoding(served, client):
    x = np.random.default_rng(1).integers(0, 10, (3, 6))
    code, doc = infer(client, "s2s", [{"name": "input", "datatype": "INT64", "shape": [3, 6],
                                       "data": x.reshape(-1).tolist()}])
    assert code == 200, doc
    tokens = outputs(doc)["tokens"]
    assert tokens["datatype"] == "INT64" and tokens["shape"] == [3, 6]
    loaded = load_artifact(asyncio.run(served.resolver.resolve("s2s")).artifact_dir)
    want = loaded.module.greedy(torch.from_numpy(x))  # what evaluation decodes
    assert tokens["data"] == want.reshape(-1).tolist()


@pytest.mark.parametrize("data, datatype, message", [
    ([1, 2, 3, 4, 5, 12], "INT64", "input 'input': token ids must be in [0, 9]"),
    ([1, 2, 3, 4, 5, -1], "INT64", "token ids must be in [0, 9]"),
    ([1.0] * 6, "FP32", "input 'input': datatype FP32, expected INT64 [-1, 6]"),
])
def test_bad_seq2seq_inputs(served, data, datatype, message):
    request = InferRequest([InferInput("input", datatype, (1, 6),
                                       np.asarray(data).reshape(1, 6))])
    with pytest.raises(InvalidArgument, match=message.replace("[", r"\[").replace("]", r"\]")):
        asyncio.run(served.service.infer("s2s", "", request))


# --- GPT ----------------------------------------------------------------------------------------

def test_gpt_completes_prompts_reproducibly(client):
    params = {"seed": 3, "max_new_tokens": 12, "temperature": 0.8}
    code, doc = infer(client, "gpt", prompts("The ", "a"), params)
    assert code == 200, doc
    text = outputs(doc)["text"]
    assert text["datatype"] == "BYTES" and text["shape"] == [2]
    assert [len(t) for t in text["data"]] == [12, 12]
    assert infer(client, "gpt", prompts("The ", "a"), params)[1] == doc
    # tritonclient.grpc sends no floats: a number in a string is a number.
    assert infer(client, "gpt", prompts("The ", "a"), {**params, "temperature": "0.8"})[1] == doc
    assert infer(client, "gpt", prompts("The ", "a"), {**params, "seed": 4})[1] != doc


def test_gpt_default_length_and_top_k(served, client):
    code, doc = infer(client, "gpt", prompts("model"))
    assert code == 200 and len(outputs(doc)["text"]["data"][0]) == 200
    # top_k 1 leaves one candidate per step: the seed no longer matters.
    texts = {infer(client, "gpt", prompts("model"), {"top_k": 1, "seed": s, "max_new_tokens": 8}
                   )[1]["outputs"][0]["data"][0] for s in range(3)}
    assert len(texts) == 1
    ep = asyncio.run(served.resolver.resolve("gpt"))
    loaded = load_artifact(ep.artifact_dir)
    vocab = loaded.meta["class_names"]
    ids = loaded.module.generate(torch.tensor([vocab.index(c) for c in "model"]), 8, 0.0)
    assert texts == {"".join(vocab[i] for i in ids[5:])}  # greedy decoding


@pytest.mark.parametrize("body, message", [
    ({"inputs": prompts("snow \u2603 and \u00b5")}, "input 'prompt' row 0: characters not in "
                                                     "the model's vocabulary: '\u00b5', '\u2603'"),
    ({"inputs": prompts("ok", "")}, "input 'prompt' row 1: a prompt needs 1 to"),
    ({"inputs": prompts("a"), "parameters": {"temperature": 0}},
     "parameter 'temperature': expected a number in (0, 100]"),
    ({"inputs": prompts("a"), "parameters": {"max_new_tokens": 5000}},
     "parameter 'max_new_tokens': expected an integer in [1, 2000]"),
    ({"inputs": prompts("a"), "parameters": {"top_k": True}}, "parameter 'top_k'"),
    ({"inputs": prompts("a"), "parameters": {"temperature": "hot"}}, "parameter 'temperature'"),
    ({"inputs": prompts("a"), "parameters": {"temperature": "nan"}}, "parameter 'temperature'"),
    ({"inputs": [{"name": "prompt", "datatype": "INT64", "shape": [1, 2], "data": [1, 2]}]},
     "input 'prompt': datatype INT64, expected BYTES [-1]"),
])
def test_bad_gpt_requests_are_400_naming_the_field(client, body, message):
    r = client.post("/v2/models/gpt/infer", json=body)
    assert r.status_code == 400 and message in r.json()["error"], r.json()
