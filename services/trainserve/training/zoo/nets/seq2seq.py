"""LSTM encoder-decoder (see `zoo.seq2seq`). Tokens in and out are class indices `0..V-1`; the
decoder's first input is an extra begin-of-sequence token `V`."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class Seq2Seq(nn.Module):
    def __init__(self, vocab: int, out_len: int, embedding_dim: int, hidden: int, layers: int,
                 attention: bool, score: str = "additive"):
        super().__init__()
        self.vocab, self.out_len, self.attends, self.score = vocab, out_len, attention, score
        self.bos = vocab
        self.src_embed = nn.Embedding(vocab, embedding_dim)
        self.tgt_embed = nn.Embedding(vocab + 1, embedding_dim)
        self.encoder = nn.LSTM(embedding_dim, hidden, layers, batch_first=True)
        self.decoder = nn.LSTM(embedding_dim, hidden, layers, batch_first=True)
        if attention:
            if score == "additive":
                self.att_q = nn.Linear(hidden, hidden, bias=False)
                self.att_k = nn.Linear(hidden, hidden)
                self.att_v = nn.Linear(hidden, 1, bias=False)
            self.combine = nn.Linear(2 * hidden, hidden)
        self.head = nn.Linear(hidden, vocab)

    def encode(self, src: torch.Tensor):
        """`src (N, S)` token ids -> encoder states `(N, S, H)` and the final `(h, c)`."""
        states, final = self.encoder(self.src_embed(src.long()))
        return states, final

    def _attend(self, query: torch.Tensor, states: torch.Tensor):
        """Context vectors `(N, L, H)` for decoder states `query (N, L, H)`, and the weights
        `(N, L, S)` that made them (each decoder step's row sums to 1 over the encoder)."""
        if self.score == "additive":
            scores = self.att_v(torch.tanh(self.att_q(query).unsqueeze(2)
                                           + self.att_k(states).unsqueeze(1))).squeeze(-1)
        else:
            scores = query @ states.transpose(1, 2) / math.sqrt(query.shape[-1])
        weights = torch.softmax(scores, dim=-1)
        return weights @ states, weights  # (N, L, S) @ (N, S, H)

    def _logits(self, dec: torch.Tensor, states: torch.Tensor):
        """Logits `(N, L, V)` and the attention weights `(N, L, S)` (None without attention)."""
        weights = None
        if self.attends:
            context, weights = self._attend(dec, states)
            dec = torch.tanh(self.combine(torch.cat([dec, context], -1)))
        return self.head(dec), weights

    def forward(self, src: torch.Tensor, tgt: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher forcing with `tgt (N, L)`: logits `(N, L, V)`, step t fed `tgt[:, t-1]` (BOS
        at step 0). Without `tgt`: greedy decoding of `out_len` tokens, ids `(N, out_len)`."""
        if tgt is None:
            return self.greedy(src)
        states, final = self.encode(src)
        prev = torch.cat([torch.full_like(tgt[:, :1], self.bos), tgt[:, :-1]], dim=1)
        dec, _ = self.decoder(self.tgt_embed(prev.long()), final)
        return self._logits(dec, states)[0]

    @torch.no_grad()
    def greedy(self, src: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """Greedy decoding: each step is fed the previous step's most likely token."""
        return self._decode(src, steps)[0]

    @torch.no_grad()
    def attention(self, src: torch.Tensor) -> list[torch.Tensor]:
        """The attention weights of greedy decoding (what `greedy` attends to): one
        `(N, 1, out_len, S)` map (one layer, one head: decoder steps down, encoder positions
        across, each row summing to 1); an empty list when the model has no attention."""
        if not self.attends:
            return []
        return [self._decode(src)[1].unsqueeze(1)]

    def _decode(self, src: torch.Tensor, steps: int | None = None):
        """Greedy tokens `(N, steps)` and, with attention, the weights `(N, steps, S)`."""
        states, hc = self.encode(src)
        tok = torch.full((len(src), 1), self.bos, dtype=torch.long, device=src.device)
        out, maps = [], []
        for _ in range(steps or self.out_len):
            dec, hc = self.decoder(self.tgt_embed(tok), hc)
            logits, weights = self._logits(dec, states)
            tok = logits.argmax(-1)
            out.append(tok)
            maps.append(weights)
        tokens = torch.cat(out, dim=1) if out else tok[:, :0]
        return tokens, (torch.cat(maps, dim=1) if self.attends and maps else None)
