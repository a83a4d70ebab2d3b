"""Autoencoders (plain, denoising, sparse, variational): fully connected, over the flattened input.

The encoder is `hidden` widths then the latent code, the decoder the mirror image back to the
input's shape. `forward(x)` returns the reconstruction; `forward(x, return_penalty=True)` also
returns the per-sample penalty the kind adds to the reconstruction loss (the reconstruction
task in `training.tasks` asks for it through the DDP wrapper, which passes keyword arguments on).
`encode(x)` is the latent code (the VAE: the posterior mean), `decode(z)` the reconstruction;
the VAE also has `sample(n, generator)`.
"""
from __future__ import annotations


from trainserve.training.activations import ACTIVATIONS
from trainserve.training.checks import check_choice, check_range, check_widths, fail
from trainserve.training.zoo import Architecture, register_architecture
from trainserve.training.zoo.mlp import MAX_LAYERS, MAX_WIDTH

DEFAULT_HIDDEN = (128,)
DEFAULT_LATENT_DIM = 8
DEFAULT_ACTIVATION = "relu"
KINDS = ("plain", "denoising", "sparse", "variational")
SPARSITIES = ("l1", "kl")
DEFAULT_NOISE = 0.3
DEFAULT_SPARSITY_WEIGHT = {"l1": 1e-3, "kl": 0.1}
DEFAULT_SPARSITY_TARGET = 0.05
DEFAULT_BETA = 1.0
# Which kind each kind-specific field belongs to (the others refuse it).
_KIND_FIELDS = {"noise": "denoising", "sparsity": "sparse", "sparsity_weight": "sparse",
                "sparsity_target": "sparse", "beta": "variational"}


def apply_defaults(msg) -> None:
    """Fill the unset fields of an `AutoencoderSpec` in place (kind-specific ones only for
    their kind, so that a field set for another kind is still refused by `check`)."""
    if not msg.hidden:
        msg.hidden.extend(DEFAULT_HIDDEN)
    if not msg.HasField("latent_dim"):
        msg.latent_dim = DEFAULT_LATENT_DIM
    msg.activation = msg.activation or DEFAULT_ACTIVATION
    msg.kind = msg.kind or "plain"
    if msg.kind == "denoising" and not msg.noise:
        msg.noise = DEFAULT_NOISE
    if msg.kind == "sparse":
        msg.sparsity = msg.sparsity or "l1"
        if not msg.sparsity_weight:
            msg.sparsity_weight = DEFAULT_SPARSITY_WEIGHT.get(msg.sparsity, 1e-3)
        if msg.sparsity == "kl" and not msg.sparsity_target:
            msg.sparsity_target = DEFAULT_SPARSITY_TARGET
    if msg.kind == "variational" and not msg.beta:
        msg.beta = DEFAULT_BETA


def check(msg, path: str, info, spec) -> None:
    """Widths, activation, kind, and the kind-specific fields (each only for its kind)."""
    check_widths(msg.hidden, f"{path}.hidden", most_layers=MAX_LAYERS, most_width=MAX_WIDTH)
    if not 0 < msg.latent_dim <= MAX_WIDTH:
        fail(f"{path}.latent_dim", f"must be in [1, {MAX_WIDTH}], got {msg.latent_dim}")
    check_choice(msg.activation, ACTIVATIONS, f"{path}.activation", "activation")
    check_choice(msg.kind, KINDS, f"{path}.kind", "autoencoder kind")
    for name, kind in _KIND_FIELDS.items():
        if getattr(msg, name) and msg.kind != kind:
            fail(f"{path}.{name}", f"only kind {kind!r} takes {name}; this autoencoder is "
                                   f"{msg.kind!r}: remove it or set {path}.kind to {kind!r}")
    if msg.sparsity_target and msg.sparsity != "kl":
        fail(f"{path}.sparsity_target", f"only sparsity 'kl' takes a target activation; "
                                        f"set {path}.sparsity to 'kl' or remove it")
    if msg.kind == "denoising":
        check_range(msg.noise, f"{path}.noise", low=0.0, high=float("inf"), low_open=True)
    if msg.kind == "sparse":
        check_choice(msg.sparsity, SPARSITIES, f"{path}.sparsity", "sparsity penalty")
        check_range(msg.sparsity_weight, f"{path}.sparsity_weight", low=0.0,
                    high=float("inf"), low_open=True)
        if msg.sparsity == "kl":
            check_range(msg.sparsity_target, f"{path}.sparsity_target", low=0.0, high=1.0,
                        low_open=True)
    if msg.kind == "variational":
        check_range(msg.beta, f"{path}.beta", low=0.0, high=float("inf"), low_open=True)


def build(msg, info):
    """The autoencoder module for a checked `AutoencoderSpec` and the dataset's `info`."""
    from trainserve.training.zoo.autoencoder_net import Autoencoder
    return Autoencoder(msg, info.input_shape)


register_architecture("autoencoder", Architecture(apply_defaults, check, build))
