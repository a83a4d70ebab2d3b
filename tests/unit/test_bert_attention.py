"""BERT's attention maps: the arrays saved with evaluation.npz and the plot drawn from them."""
import numpy as np
import torch

from trainserve.jobs import plots
from trainserve.jobs.plots_attention import ATTENTION, attention_plots
from trainserve.training.datasets import tokenizer
from trainserve.training.attention import attention_arrays, with_attention
from trainserve.training.zoo.nets.bert import BERT


def _net():
    torch.manual_seed(0)
    return BERT(tokenizer.vocab_size(), 16, 16, 2, 3, 32, 0.0, 3).eval()


def _x(texts=("hello world", "abc")):
    return torch.from_numpy(tokenizer.encode_batch(texts, 16)).float()


def test_arrays_are_the_first_sample_without_padding():
    arrays = attention_arrays(_net(), _x())
    w = arrays["attention_weights"]
    assert w.shape == (3, 2, 12, 12) and w.dtype == np.float32  # [CLS] + 11 characters
    assert np.allclose(w.sum(-1), 1.0, atol=1e-5)
    assert arrays["attention_tokens"][0] == "[CLS]"
    assert "".join(arrays["attention_tokens"][1:]) == "hello world"


def test_networks_without_attention_add_nothing():
    mlp = torch.nn.Linear(4, 2)
    assert attention_arrays(mlp, torch.zeros(3, 4)) == {}
    assert with_attention(None, "masked_lm", mlp, torch.zeros(3, 4)) is None
    assert with_attention({"kind": "x"}, "classification", mlp, torch.zeros(3, 4)) == {"kind": "x"}


def test_a_task_without_plots_gets_a_kind():
    arrays = with_attention(None, "masked_lm", _net(), _x())
    assert str(arrays["kind"]) == "masked_lm" and "attention_weights" in arrays


def test_plot_is_drawn_and_registered(tmp_path):
    arrays = with_attention(None, "masked_lm", _net(), _x())
    paths = attention_plots(arrays, tmp_path, "t")
    assert [p.name for p in paths] == [ATTENTION]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert attention_plots({"kind": np.array("classification")}, tmp_path) == []
    drawn = plots.evaluation_plots(arrays, tmp_path / "all", "t")
    assert ATTENTION in [p.name for p in drawn]
