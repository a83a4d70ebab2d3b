"""Attention maps of every network that has them (BERT, GPT, seq2seq with attention, the
transformer encoder): the weights the nets return, the arrays saved with evaluation.npz,
and the plot drawn from them (also from the older one-sample BERT layout)."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from trainserve.jobs import plots
from trainserve.jobs.plots_attention import ATTENTION, attention_plots
from trainserve.training.attention import MAX_TOKENS, attention_arrays, with_attention
from trainserve.training.datasets import tokenizer
from trainserve.training.zoo.nets.bert import BERT
from trainserve.training.zoo.nets.gpt import GPT
from trainserve.training.zoo.nets.seq2seq import Seq2Seq
from trainserve.training.zoo.nets.transformer import TransformerNet

DIGITS = SimpleNamespace(task="seq2seq", class_names=tuple("0123456789"), input_shape=(6,))
CHARS = SimpleNamespace(task="language_model", class_names=tuple("abcdefgh "),
                        input_shape=(12,))


def _bert():
    torch.manual_seed(0)
    return BERT(tokenizer.vocab_size(), 16, 16, 2, 3, 32, 0.0, 3).eval()


def _x(texts=("hello world", "abc")):
    return torch.from_numpy(tokenizer.encode_batch(texts, 16)).float()


def _bert_info(task="masked_lm"):
    return SimpleNamespace(task=task, class_names=(), input_shape=(16,))


def _gpt():
    torch.manual_seed(0)
    return GPT(len(CHARS.class_names), 12, 16, 2, 3).eval()


def _seq2seq(attention=True, score="additive"):
    torch.manual_seed(0)
    return Seq2Seq(10, 6, 8, 16, 1, attention, score).eval()


def _transformer(shape=(5, 3), pooling="cls"):
    torch.manual_seed(0)
    return TransformerNet(shape, 2, d_model=8, num_heads=2, num_layers=2, dim_feedforward=16,
                          dropout=0.0, positional="sinusoidal", pooling=pooling).eval()


# -- the nets ------------------------------------------------------------------------------

def test_gpt_weights_are_causal_rows_summing_to_one():
    ids = torch.randint(0, 9, (2, 10))
    maps = _gpt().attention(ids)
    assert len(maps) == 3 and maps[0].shape == (2, 2, 10, 10)
    for w in maps:
        assert torch.allclose(w.sum(-1), torch.ones(2, 2, 10), atol=1e-5)
        assert float(torch.triu(w, diagonal=1).abs().max()) == 0.0  # no look ahead
        assert torch.allclose(w[:, :, 0, 0], torch.ones(2, 2))


def test_gpt_outputs_are_the_same_with_or_without_the_weights():
    net, ids = _gpt(), torch.randint(0, 9, (2, 10))
    with torch.no_grad():
        assert torch.allclose(net(ids), net._run(ids, need_weights=True)[0], atol=1e-5)


@pytest.mark.parametrize("score", ["additive", "dot"])
def test_seq2seq_weights_are_greedy_decodings_steps_over_the_source(score):
    net, src = _seq2seq(score=score), torch.randint(0, 10, (4, 6))
    maps = net.attention(src)
    assert len(maps) == 1 and maps[0].shape == (4, 1, 6, 6)  # out_len steps x 6 positions
    assert torch.allclose(maps[0].sum(-1), torch.ones(4, 1, 6), atol=1e-5)
    assert torch.equal(net.greedy(src), net(src))


def test_seq2seq_without_attention_has_no_weights():
    assert _seq2seq(attention=False).attention(torch.zeros(2, 6, dtype=torch.long)) == []


@pytest.mark.parametrize("pooling,tokens", [("cls", 6), ("mean", 5)])
def test_transformer_weights_per_layer_and_head(pooling, tokens):
    net, x = _transformer(pooling=pooling), torch.randn(3, 5, 3)
    maps = net.attention(x)
    assert len(maps) == 2 and maps[0].shape == (3, 2, tokens, tokens)
    for w in maps:
        assert torch.allclose(w.sum(-1), torch.ones(3, 2, tokens), atol=1e-5)
    with torch.no_grad():  # the layers the weights were asked of are the forward pass's
        z = net._embed(x)
        for layer in net.encoder.layers:
            z = layer(z)
        assert torch.allclose(net.encoder(net._embed(x)), net.encoder.norm(z), atol=1e-5)


# -- the arrays saved with evaluation.npz ----------------------------------------------------

def test_bert_arrays_are_the_first_sample_without_padding():
    arrays = attention_arrays(_bert(), _x(), _bert_info())
    w = arrays["attention_weights"]
    assert w.shape == (1, 3, 2, 12, 12) and w.dtype == np.float32  # [CLS] + 11 characters
    assert np.allclose(w.sum(-1), 1.0, atol=1e-5)
    assert arrays["attention_queries"][0, 0] == "[CLS]"
    assert "".join(arrays["attention_keys"][0, 1:]) == "hello world"


def test_gpt_arrays_are_the_first_samples_characters():
    x = torch.tensor([[0, 1, 2, 8, 3, 4, 5, 6, 7, 0, 1, 2]] * 2)
    arrays = attention_arrays(_gpt(), x, CHARS)
    assert arrays["attention_weights"].shape == (1, 3, 2, 12, 12)
    assert "".join(arrays["attention_keys"][0]) == "abc defghabc"
    assert tuple(arrays["attention_axes"]) == ("queries (characters)", "keys (characters)")


def test_seq2seq_arrays_show_a_few_examples_with_their_tokens():
    net, src = _seq2seq(), torch.randint(0, 10, (8, 6))
    arrays = attention_arrays(net, src, DIGITS)
    assert arrays["attention_weights"].shape == (3, 1, 1, 6, 6)
    assert arrays["attention_keys"].tolist() == [[str(int(i)) for i in r] for r in src[:3]]
    assert arrays["attention_queries"].tolist() == [
        [str(int(i)) for i in r] for r in net.greedy(src[:3])]
    assert attention_arrays(_seq2seq(attention=False), src, DIGITS) == {}


def test_transformer_arrays_name_the_tokens():
    info = SimpleNamespace(task="classification", class_names=("a", "b"), input_shape=(5, 3))
    arrays = attention_arrays(_transformer(), torch.randn(4, 5, 3), info)
    assert arrays["attention_weights"].shape == (1, 2, 2, 6, 6)
    assert arrays["attention_keys"][0].tolist() == ["[CLS]", "t1", "t2", "t3", "t4", "t5"]
    long = SimpleNamespace(task="classification", class_names=("a", "b"),
                           input_shape=(MAX_TOKENS + 1,))
    net = _transformer(shape=(MAX_TOKENS + 1,), pooling="mean")
    assert attention_arrays(net, torch.randn(2, MAX_TOKENS + 1), long) == {}  # too long


def test_networks_without_attention_add_nothing():
    mlp, info = torch.nn.Linear(4, 2), _bert_info()
    assert attention_arrays(mlp, torch.zeros(3, 4), info) == {}
    assert with_attention(None, info, mlp, torch.zeros(3, 4)) is None
    assert with_attention({"kind": "x"}, info, mlp, torch.zeros(3, 4)) == {"kind": "x"}


def test_a_task_without_plots_gets_its_name_as_kind():
    arrays = with_attention(None, _bert_info(), _bert(), _x())
    assert str(arrays["kind"]) == "masked_lm" and "attention_weights" in arrays
    arrays = with_attention(None, DIGITS, _seq2seq(), torch.randint(0, 10, (4, 6)))
    assert str(arrays["kind"]) == "seq2seq"


# -- the plot ----------------------------------------------------------------------------------

def _png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("case", ["bert", "gpt", "seq2seq", "transformer"])
def test_plot_is_drawn_and_registered(tmp_path, case):
    net, x, info = {
        "bert": (_bert(), _x(), _bert_info()),
        "gpt": (_gpt(), torch.randint(0, 9, (2, 12)), CHARS),
        "seq2seq": (_seq2seq(), torch.randint(0, 10, (5, 6)), DIGITS),
        "transformer": (_transformer(), torch.randn(2, 5, 3), SimpleNamespace(
            task="no_other_plots", class_names=(), input_shape=(5, 3)))}[case]
    arrays = with_attention(None, info, net, x)
    paths = attention_plots(arrays, tmp_path, "t")
    assert [p.name for p in paths] == [ATTENTION] and _png(paths[0])
    drawn = plots.evaluation_plots(arrays, tmp_path / "all", "t")  # what the API renders
    assert ATTENTION in [p.name for p in drawn]


def test_no_plot_without_attention_arrays(tmp_path):
    assert attention_plots({"kind": np.array("classification")}, tmp_path) == []


def test_the_older_one_sample_layout_still_plots(tmp_path):
    w = np.full((2, 2, 4, 4), 0.25, np.float32)
    arrays = {"kind": np.array("masked_lm"), "attention_weights": w,
              "attention_tokens": np.array(["[CLS]", "a", "b", "c"])}
    assert _png(attention_plots(arrays, tmp_path)[0])
