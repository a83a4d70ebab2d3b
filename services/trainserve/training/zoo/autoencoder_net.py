"""The autoencoder network (imports torch); the spec side is `zoo.autoencoder`."""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from trainserve.training.activations import make_activation

_EPS = 1e-6  # keeps the KL sparsity penalty finite when a unit is always off or always on


def mlp_stack(widths, activation: str, last_activation: bool):
    """Linear layers through `widths` ([in, h1, ..., out]) with `activation` between them
    (and after the last one when `last_activation`)."""
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]), start=1):
        layers.append((f"fc{i}", nn.Linear(a, b)))
        if i < len(widths) - 1 or last_activation:
            layers.append((f"act{i}", make_activation(activation)))
    return nn.Sequential(OrderedDict(layers))


class Autoencoder(nn.Module):
    """Encoder `[F] -> hidden -> latent`, decoder the mirror image `-> [F]` reshaped to
    `input_shape`. See `zoo.autoencoder` for the kinds and their penalties."""

    def __init__(self, msg, input_shape):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.num_features = math.prod(self.input_shape)
        self.kind, self.latent_dim = msg.kind, msg.latent_dim
        self.noise, self.beta = msg.noise, msg.beta
        self.sparsity, self.sparsity_weight = msg.sparsity, msg.sparsity_weight
        self.sparsity_target = msg.sparsity_target
        hidden = list(msg.hidden)
        self.encoder = mlp_stack([self.num_features, *hidden], msg.activation, True)
        self.code = nn.Linear(hidden[-1], msg.latent_dim)
        if self.kind == "variational":
            self.logvar = nn.Linear(hidden[-1], msg.latent_dim)
        # l1 sparsity acts on a code that can be exactly zero; kl needs a code in (0, 1).
        self.code_act = {"l1": make_activation(msg.activation), "kl": nn.Sigmoid()}.get(
            self.sparsity if self.kind == "sparse" else "", nn.Identity())
        decoder = mlp_stack([msg.latent_dim, *reversed(hidden)], msg.activation, True)
        decoder.add_module("out", nn.Linear(hidden[0], self.num_features))
        self.decoder = decoder

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The latent code `(N, latent_dim)` of inputs `(N, *input_shape)`; the VAE: the mean."""
        return self._encode(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstructions `(N, *input_shape)` of codes `z` `(N, latent_dim)`."""
        return self.decoder(z).reshape(len(z), *self.input_shape)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """VAE only: `n` new inputs `(n, *input_shape)`, decoded from the prior N(0, I)."""
        if self.kind != "variational":
            raise ValueError(f"only a variational autoencoder samples; this one is {self.kind!r}")
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator).to(device)
        return self.decode(z)

    def forward(self, x: torch.Tensor, return_penalty: bool = False):
        """The reconstruction of `x`; with `return_penalty`, also the per-sample penalty `(N,)`
        added to the reconstruction MSE (zero for plain and denoising autoencoders)."""
        if self.training and self.kind == "denoising":
            x = x + self.noise * torch.randn_like(x)  # seeded per rank and epoch by the loop
        code, logvar = self._encode(x)
        z = code
        if self.training and self.kind == "variational":
            z = code + torch.randn_like(code) * torch.exp(0.5 * logvar)  # reparameterization
        recon = self.decode(z)
        if not return_penalty:
            return recon
        return recon, self._penalty(code, logvar)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.encoder(x.reshape(len(x), -1))
        logvar = self.logvar(h) if self.kind == "variational" else None
        return self.code_act(self.code(h)), logvar

    def _penalty(self, code: torch.Tensor, logvar: torch.Tensor | None) -> torch.Tensor:
        if self.kind == "variational":
            kl = -0.5 * (1 + logvar - code.pow(2) - logvar.exp()).sum(dim=1)
            # Divided by the input size like the summed squared error, so the loss stays the
            # ELBO (up to that scale) while reading like a per-value MSE.
            return self.beta * kl / self.num_features
        if self.kind == "sparse" and self.sparsity == "l1":
            return self.sparsity_weight * code.abs().sum(dim=1)
        if self.kind == "sparse":
            rho, rho_hat = self.sparsity_target, code.mean(dim=0).clamp(_EPS, 1 - _EPS)
            kl = (rho * torch.log(rho / rho_hat)
                  + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()
            # A batch-level penalty, shared equally so the loop's per-sample sum is unchanged.
            return (self.sparsity_weight * kl).expand(len(code))
        return code.new_zeros(len(code))
