"""Recurrent network with a head on the final hidden state."""
from __future__ import annotations

import torch
from torch import nn

_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class RecurrentNet(nn.Module):
    """`(N, T, F) -> (N, outputs)` from the last layer's final state (both directions)."""

    def __init__(self, cell: str, features: int, hidden_size: int, num_layers: int,
                 bidirectional: bool, dropout: float, outputs: int,
                 activation: str = "tanh"):
        super().__init__()
        self.directions = 2 if bidirectional else 1
        extra = {"nonlinearity": activation} if cell == "rnn" else {}
        self.rnn = _CELLS[cell](features, hidden_size, num_layers, batch_first=True,
                                dropout=dropout if num_layers > 1 else 0.0,
                                bidirectional=bidirectional, **extra)
        self.head = nn.Linear(hidden_size * self.directions, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, state = self.rnn(x)
        h = state[0] if isinstance(state, tuple) else state  # an LSTM's state is (h, c)
        # h: (layers * directions, N, H); the last layer's directions are the last entries.
        last = h[-self.directions:].transpose(0, 1).reshape(x.shape[0], -1)  # traceable
        return self.head(last)
