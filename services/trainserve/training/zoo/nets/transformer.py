"""Transformer encoder over tokens from sequences or tabular features."""
from __future__ import annotations

import math

import torch
from torch import nn

from trainserve.training.activations import make_activation

TOKEN_INIT_STD = 0.02  # CLS token and learned positions, as in BERT/ViT


def sinusoidal_encoding(length: int, d_model: int) -> torch.Tensor:
    """The fixed encoding of Vaswani et al.: `(length, d_model)`, sin on even, cos on odd dims."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32)
                     * (-math.log(10000.0) / d_model))
    pe = torch.zeros(length, d_model)
    pe[:, 0::2] = torch.sin(position * freq)
    pe[:, 1::2] = torch.cos(position * freq[: d_model // 2])
    return pe


class FeatureTokens(nn.Module):
    """Tabular `(N, F) -> (N, F, d)`: feature j becomes `x_j * w_j + b_j`."""

    def __init__(self, features: int, d_model: int):
        super().__init__()
        # Named feature_* so that `training.init` leaves them alone: "fan in" means nothing here.
        self.feature_weight = nn.Parameter(torch.randn(features, d_model) / math.sqrt(d_model))
        self.feature_bias = nn.Parameter(torch.zeros(features, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, None] * self.feature_weight + self.feature_bias


class TransformerNet(nn.Module):
    """`(N, T, F)` or `(N, F)` -> `(N, outputs)`; see the architecture module for the design."""

    def __init__(self, input_shape: tuple[int, ...], outputs: int, *, d_model: int,
                 num_heads: int, num_layers: int, dim_feedforward: int, dropout: float,
                 positional: str, pooling: str, activation: str = "gelu"):
        super().__init__()
        tokens = input_shape[0]
        self.tokens = (nn.Linear(input_shape[1], d_model) if len(input_shape) == 2
                       else FeatureTokens(tokens, d_model))
        self.pooling = pooling
        if pooling == "cls":
            self.cls = nn.Parameter(torch.randn(1, 1, d_model) * TOKEN_INIT_STD)
            tokens += 1
        if positional == "learned":
            self.position = nn.Parameter(torch.randn(tokens, d_model) * TOKEN_INIT_STD)
        else:  # a function of the length: not saved with the weights
            self.register_buffer("position", sinusoidal_encoding(tokens, d_model),
                                 persistent=False)
        layer = nn.TransformerEncoderLayer(d_model, num_heads, dim_feedforward, dropout,
                                           activation=make_activation(activation),
                                           batch_first=True, norm_first=True)
        # Pre-norm layers train stably without warm-up; they need a final norm.
        self.encoder = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(d_model),
                                             enable_nested_tensor=False)
        self.head = nn.Linear(d_model, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(self._embed(x))
        return self.head(z[:, 0] if self.pooling == "cls" else z.mean(dim=1))

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's input: the tokens, the CLS token first if pooled by it, positions."""
        z = self.tokens(x)
        if self.pooling == "cls":
            z = torch.cat([self.cls.expand(len(z), -1, -1), z], dim=1)
        return z + self.position

    @torch.no_grad()
    def attention(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The self-attention weights of every layer for inputs `x`: a list of
        `(N, heads, T, T)` (T tokens, the CLS token first when pooled by it), each query's
        row summing to 1. `nn.TransformerEncoderLayer` keeps no weights, so each layer's
        attention is asked again of its own (pre-norm) input; costs one more pass."""
        z, maps = self._embed(x), []
        for layer in self.encoder.layers:
            h = layer.norm1(z)
            maps.append(layer.self_attn(h, h, h, need_weights=True,
                                        average_attn_weights=False)[1])
            z = layer(z)
        return maps
