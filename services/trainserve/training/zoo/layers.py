"""Layers shared by zoo architectures (imports torch)."""
from __future__ import annotations

import torch
from torch import nn


class OutputScale(nn.Module):
    """`y = x * scale + shift` with fixed (non-trained) buffers, persisted in the state dict."""

    def __init__(self, shift: float = 0.0, scale: float = 1.0):
        super().__init__()
        self.register_buffer("shift", torch.tensor(float(shift)))
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift
