"""Attention maps for the plots (`trainserve.jobs.plots_attention`): saved with a job's
`evaluation.npz` (`training.evaluation`) when its network can report its attention weights
(a module with an `attention(x)` method returning one `(N, heads, T, T)` tensor per layer:
`model.bert`).

Arrays: `attention_weights` [layers, heads, n, n] float32 for the first sample of the final
split, its padding cut (n = its tokens, [CLS] included; row i: how query token i spreads its
attention over the keys, summing to 1), and `attention_tokens` [n] their text (`[CLS]`, the
characters). Costs one forward pass of one sample.
"""
from __future__ import annotations

import numpy as np

from trainserve.training.datasets import tokenizer


def attention_arrays(module, x) -> dict[str, np.ndarray]:
    """The arrays above for `module` and the final split's inputs `x`; empty when the
    module keeps no attention weights or there is no sample."""
    if not callable(getattr(module, "attention", None)) or len(x) == 0:
        return {}
    ids = x[:1]
    n = int((ids[0].long() != tokenizer.PAD).sum()) or 1
    maps = module.attention(ids[:, :n])
    weights = np.stack([m[0].detach().float().cpu().numpy() for m in maps])
    vocab = tokenizer.vocabulary()
    tokens = np.array([vocab[int(i)] for i in ids[0, :n]], dtype=np.str_)
    return {"attention_weights": weights.astype(np.float32), "attention_tokens": tokens}


def with_attention(arrays: dict | None, task: str, module, x) -> dict | None:
    """`arrays` (a task's `evaluation.npz` content, or None when the task saves none) with
    the attention arrays added; a task that saves nothing gets a `kind` of its own."""
    extra = attention_arrays(module, x)
    if not extra:
        return arrays
    return (arrays if arrays is not None else {"kind": np.array(task)}) | extra
