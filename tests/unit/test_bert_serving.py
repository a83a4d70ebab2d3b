"""Serving BERT models: the signature (token ids, or raw text for a classifier), the request
checks, and the predictor on a trained artifact; transfer of the encoder between the two."""
import numpy as np
import pytest
from google.protobuf import json_format

from trainserve.core import errors
from trainserve.core.pb import spec_pb2
from trainserve.serve.dataplane import InferInput, InferRequest, ModelSignature
from trainserve.serve.predictor import Predictor
from trainserve.serve.signature import io_specs
from trainserve.serve.task_io import task_rules
from trainserve.training.datasets import tokenizer
from trainserve.training.artifacts import load_artifact
from trainserve.training.loop import train
from trainserve.training.reporting import ListReporter, NullReporter
from trainserve.training.validate import check_spec

TINY = {"d_model": 16, "num_heads": 2, "num_layers": 1}


def _train(tmp, dataset, transfer=None, epochs=1):
    model = {"bert": TINY}
    if transfer:
        model["transfer"] = transfer
    spec = check_spec(json_format.ParseDict({
        "dataset": {"name": dataset, "sequence_length": 24}, "model": model,
        "training": {"epochs": epochs, "batch_size": 64, "seed": 0}}, spec_pb2.JobSpec()))
    reporter = ListReporter()
    result = train(spec, tmp, reporter)
    assert result.status == "succeeded"
    return result, reporter


@pytest.fixture(scope="module")
def mlm(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("mlm"), "corpus_mlm")[0]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, mlm):
    result, reporter = _train(tmp_path_factory.mktemp("clf"), "corpus_source",
                              {"model": "bert-mlm", "artifact_path": mlm.artifact_dir})
    return result, reporter


def _signature(meta):
    inputs, outputs = io_specs(meta)
    from trainserve.serve.dataplane import TensorSpec
    ins = tuple(TensorSpec(t.name, t.datatype, tuple(t.shape)) for t in inputs)
    outs = tuple(TensorSpec(t.name, t.datatype, tuple(t.shape), t.optional) for t in outputs)
    rules = task_rules(meta["task"], [t.name for t in inputs], meta["class_names"])
    return ModelSignature(ins, outs, 16, rules.forms, rules.parameters, rules.check)


def test_mlm_reports_its_metrics_and_meta(mlm):
    assert {"test_mlm_accuracy", "test_perplexity", "test_loss"} <= set(mlm.metrics)
    assert mlm.metrics["test_perplexity"] > 1
    meta = load_artifact(mlm.artifact_dir).meta
    assert meta["task"] == "masked_lm" and meta["tokenizer"] == "char"


def test_fine_tuning_loads_the_encoder(classifier):
    result, reporter = classifier
    lines = " ".join(text for _, text in reporter.logs)
    assert "test_accuracy" in result.metrics
    assert "val_accuracy" in reporter.epochs[-1].metrics
    assert "encoder.tok.weight" in lines and "mlm_head" in lines  # loaded / skipped


def test_classifier_signature_takes_ids_or_text(classifier):
    meta = load_artifact(classifier[0].artifact_dir).meta
    inputs, outputs = io_specs(meta)
    assert [(t.name, t.datatype, list(t.shape)) for t in inputs] == [
        ("input", "INT64", [-1, 24]), ("text", "BYTES", [-1])]
    assert [(t.name, t.optional) for t in outputs] == [
        ("probabilities", False), ("label", False), ("attention", True)]
    assert list(outputs[2].shape) == [-1, 1, 2, 24, 24] and outputs[2].datatype == "FP32"


def test_predictor_answers_text_like_its_token_ids(classifier):
    loaded = load_artifact(classifier[0].artifact_dir)
    predictor = Predictor(loaded.module, loaded.meta)
    texts = np.array([b"the job API listens on", "Redis holds state".encode()], dtype=object)
    by_text = predictor.run({"text": texts})
    ids = tokenizer.encode_batch(["the job API listens on", "Redis holds state"], 24)
    by_ids = predictor.run({"input": ids})
    assert np.allclose(by_text["probabilities"], by_ids["probabilities"], atol=1e-6)
    assert by_text["probabilities"].shape == (2, 3)
    assert set(by_text["class_name"]) <= {b"readme", b"architecture", b"training_options"}


def test_text_requests_are_checked(classifier):
    sig = _signature(load_artifact(classifier[0].artifact_dir).meta)
    ok = InferRequest([InferInput("text", "BYTES", (1,), np.array([b"hi"], dtype=object))])
    assert set(sig.validate_inputs(ok)) == {"text"}
    bad = InferRequest([InferInput("text", "BYTES", (1,), np.array([b"\xff"], dtype=object))])
    with pytest.raises(errors.InvalidArgument, match="UTF-8"):
        sig.validate_inputs(bad)
    ids = np.full((1, 24), tokenizer.vocab_size(), dtype=np.int64)
    with pytest.raises(errors.InvalidArgument, match="token ids"):
        sig.validate_inputs(InferRequest([InferInput("input", "INT64", (1, 24), ids)]))


def test_masked_lm_predicts_tokens(mlm):
    loaded = load_artifact(mlm.artifact_dir)
    inputs, outputs = io_specs(loaded.meta)
    assert [t.name for t in inputs] == ["input"]
    assert [t.name for t in outputs] == ["tokens", "attention"]
    ids = tokenizer.encode_batch(["trainserve"], 24)
    ids[0, 3] = tokenizer.MASK
    out = Predictor(loaded.module, loaded.meta).run({"input": ids})["tokens"]
    assert out.shape == (1, 24) and out.dtype == np.int64
    both = Predictor(loaded.module, loaded.meta).run({"input": ids}, {"attention": True})
    np.testing.assert_array_equal(both["tokens"], out)
    assert both["attention"].shape == tuple([1, *outputs[1].shape[1:]]) == (1, 1, 2, 24, 24)
    np.testing.assert_allclose(both["attention"].sum(-1), 1.0, atol=1e-5)


def test_attention_is_an_optional_output_of_ids_and_text(classifier):
    loaded = load_artifact(classifier[0].artifact_dir)
    predictor = Predictor(loaded.module, loaded.meta)
    by_text = predictor.run({"text": np.array([b"hello", b"a b"], dtype=object)},
                            {"attention": True})
    ids = tokenizer.encode_batch(["hello", "a b"], 24)
    by_ids = predictor.run({"input": ids}, {"attention": True})
    w = by_text["attention"]
    assert w.shape == (2, 1, 2, 24, 24) and w.dtype == np.float32
    np.testing.assert_allclose(w, by_ids["attention"], atol=1e-6)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
    assert float(np.abs(w[0, :, :, :, 6:]).max()) == 0.0  # [CLS] h e l l o, then padding
    assert "attention" not in predictor.run({"input": ids})  # only when asked


def test_signature_offers_attention_only_on_request(classifier):
    sig = _signature(load_artifact(classifier[0].artifact_dir).meta)
    assert [s.name for s in sig.select_outputs([], ["text"])] == ["probabilities", "label"]
    from trainserve.serve.dataplane import RequestedOutput
    picked = sig.select_outputs([RequestedOutput("label"), RequestedOutput("attention")],
                                ["text"])
    assert [s.name for s in picked] == ["label", "attention"]
