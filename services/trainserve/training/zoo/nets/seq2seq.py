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
        self.vocab, self.out_len, self.attention, self.score = vocab, out_len, attention, score
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

    def _attend(self, query: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """Context vectors `(N, L, H)` for decoder states `query (N, L, H)`."""
        if self.score == "additive":
            scores = self.att_v(torch.tanh(self.att_q(query).unsqueeze(2)
                                           + self.att_k(states).unsqueeze(1))).squeeze(-1)
        else:
            scores = query @ states.transpose(1, 2) / math.sqrt(query.shape[-1])
        return torch.softmax(scores, dim=-1) @ states  # (N, L, S) @ (N, S, H)

    def _logits(self, dec: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        if self.attention:
            dec = torch.tanh(self.combine(torch.cat([dec, self._attend(dec, states)], -1)))
        return self.head(dec)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher forcing with `tgt (N, L)`: logits `(N, L, V)`, step t fed `tgt[:, t-1]` (BOS
        at step 0). Without `tgt`: greedy decoding of `out_len` tokens, ids `(N, out_len)`."""
        if tgt is None:
            return self.greedy(src)
        states, final = self.encode(src)
        prev = torch.cat([torch.full_like(tgt[:, :1], self.bos), tgt[:, :-1]], dim=1)
        dec, _ = self.decoder(self.tgt_embed(prev.long()), final)
        return self._logits(dec, states)

    @torch.no_grad()
    def greedy(self, src: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """Greedy decoding: each step is fed the previous step's most likely token."""
        states, hc = self.encode(src)
        tok = torch.full((len(src), 1), self.bos, dtype=torch.long, device=src.device)
        out = []
        for _ in range(steps or self.out_len):
            dec, hc = self.decoder(self.tgt_embed(tok), hc)
            tok = self._logits(dec, states).argmax(-1)
            out.append(tok)
        return torch.cat(out, dim=1) if out else tok[:, :0]
