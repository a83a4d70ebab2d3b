"""The GAN module: `generator` (z -> flattened sample) and `discriminator` (sample -> logit).

`forward(x)` is the discriminator's logit `(N, 1)` for samples `x` `(N, *input_shape)`;
`generate(z)` maps latent codes `(N, latent_dim)` to samples `(N, *input_shape)`;
`sample(n, generator=None)` draws z ~ N(0, I) (from the given `torch.Generator`, else the
global RNG) and generates. Samples are in the network's (normalized) input space.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from trainserve.train.zoo.autoencoder import mlp_stack


class GAN(nn.Module):
    def __init__(self, msg, input_shape):
        super().__init__()
        self.input_shape = tuple(int(d) for d in input_shape)
        self.latent_dim = int(msg.latent_dim)
        features = math.prod(self.input_shape)
        self.generator = mlp_stack([self.latent_dim, *msg.generator_hidden, features],
                                   msg.activation, last_activation=False)
        self.discriminator = mlp_stack([features, *msg.discriminator_hidden, 1],
                                       msg.discriminator_activation, last_activation=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.discriminator(x.flatten(1))

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z).reshape(len(z), *self.input_shape)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator)
        return self.generate(z.to(device))
