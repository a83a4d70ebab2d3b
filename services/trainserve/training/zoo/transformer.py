"""Transformer encoder (Vaswani et al. 2017) for sequences and tabular data.

Tokens: a sequence `(T, F)` gives T tokens, each step's F features projected to `d_model` by
one shared linear layer; a tabular sample `(F,)` gives F tokens, feature j becoming
`x_j * w_j + b_j` with its own `w_j, b_j` in R^d_model (so features stay distinguishable).
Then: an optional learned CLS token, sinusoidal or learned positional encoding, `num_layers`
pre-norm encoder layers (multi-head self-attention and a feed-forward with `activation`,
GELU by default), a final layer
norm, and pooling by the mean over tokens or the CLS token, into a linear head.
"""
from __future__ import annotations

from trainserve.training.activations import ACTIVATIONS
from trainserve.training.checks import check_choice, check_range, fail
from trainserve.training.zoo import Architecture, register_architecture, require_input

DEFAULT_D_MODEL, DEFAULT_NUM_HEADS, DEFAULT_NUM_LAYERS = 32, 4, 2
DEFAULT_POSITIONAL, DEFAULT_POOLING = "sinusoidal", "mean"
DEFAULT_ACTIVATION = "gelu"
POSITIONALS = ("sinusoidal", "learned")
POOLINGS = ("mean", "cls")
MAX_D_MODEL, MAX_LAYERS, MAX_FEEDFORWARD, MAX_TOKENS = 4096, 48, 65536, 4096


def apply_defaults(msg) -> None:
    if not msg.HasField("d_model"):
        msg.d_model = DEFAULT_D_MODEL
    if not msg.HasField("num_heads"):
        msg.num_heads = DEFAULT_NUM_HEADS
    if not msg.HasField("num_layers"):
        msg.num_layers = DEFAULT_NUM_LAYERS
    if not msg.HasField("dim_feedforward"):
        msg.dim_feedforward = 4 * msg.d_model
    msg.positional = msg.positional or DEFAULT_POSITIONAL
    msg.pooling = msg.pooling or DEFAULT_POOLING
    msg.activation = msg.activation or DEFAULT_ACTIVATION


def check(msg, path: str, info, spec) -> None:
    require_input(info, path, "transformer", ["sequence", "tabular"])
    tokens = info.input_shape[0]
    if tokens > MAX_TOKENS:  # attention is quadratic in the tokens
        fail(path, f"{tokens} tokens exceed the {MAX_TOKENS} attention can take here")
    check_encoder_sizes(msg, path)
    check_range(msg.dropout, f"{path}.dropout", low=0.0, high=1.0)
    check_choice(msg.positional, POSITIONALS, f"{path}.positional", "positional encoding")
    check_choice(msg.pooling, POOLINGS, f"{path}.pooling", "pooling")
    check_choice(msg.activation, ACTIVATIONS, f"{path}.activation", "activation")


def check_encoder_sizes(msg, path: str) -> None:
    """An encoder's d_model, num_layers and dim_feedforward within their bounds, and
    num_heads dividing d_model (the transformer's and BERT's)."""
    for field, value, most in (("d_model", msg.d_model, MAX_D_MODEL),
                               ("num_layers", msg.num_layers, MAX_LAYERS),
                               ("dim_feedforward", msg.dim_feedforward, MAX_FEEDFORWARD)):
        if not 1 <= value <= most:
            fail(f"{path}.{field}", f"must be in [1, {most}], got {value}")
    if not 1 <= msg.num_heads <= msg.d_model or msg.d_model % msg.num_heads:
        fail(f"{path}.num_heads", f"must divide d_model ({msg.d_model}), got {msg.num_heads}")


def build(msg, info):
    from trainserve.training.zoo.nets.transformer import TransformerNet
    return TransformerNet(tuple(info.input_shape), info.output_dim, d_model=msg.d_model,
                          num_heads=msg.num_heads, num_layers=msg.num_layers,
                          dim_feedforward=msg.dim_feedforward, dropout=msg.dropout,
                          positional=msg.positional, pooling=msg.pooling,
                          activation=msg.activation or DEFAULT_ACTIVATION)


register_architecture("transformer", Architecture(apply_defaults, check, build))
