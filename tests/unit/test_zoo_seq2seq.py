"""Token tasks: digit_reversal / corpus datasets, the seq2seq and gpt models (shapes, decoding,
generation), their validation errors, meta and registry io specs, a short training run."""
import numpy as np
import pytest
import torch
from google.protobuf import json_format

from trainserve.core import errors
from trainserve.core.pb import spec_pb2
from trainserve.training.datasets import dataset_info, load_dataset
from trainserve.training.validate import check_spec
from trainserve.training.zoo import build_model


def _spec(d: dict) -> spec_pb2.JobSpec:
    return json_format.ParseDict(d, spec_pb2.JobSpec())


def _reversal(model=None, **extra) -> dict:
    return {"dataset": {"name": "digit_reversal", "num_samples": 200, "sequence_length": 6},
            "model": model or {"seq2seq": {"hiddenSize": 16, "embeddingDim": 8}}, **extra}


def _corpus(model=None, **extra) -> dict:
    return {"dataset": {"name": "corpus", "sequence_length": 16},
            "model": model or {"gpt": {"dModel": 16, "numHeads": 2, "numLayers": 1}}, **extra}


def _error(d: dict) -> errors.InvalidArgument:
    with pytest.raises(errors.InvalidArgument) as e:
        check_spec(_spec(d))
    return e.value


# --- datasets ------------------------------------------------------------------------------

def test_digit_reversal_targets_are_the_reversed_inputs():
    spec = check_spec(_spec(_reversal()))
    assert spec.dataset.normalize == "none" and spec.loss.name == "cross_entropy"
    x, y = load_dataset(spec.dataset)
    assert x.shape == (200, 6) and y.shape == (200, 6) and y.dtype == np.int64
    assert np.array_equal(x[:, ::-1].astype(np.int64), y)
    assert set(np.unique(y)) <= set(range(10))
    info = dataset_info(spec.dataset)
    assert info.task == "seq2seq" and len(info.class_names) == 10 and info.num_targets == 6


def test_default_reversal_length_is_20():
    spec = check_spec(_spec({"dataset": {"name": "digit_reversal"}, "model": {"seq2seq": {}}}))
    assert spec.dataset.sequence_length == 20 and spec.model.seq2seq.hidden_size == 64


def test_corpus_windows_are_next_character_pairs():
    from trainserve.training.datasets.text import corpus_vocab, decode
    spec = check_spec(_spec(_corpus()))
    x, y = load_dataset(spec.dataset)
    assert x.shape[1] == 16 and np.array_equal(x[:, 1:].astype(np.int64), y[:, :-1])
    assert dataset_info(spec.dataset).task == "language_model"
    assert len(decode(y[0])) == 16 and len(corpus_vocab()) > 30


# --- models --------------------------------------------------------------------------------

@pytest.mark.parametrize("attention,score", [(False, ""), (True, "additive"), (True, "dot")])
def test_seq2seq_shapes_and_greedy_decoding(attention, score):
    model_spec = {"seq2seq": {"hiddenSize": 16, "embeddingDim": 8, "attention": attention,
                              **({"score": score} if score else {})}}
    spec = check_spec(_spec(_reversal(model_spec)))
    torch.manual_seed(0)
    model = build_model(spec, dataset_info(spec.dataset)).eval()
    src = torch.randint(0, 10, (5, 6)).float()
    tgt = src.flip(1).long()
    assert model(src, tgt).shape == (5, 6, 10)
    out = model(src)
    assert out.shape == (5, 6) and out.dtype == torch.long and int(out.max()) < 10
    # Greedy decoding equals teacher forcing fed with its own previous outputs.
    assert torch.equal(model(src, out).argmax(-1), out)


def test_gpt_is_causal_and_generates():
    spec = check_spec(_spec(_corpus()))
    info = dataset_info(spec.dataset)
    torch.manual_seed(0)
    model = build_model(spec, info).eval()
    ids = torch.randint(0, len(info.class_names), (2, 16))
    logits = model(ids)
    assert logits.shape == (2, 16, len(info.class_names))
    changed = ids.clone()
    changed[:, 10] = (changed[:, 10] + 1) % len(info.class_names)
    assert torch.allclose(model(changed)[:, :10], logits[:, :10], atol=1e-5)  # no peeking
    g = torch.Generator().manual_seed(0)
    out = model.generate(ids[0, :3], 20, temperature=1.0, generator=g)
    assert out.shape == (23,) and torch.equal(out[:3], ids[0, :3])
    again = model.generate(ids[0, :3], 20, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert model.generate(ids[:, :2], 30, temperature=0).shape == (2, 32)  # > context: cropped


# --- validation ----------------------------------------------------------------------------

@pytest.mark.parametrize("spec,field", [
    (_reversal({"mlp": {}}), "spec.model"),
    (_corpus({"seq2seq": {}}), "spec.model"),
    (_corpus({"rnn": {}}), "spec.model"),
    ({"dataset": {"name": "iris"}, "model": {"seq2seq": {}}}, "spec.model.seq2seq"),
    ({"dataset": {"name": "sine"}, "model": {"gpt": {}}}, "spec.model.gpt"),
    (_reversal(loss={"name": "mse"}), "spec.loss.name"),
    (_reversal(loss={"classWeights": [1.0] * 10}), "spec.loss.class_weights"),
    (_reversal(optimizer={"name": "perceptron"}), "spec.optimizer.name"),
    (_reversal(split={"folds": 3}), "spec.split.folds"),
    ({**_reversal(), "dataset": {"name": "digit_reversal", "normalize": "standard"}},
     "spec.dataset.normalize"),
    (_reversal({"seq2seq": {"score": "dot"}}), "spec.model.seq2seq.score"),
    (_reversal({"seq2seq": {"attention": True, "score": "cosine"}}), "spec.model.seq2seq.score"),
    (_reversal({"seq2seq": {"hiddenSize": 0}}), "spec.model.seq2seq.hidden_size"),
    (_corpus({"gpt": {"dModel": 10, "numHeads": 4}}), "spec.model.gpt.num_heads"),
    (_corpus({"gpt": {"contextLength": 8}}), "spec.model.gpt.context_length"),
])
def test_validation_errors_name_the_field(spec, field):
    assert _error(spec).field == field


# --- training, meta, registry --------------------------------------------------------------

def test_short_training_writes_meta_and_io_specs(tmp_path):
    from trainserve.serve.signature import io_specs
    from trainserve.training.artifacts import load_artifact
    from trainserve.training.loop import train
    from trainserve.training.reporting import NullReporter
    spec = check_spec(_spec(_reversal({"seq2seq": {"hiddenSize": 16, "attention": True}},
                                      training={"epochs": 2})))
    result = train(spec, tmp_path / "s2s", NullReporter())
    assert result.status == "succeeded"
    assert {"test_token_accuracy", "test_exact_match", "test_loss"} <= set(result.metrics)
    loaded = load_artifact(result.artifact_dir)
    assert loaded.meta["task"] == "seq2seq" and loaded.meta["attention"] is True
    assert loaded.module(torch.zeros(3, 6)).shape == (3, 6)
    inputs, outputs = io_specs(loaded.meta)
    assert inputs[0].datatype == "INT64" and list(inputs[0].shape) == [-1, 6]
    assert outputs[0].name == "tokens" and list(outputs[0].shape) == [-1, 6]

    spec = check_spec(_spec(_corpus(training={"epochs": 1})))
    result = train(spec, tmp_path / "lm", NullReporter())
    assert {"val_loss", "bigram_val_loss", "bigram_test_loss"} <= set(result.metrics)
    meta = load_artifact(result.artifact_dir).meta
    assert meta["task"] == "language_model"
    inputs, outputs = io_specs(meta)
    assert inputs[0].name == "prompt" and inputs[0].datatype == "BYTES"
    assert list(inputs[0].shape) == [-1]
    assert outputs[0].name == "text" and outputs[0].datatype == "BYTES"
