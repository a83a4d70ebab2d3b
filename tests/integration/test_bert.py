"""BERT end to end on the real local stack: masked-language-model pre-training registers a
model; a classifier fine-tuned from it through `model.transfer` (encoder weights loaded, a
fresh [CLS] head) is deployed and answers raw text and token ids alike over OIP REST; its
attention map is a job artifact and an optional served output (bounded in size); a second
user can neither see nor transfer from the first user's model."""
from __future__ import annotations

import uuid

import grpc
import httpx
import numpy as np
import pytest

from tests.integration.helpers import (deploy, example, get_model, rpc_error, submit, wait_job,
                                       watch)
from tests.integration.test_api_tenancy import As
from trainserve.core.pb import auth_pb2, auth_pb2_grpc, deployment_pb2, job_pb2
from trainserve.core.state import JobState
from trainserve.training.datasets import tokenizer

pytestmark = pytest.mark.integration

TINY = {"bert": {"dModel": 16, "numHeads": 2, "numLayers": 1, "dimFeedforward": 32}}
TEXTS = ["Redis holds state; Ray holds compute.", "loss: cross_entropy with label smoothing"]


@pytest.fixture(scope="module")
def pretrained(stubs):
    spec = example("bert_mlm", model=TINY, training={"epochs": 2})  # > warmup_epochs
    job = wait_job(stubs, submit(stubs, spec).id, timeout=300)
    assert JobState(job.state) == JobState.SUCCEEDED, job.message
    assert {"test_mlm_accuracy", "test_perplexity"} <= set(job.metrics)
    return job


def test_pretraining_registers_a_masked_lm(stubs, pretrained):
    mv = get_model(stubs, pretrained.model_name, pretrained.model_version)
    assert mv.task == "masked_lm"
    assert [(t.name, t.datatype) for t in mv.inputs] == [("input", "INT64")]
    assert [(t.name, t.optional) for t in mv.outputs] == [("tokens", False), ("attention", True)]
    assert 1.0 < pretrained.metrics["test_perplexity"] < tokenizer.vocab_size() * 2


def test_fine_tuned_classifier_answers_text_and_ids(stack, stubs, pretrained):
    spec = example("bert_finetune", model=TINY, training={"epochs": 2})
    assert spec.model.transfer.model == pretrained.model_name
    job = submit(stubs, spec)
    logs = [e.log.text for e in watch(stubs, job.id, timeout=300) if e.HasField("log")]
    done = wait_job(stubs, job.id)
    assert JobState(done.state) == JobState.SUCCEEDED, done.message
    assert any("encoder.tok.weight" in line for line in logs), logs
    assert "test_accuracy" in done.metrics

    artifacts = stubs.jobs.ListArtifacts(job_pb2.ListArtifactsRequest(job_id=done.id),
                                         timeout=60)
    assert "attention.png" in {a.name for a in artifacts.artifacts}

    dep = deploy(stubs, done.model_name, "bert-source-it")
    assert dep.state == deployment_pb2.DEPLOYMENT_STATE_READY, dep.message
    url = f"http://{stack.config.serve_http}/v2/models/bert-source-it"
    md = httpx.get(url, timeout=30).json()
    assert md["inputs"] == [{"name": "input", "datatype": "INT64", "shape": [-1, 64]},
                            {"name": "text", "datatype": "BYTES", "shape": [-1]}]
    by_text = httpx.post(f"{url}/infer", timeout=60, json={"inputs": [
        {"name": "text", "datatype": "BYTES", "shape": [2], "data": TEXTS}]})
    assert by_text.status_code == 200, by_text.text
    ids = tokenizer.encode_batch(TEXTS, 64)
    by_ids = httpx.post(f"{url}/infer", timeout=60, json={"inputs": [
        {"name": "input", "datatype": "INT64", "shape": [2, 64],
         "data": ids.reshape(-1).tolist()}]})
    assert by_ids.status_code == 200, by_ids.text
    out_text = {o["name"]: o["data"] for o in by_text.json()["outputs"]}
    out_ids = {o["name"]: o["data"] for o in by_ids.json()["outputs"]}
    assert out_text["label"] == out_ids["label"]
    assert out_text["probabilities"] == pytest.approx(out_ids["probabilities"], abs=1e-5)
    assert set(out_text["class_name"]) <= {"readme", "architecture", "training_options"}
    both = httpx.post(f"{url}/infer", timeout=60, json={"inputs": [
        {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"]},
        {"name": "input", "datatype": "INT64", "shape": [1, 64], "data": [2] + [0] * 63}]})
    assert both.status_code == 400
    _attention_on_request(url)


def _attention_on_request(url):
    """The classifier's attention weights, when a request names the output; too many rows of
    them (128 x 1 layer x 2 heads x 64 x 64 values) are refused."""
    text = {"name": "text", "datatype": "BYTES", "shape": [1], "data": TEXTS[:1]}
    r = httpx.post(f"{url}/infer", timeout=60, json={
        "inputs": [text], "outputs": [{"name": "label"}, {"name": "attention"}]})
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    assert list(out) == ["label", "attention"]
    assert out["attention"]["shape"] == [1, 1, 2, 64, 64]
    w = np.asarray(out["attention"]["data"]).reshape(1, 1, 2, 64, 64)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
    many = {**text, "shape": [128], "data": TEXTS[:1] * 128}
    refused = httpx.post(f"{url}/infer", timeout=60, json={
        "inputs": [many], "outputs": [{"name": "attention"}]})
    assert refused.status_code == 429, refused.text
    assert "128 x 1 x 2 x 64 x 64" in refused.json()["error"]


def test_another_user_cannot_see_or_transfer_from_the_model(stack, channel, pretrained):
    token = auth_pb2_grpc.AuthServiceStub(channel).CreateToken(
        auth_pb2.CreateTokenRequest(user=f"bert-{uuid.uuid4().hex[:6]}"), timeout=10).token
    bob = As(stack.config.api_address, token)
    try:
        err = rpc_error(get_model, bob, pretrained.model_name, pretrained.model_version)
        assert err.code() == grpc.StatusCode.NOT_FOUND
        spec = example("bert_finetune", model=TINY, training={"epochs": 1})
        err = rpc_error(bob.submit, spec)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
        assert "spec.model.transfer" in err.details()
    finally:
        bob.channel.close()
