"""BERT (`model.bert`): the tokenizer, the datasets, the network's shapes, padding mask and
attention weights, the masked-language-model masking rule, and spec validation."""
import numpy as np
import pytest
import torch
from google.protobuf import json_format

from trainserve.core import errors
from trainserve.core.pb import spec_pb2
from trainserve.training.datasets import tokenizer
from trainserve.training.datasets import dataset_info, load_dataset
from trainserve.training.datasets.bert_text import SOURCES, documents
from trainserve.training.mlm_task import mask_tokens
from trainserve.training.datasets.tokenizer import CLS, MASK, PAD, SPECIALS
from trainserve.training.validate import check_spec
from trainserve.training.zoo import build_model
from trainserve.training.zoo.nets.bert import BERT


def _spec(dataset="corpus_mlm", **bert):
    return json_format.ParseDict({"dataset": {"name": dataset},
                                  "model": {"bert": {"d_model": 16, "num_heads": 2, **bert}},
                                  "training": {"epochs": 1}}, spec_pb2.JobSpec())


def _net(classes=0, t=12, pooling="cls"):
    torch.manual_seed(0)
    return BERT(tokenizer.vocab_size(), t, 16, 2, 2, 32, 0.0, classes, pooling).eval()


# --- tokenizer ---------------------------------------------------------------------------------

def test_tokenizer_round_trips_corpus_text():
    text = "Train and serve: `trainserve up` (8000)"
    ids = tokenizer.encode(text, 64)
    assert ids.dtype == np.int64 and ids.shape == (64,)
    assert ids[0] == CLS and (ids[1 + len(text):] == PAD).all()
    assert tokenizer.decode(ids) == text


def test_tokenizer_cuts_long_text_and_maps_unknown_characters():
    ids = tokenizer.encode("abcdef", 4)
    assert tokenizer.decode(ids) == "abc"
    assert tokenizer.encode("a\u2603", 4)[2] == tokenizer.UNK
    assert tokenizer.vocabulary()[:len(SPECIALS)] == SPECIALS
    with pytest.raises(ValueError):
        tokenizer.encode("a", 1)


# --- datasets ----------------------------------------------------------------------------------

def test_corpus_mlm_windows_are_cls_plus_text():
    ds = spec_pb2.DatasetSpec(name="corpus_mlm", sequence_length=32)
    info = dataset_info(ds)
    x, y = load_dataset(ds)
    assert info.task == "masked_lm" and x.shape == (info.num_samples, 32) == y.shape
    assert (x[:, 0] == CLS).all() and (x == y).all()
    assert info.class_names == tokenizer.vocabulary()


def test_corpus_source_is_deterministic_padded_and_labelled():
    ds = spec_pb2.DatasetSpec(name="corpus_source")
    x1, y1 = load_dataset(ds)
    x2, y2 = load_dataset(ds)
    assert (x1 == x2).all() and (y1 == y2).all()
    assert set(np.unique(y1)) == {0, 1, 2} and len(SOURCES) == 3
    assert (x1 == PAD).any()  # snippets shorter than 63 characters are padded
    # every snippet is text of the document its label names, titles removed
    for row, label in list(zip(x1, y1))[::50]:
        assert tokenizer.decode(row) in documents()[label]
    assert not any(d.startswith("# ") for d in documents())


# --- network -----------------------------------------------------------------------------------

def test_shapes_of_both_heads():
    ids = torch.from_numpy(tokenizer.encode_batch(["hello", "a longer text"], 12))
    assert _net()(ids).shape == (2, 12, tokenizer.vocab_size())
    assert _net(classes=3)(ids.float()).shape == (2, 3)  # float ids, as datasets store them


def test_padding_does_not_change_the_outputs_of_the_text():
    net = _net(classes=3)
    short = torch.from_numpy(tokenizer.encode_batch(["hello"], 8))
    long = torch.from_numpy(tokenizer.encode_batch(["hello"], 12))
    with torch.no_grad():  # same positions, only more [PAD] after: masked out of attention
        assert torch.allclose(net(short), net(long), atol=1e-5)
        changed = long.clone()
        changed[0, 10] = tokenizer.encode("x", 2)[1]  # a real token there does change it
        assert not torch.allclose(net(long), net(changed), atol=1e-5)


def test_mean_pooling_averages_the_text_positions_only():
    net = _net(classes=3, pooling="mean")
    short = torch.from_numpy(tokenizer.encode_batch(["hello"], 8))
    long = torch.from_numpy(tokenizer.encode_batch(["hello"], 12))
    with torch.no_grad():
        assert torch.allclose(net(short), net(long), atol=1e-5)  # padding never averaged
        hidden, _ = net.encoder(long)
        by_hand = net.classifier(hidden[0, :6].mean(0, keepdim=True))  # [CLS] + 5 letters
        assert torch.allclose(net(long), by_hand, atol=1e-5)
        assert not torch.allclose(net(long), _net(classes=3)(long), atol=1e-3)  # not [CLS]


def test_attention_weights_sum_to_one_and_ignore_padding():
    net = _net()
    ids = torch.from_numpy(tokenizer.encode_batch(["hi", "hello world"], 12))
    maps = net.attention(ids)
    assert len(maps) == 2 and maps[0].shape == (2, 2, 12, 12)
    for w in maps:
        assert torch.allclose(w.sum(-1), torch.ones(2, 2, 12), atol=1e-5)
        assert float(w[0, :, :, 3:].abs().max()) == 0.0  # "hi" = [CLS] h i, then padding


def test_encoder_names_are_shared_and_heads_differ():
    mlm, clf = _net().state_dict(), _net(classes=3).state_dict()
    enc = {k for k in mlm if k.startswith("encoder.")}
    assert enc and enc == {k for k in clf if k.startswith("encoder.")}
    assert any(k.startswith("mlm_head.") for k in mlm)
    assert any(k.startswith("classifier.") for k in clf)


# --- masking -----------------------------------------------------------------------------------

def test_masking_follows_the_80_10_10_rule():
    ids = torch.from_numpy(tokenizer.encode_batch([documents()[1][:63]] * 2000, 64))
    gen = torch.Generator().manual_seed(0)
    inputs, chosen = mask_tokens(ids, 0.15, tokenizer.vocab_size(), gen)
    maskable = ids >= len(SPECIALS)
    assert not (chosen & ~maskable).any()          # never [CLS] or [PAD]
    assert chosen.any(dim=1).all()                  # every sequence has one
    assert abs(float(chosen.sum()) / float(maskable.sum()) - 0.15) < 0.01
    picked = inputs[chosen]
    as_mask = float((picked == MASK).double().mean())
    kept = float((picked == ids[chosen]).double().mean())
    assert abs(as_mask - 0.8) < 0.02
    assert abs(kept - 0.1 - 0.1 / 95) < 0.02       # kept, or a random token that matched
    assert (inputs[~chosen] == ids[~chosen]).all()  # the others untouched
    assert (picked >= len(SPECIALS)).logical_or(picked == MASK).all()


def test_masking_chooses_one_token_in_a_sequence_that_drew_none():
    ids = torch.from_numpy(tokenizer.encode_batch(["ab"] * 50, 8))
    _, chosen = mask_tokens(ids, 1e-9, tokenizer.vocab_size(), torch.Generator().manual_seed(1))
    assert (chosen.sum(dim=1) == 1).all()


# --- validation --------------------------------------------------------------------------------

def test_defaults_and_build():
    spec = check_spec(_spec())
    b = spec.model.bert
    assert (b.max_length, b.mask_probability, b.dim_feedforward) == (64, pytest.approx(0.15), 64)
    assert b.pooling == "cls"
    assert spec.dataset.normalize == "none"
    info = dataset_info(spec.dataset)
    assert isinstance(build_model(spec, info), BERT)


@pytest.mark.parametrize("dataset, bert, field", [
    ("corpus_mlm", {"num_heads": 3}, "spec.model.bert.num_heads"),
    ("corpus_mlm", {"max_length": 10}, "spec.model.bert.max_length"),
    ("corpus_mlm", {"mask_probability": 0.0}, "spec.model.bert.mask_probability"),
    ("corpus_mlm", {"dropout": 1.0}, "spec.model.bert.dropout"),
    ("corpus_source", {"pooling": "max"}, "spec.model.bert.pooling"),
    ("iris", {}, "spec.model.bert"),
    ("corpus", {}, "spec.model"),
])
def test_refusals_name_the_field(dataset, bert, field):
    with pytest.raises(errors.InvalidArgument) as exc:
        check_spec(_spec(dataset, **bert))
    assert exc.value.field == field or field in str(exc.value)


def test_mlm_dataset_takes_only_bert():
    spec = json_format.ParseDict({"dataset": {"name": "corpus_mlm"},
                                  "model": {"gpt": {}}}, spec_pb2.JobSpec())
    with pytest.raises(errors.InvalidArgument, match="bert"):
        check_spec(spec)
