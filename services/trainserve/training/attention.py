"""Attention maps for the plots (`trainserve.jobs.plots_attention`): saved with a job's
`evaluation.npz` (`training.evaluation`) when its network reports its attention weights (an
`attention(x)` method returning one `(N, heads, queries, keys)` tensor per layer, empty when
it has none: `model.bert`, `model.gpt`, `model.seq2seq` with attention, `model.transformer`).

Arrays, for S examples of the final split:
- `attention_weights` [S, layers, heads, queries, keys] float32: row q is how query q spreads
  its attention over the keys (summing to 1; a GPT's row q is 0 right of the diagonal);
- `attention_queries` [S, queries] and `attention_keys` [S, keys]: the text of each axis;
- `attention_axes` [2]: what the rows and the columns are.

What each network shows (`SAMPLERS`, by its class): BERT its first sample's tokens ([CLS]
and the characters, padding cut); GPT the first `MAX_GPT_CHARACTERS` characters of its
first sample (causal: the same map as over the whole window); seq2seq `NUM_EXAMPLES`
examples, greedy decoding's steps (the output tokens) over the encoder's positions (the input
tokens); the transformer encoder its first sample's tokens (the CLS token first when pooled by
it). A map over more than `MAX_TOKENS` positions, and layers or heads past `MAX_LAYERS` and
`MAX_HEADS`, are not saved. Costs one forward pass of at most `NUM_EXAMPLES` samples, once,
at the end of training.

Jobs trained before this layout saved one BERT sample as `attention_weights` [layers, heads,
n, n] and `attention_tokens` [n]; the plot reads both.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from trainserve.training.datasets import tokenizer

MAX_TOKENS = 128           # queries or keys of a saved map
MAX_LAYERS, MAX_HEADS = 8, 8
MAX_GPT_CHARACTERS = 48    # labelled on the plot's axes
NUM_EXAMPLES = 3           # seq2seq examples side by side
TOKEN_AXES = ("queries", "keys")


@dataclass(frozen=True)
class Examples:
    """What one network's attention is asked of, and the text of the maps' axes."""
    x: object                        # the network's input, a batch of S examples
    queries: list[list[str]]         # per example
    keys: list[list[str]]
    axes: tuple[str, str] = TOKEN_AXES


def attention_arrays(module, x, info) -> dict[str, np.ndarray]:
    """The arrays above for `module`, the final split's inputs `x` and the dataset's `info`;
    empty when the module keeps no attention weights, or there is no sample."""
    sampler = SAMPLERS.get(type(module).__name__)
    if sampler is None or len(x) == 0:
        return {}
    examples = sampler(module, x, info)
    if examples is None:
        return {}
    import torch
    with torch.no_grad():
        maps = module.attention(examples.x)
    if not maps:
        return {}
    weights = torch.stack(maps[:MAX_LAYERS], dim=1)[:, :, :MAX_HEADS]
    return {"attention_weights": weights.detach().float().cpu().numpy(),
            "attention_queries": np.array(examples.queries, dtype=np.str_),
            "attention_keys": np.array(examples.keys, dtype=np.str_),
            "attention_axes": np.array(examples.axes, dtype=np.str_)}


def with_attention(arrays: dict | None, info, module, x) -> dict | None:
    """`arrays` (a task's `evaluation.npz` content, or None when the task saves none) with
    the attention arrays added; a task that saves nothing gets a `kind` of its own (the
    task's name: seq2seq, language_model, masked_lm)."""
    extra = attention_arrays(module, x, info)
    if not extra:
        return arrays
    return (arrays if arrays is not None else {"kind": np.array(info.task)}) | extra


# ------------------------------------------------------------------ one sampler per network

def _bert(module, x, info) -> Examples | None:
    ids = x[:1].long()
    n = int((ids[0] != tokenizer.PAD).sum()) or 1
    if n > MAX_TOKENS:
        return None
    vocab = tokenizer.vocabulary()
    tokens = [vocab[int(i)] for i in ids[0, :n]]
    return Examples(ids[:, :n], [tokens], [tokens])


def _gpt(module, x, info) -> Examples:
    ids = x[:1, :MAX_GPT_CHARACTERS].long()
    chars = [str(info.class_names[int(i)]) for i in ids[0]]
    return Examples(ids, [chars], [chars], ("queries (characters)", "keys (characters)"))


def _seq2seq(module, x, info) -> Examples | None:
    src = x[:NUM_EXAMPLES].long()
    if not module.attends or src.shape[1] > MAX_TOKENS or module.out_len > MAX_TOKENS:
        return None
    out = module.greedy(src)
    names = [str(c) for c in info.class_names]
    return Examples(src, [[names[int(i)] for i in row] for row in out],
                    [[names[int(i)] for i in row] for row in src],
                    ("decoder steps (output tokens)", "encoder positions (input tokens)"))


def _transformer(module, x, info) -> Examples | None:
    letter = "t" if len(info.input_shape) == 2 else "x"
    tokens = ["[CLS]"] * (module.pooling == "cls") + [
        f"{letter}{i + 1}" for i in range(info.input_shape[0])]
    if len(tokens) > MAX_TOKENS:
        return None
    return Examples(x[:1].float(), [tokens], [tokens])


# The networks that report attention, by class name, and how their examples are picked.
SAMPLERS: dict[str, Callable[..., Examples | None]] = {
    "BERT": _bert, "GPT": _gpt, "Seq2Seq": _seq2seq, "TransformerNet": _transformer}
