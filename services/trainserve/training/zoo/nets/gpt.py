"""A small decoder-only transformer (see `zoo.gpt`)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Block(nn.Module):
    def __init__(self, d_model: int, heads: int, dropout: float):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(),
                                 nn.Linear(4 * d_model, d_model), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, need_weights: bool = False):
        """`(x, weights)`: `weights` `(N, heads, L, L)` when asked, else None (training asks
        never, so attention keeps its fused kernel)."""
        h = self.ln1(x)
        out, weights = self.attn(h, h, h, attn_mask=mask, need_weights=need_weights,
                                 average_attn_weights=False)
        x = x + out
        return x + self.mlp(self.ln2(x)), weights


class GPT(nn.Module):
    def __init__(self, vocab: int, context: int, d_model: int, heads: int, layers: int,
                 dropout: float = 0.0):
        super().__init__()
        self.vocab, self.context = vocab, context
        self.tok = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(context, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, heads, dropout) for _ in range(layers))
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids `(N, L)`, `L <= context` -> next-token logits `(N, L, V)`; position t sees
        positions 0..t only (causal mask)."""
        return self._run(ids)[0]

    def _run(self, ids: torch.Tensor, need_weights: bool = False):
        ids = ids.long()
        n = ids.shape[1]
        if n > self.context:
            raise ValueError(f"{n} tokens exceed the context length {self.context}")
        x = self.drop(self.tok(ids) + self.pos(torch.arange(n, device=ids.device)))
        mask = torch.triu(torch.ones(n, n, dtype=torch.bool, device=ids.device), 1)
        maps = []
        for block in self.blocks:
            x, weights = block(x, mask, need_weights)
            maps.append(weights)
        return self.head(self.ln(x)), maps

    @torch.no_grad()
    def attention(self, ids: torch.Tensor) -> list[torch.Tensor]:
        """The attention weights of every block for token ids `(N, L)`: a list of
        `(N, heads, L, L)`, query t's row spread over keys 0..t (0 above the diagonal) and
        summing to 1."""
        return self._run(ids, need_weights=True)[1]

    @torch.no_grad()
    def generate(self, prompt_ids, n: int, temperature: float = 1.0,
                 generator: torch.Generator | None = None,
                 top_k: int | None = None) -> torch.Tensor:
        """Sample `n` tokens after `prompt_ids` (`(L,)` or `(N, L)`, L >= 1); the last `context`
        tokens condition each step. Temperature 0: greedy. `top_k`: sample among the k most
        likely tokens only. Returns the prompt plus the `n` new tokens, shaped like the
        prompt."""
        ids = torch.as_tensor(prompt_ids, dtype=torch.long)
        single = ids.dim() == 1
        ids = ids[None] if single else ids
        was_training = self.training
        self.eval()
        for _ in range(n):
            logits = self(ids[:, -self.context:])[:, -1]
            if top_k is not None and top_k < logits.shape[-1]:
                kth = logits.topk(top_k, dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            if temperature <= 0:
                nxt = logits.argmax(-1, keepdim=True)
            else:
                probs = F.softmax(logits / temperature, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator)
            ids = torch.cat([ids, nxt], dim=1)
        self.train(was_training)
        return ids[0] if single else ids
