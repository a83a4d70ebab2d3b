"""The GAN module: `generator` (z -> flattened sample) and `discriminator` (sample -> logit).

`forward(x)` is the discriminator's logit `(N, 1)` for samples `x` `(N, *input_shape)`;
`generate(z)` maps latent codes `(N, latent_dim)` to samples `(N, *input_shape)`;
`sample(n, generator=None)` draws z ~ N(0, I) (from the given `torch.Generator`, else the
global RNG) and generates. Samples are in the network's (normalized) input space.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from trainserve.training.activations import NO_ACTIVATION, make_activation


def gan_stack(widths, activation: str, *, batch_norm: bool = False,
              output_activation: str = NO_ACTIVATION) -> nn.Sequential:
    """Linear layers through `widths` ([in, h1, ..., out]); each hidden layer is followed by
    batch norm (when `batch_norm`) and `activation`, the output layer by `output_activation`
    unless it is "none". Names as `zoo.autoencoder_net.mlp_stack` (fc1, act1, ...)."""
    layers, last = [], len(widths) - 1
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]), start=1):
        layers.append((f"fc{i}", nn.Linear(a, b)))
        if i < last:
            if batch_norm:
                layers.append((f"bn{i}", nn.BatchNorm1d(b)))
            layers.append((f"act{i}", make_activation(activation)))
    if output_activation != NO_ACTIVATION:
        layers.append(("out_act", make_activation(output_activation)))
    return nn.Sequential(OrderedDict(layers))


class GAN(nn.Module):
    def __init__(self, msg, input_shape):
        super().__init__()
        self.input_shape = tuple(int(d) for d in input_shape)
        self.latent_dim = int(msg.latent_dim)
        features = math.prod(self.input_shape)
        # Artifacts saved before output_activation existed have it unset: linear.
        output = msg.output_activation or NO_ACTIVATION
        self.generator = gan_stack([self.latent_dim, *msg.generator_hidden, features],
                                   msg.activation, batch_norm=msg.generator_batch_norm,
                                   output_activation=output)
        self.discriminator = gan_stack([features, *msg.discriminator_hidden, 1],
                                       msg.discriminator_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.discriminator(x.flatten(1))

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z).reshape(len(z), *self.input_shape)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator)
        return self.generate(z.to(device))
