"""A small BERT-style encoder (see `zoo.bert`): token ids in, a masked-language-model head
(`(N, T, V)` logits) or a [CLS] classification head (`(N, C)` logits) out.

Parameter names: `encoder.*` (embeddings, layers, final norm) is what a fine-tuning job loads
from a pre-trained version through `model.transfer`; `mlm_head.*` and `classifier.*` are the
task heads, so a pre-trained model's head never lands on a classifier (names differ).
"""
from __future__ import annotations

import torch
from torch import nn

from trainserve.training.datasets.tokenizer import PAD


class EncoderLayer(nn.Module):
    """Pre-norm: x + attn(ln(x)), then x + ff(ln(x))."""

    def __init__(self, d_model: int, heads: int, feedforward: int, dropout: float):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.ff = nn.Sequential(nn.Linear(d_model, feedforward), nn.GELU(),
                                nn.Linear(feedforward, d_model), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, pad: torch.Tensor, need_weights: bool = False):
        """`x` `(N, T, d)`, `pad` `(N, T)` True at padding -> `(x, weights)`; `weights`
        `(N, heads, T, T)` (rows: queries, sum to 1 over the keys) when asked, else None."""
        h = self.ln1(x)
        out, weights = self.attn(h, h, h, key_padding_mask=pad, need_weights=need_weights,
                                 average_attn_weights=False)
        x = x + self.drop(out)
        return x + self.ff(self.ln2(x)), weights


class BERTEncoder(nn.Module):
    def __init__(self, vocab: int, max_length: int, d_model: int, heads: int, layers: int,
                 feedforward: int, dropout: float):
        super().__init__()
        self.max_length = max_length
        self.tok = nn.Embedding(vocab, d_model, padding_idx=PAD)
        self.pos = nn.Embedding(max_length, d_model)
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(EncoderLayer(d_model, heads, feedforward, dropout)
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, ids: torch.Tensor, need_weights: bool = False):
        """Token ids `(N, T)` -> hidden states `(N, T, d)` and the per-layer attention
        weights (a list of `(N, heads, T, T)`, empty unless `need_weights`)."""
        ids = ids.long()
        t = ids.shape[1]
        if t > self.max_length:
            raise ValueError(f"{t} tokens exceed max_length {self.max_length}")
        pad = ids == PAD
        pad[:, 0] = False  # position 0 ([CLS]) always attends: no row is all padding (NaN)
        x = self.drop(self.tok(ids) + self.pos(torch.arange(t, device=ids.device)))
        maps = []
        for layer in self.layers:
            x, w = layer(x, pad, need_weights)
            if need_weights:
                maps.append(w)
        return self.norm(x), maps


def cls_pool(hidden: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The [CLS] position's hidden state `(N, d)`."""
    return hidden[:, 0]


def mean_pool(hidden: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The mean hidden state over the non-padding positions ([CLS] counts, so never empty)."""
    keep = (ids != PAD).to(hidden.dtype)
    keep[:, 0] = 1.0
    keep = keep.unsqueeze(-1)
    return (hidden * keep).sum(1) / keep.sum(1)


# `BERTSpec.pooling` -> how a classifier reduces the sequence to one vector.
POOLINGS = {"cls": cls_pool, "mean": mean_pool}


class BERT(nn.Module):
    """`num_classes` 0: masked-language-model logits over the vocabulary at every position;
    else classification logits from the sequence pooled by `pooling` (a `POOLINGS` name)."""

    def __init__(self, vocab: int, max_length: int, d_model: int, heads: int, layers: int,
                 feedforward: int, dropout: float = 0.0, num_classes: int = 0,
                 pooling: str = "cls"):
        super().__init__()
        self.encoder = BERTEncoder(vocab, max_length, d_model, heads, layers, feedforward,
                                   dropout)
        self.pool = POOLINGS[pooling]
        if num_classes:
            self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(d_model, num_classes))
        else:
            self.mlm_head = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(),
                                          nn.LayerNorm(d_model), nn.Linear(d_model, vocab))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.encoder(ids)
        if hasattr(self, "classifier"):
            return self.classifier(self.pool(hidden, ids.long()))
        return self.mlm_head(hidden)

    @torch.no_grad()
    def attention(self, ids: torch.Tensor) -> list[torch.Tensor]:
        """The attention weights of every layer for token ids `(N, T)`: a list of
        `(N, heads, T, T)`, each query's row summing to 1 over the keys (0 on padding)."""
        return self.encoder(ids, need_weights=True)[1]
