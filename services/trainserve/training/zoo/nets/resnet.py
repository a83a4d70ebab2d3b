"""Basic-block ResNet for small images."""
from __future__ import annotations

import torch
from torch import nn

from trainserve.training.activations import make_activation


class BasicBlock(nn.Module):
    """conv3x3 - BN - act - conv3x3 - BN, plus the input (projected by a 1x1 conv and BN when
    the stride or the channel count changes), then act (ReLU in the original)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, activation: str = "relu"):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.act1 = make_activation(activation)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(c_out))
        self.act2 = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(out + self.shortcut(x))


class ResNet(nn.Module):
    """`(N, C, H, W) -> (N, outputs)`: stem, stages of `blocks` blocks, average pool, head."""

    def __init__(self, in_channels: int, channels: list[int], blocks: int, outputs: int,
                 dropout: float = 0.0, activation: str = "relu"):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels[0]), make_activation(activation))
        stages, c_in = [], channels[0]
        for i, c_out in enumerate(channels):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(*[BasicBlock(c_in if b == 0 else c_out, c_out,
                                                     stride if b == 0 else 1, activation)
                                          for b in range(blocks)]))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(c_in, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.pool(self.stages(self.stem(x)))))
