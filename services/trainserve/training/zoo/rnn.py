"""Recurrent network over a sequence input `(N, T, F)`: an LSTM, GRU or Elman RNN (tanh or ReLU),
stacked `num_layers` deep, optionally bidirectional, with dropout between stacked layers.

The head is a linear layer on the last layer's final hidden state: the state after step T, and
with `bidirectional` also the backward direction's state after reading back to step 1. It
outputs class logits, or `output_dim` values for regression and forecasting.
"""
from __future__ import annotations

from trainserve.training.checks import check_choice, check_range, fail
from trainserve.training.zoo import Architecture, register_architecture, require_input

CELLS = ("lstm", "gru", "rnn")
DEFAULT_CELL = "lstm"
DEFAULT_HIDDEN_SIZE = 64
DEFAULT_NUM_LAYERS = 1
MAX_HIDDEN_SIZE, MAX_LAYERS = 4096, 16
# torch's Elman RNN offers these two non-linearities; LSTM and GRU gates are fixed.
ELMAN_ACTIVATIONS = ("tanh", "relu")


def apply_defaults(msg) -> None:
    msg.cell = msg.cell or DEFAULT_CELL
    if msg.cell == "rnn":
        msg.activation = msg.activation or ELMAN_ACTIVATIONS[0]
    if not msg.HasField("hidden_size"):
        msg.hidden_size = DEFAULT_HIDDEN_SIZE
    if not msg.HasField("num_layers"):
        msg.num_layers = DEFAULT_NUM_LAYERS


def check(msg, path: str, info, spec) -> None:
    require_input(info, path, "rnn", ["sequence"])
    check_choice(msg.cell, CELLS, f"{path}.cell", "recurrent cell")
    if not 1 <= msg.hidden_size <= MAX_HIDDEN_SIZE:
        fail(f"{path}.hidden_size", f"must be in [1, {MAX_HIDDEN_SIZE}], got {msg.hidden_size}")
    if not 1 <= msg.num_layers <= MAX_LAYERS:
        fail(f"{path}.num_layers", f"must be in [1, {MAX_LAYERS}], got {msg.num_layers}")
    check_range(msg.dropout, f"{path}.dropout", low=0.0, high=1.0)
    _check_activation(msg, path)
    if msg.dropout > 0 and msg.num_layers < 2:
        fail(f"{path}.dropout", "dropout acts between stacked layers; set num_layers >= 2 "
                                "or dropout to 0")


def _check_activation(msg, path: str) -> None:
    if msg.cell != "rnn" and msg.activation:
        fail(f"{path}.activation", f"an {msg.cell} cell has fixed gate activations; "
                                   f"activation applies to cell 'rnn' only")
    if msg.cell == "rnn" and msg.activation not in ELMAN_ACTIVATIONS:
        fail(f"{path}.activation", f"cell 'rnn' takes {' or '.join(ELMAN_ACTIVATIONS)}, "
                                   f"got {msg.activation!r}")


def build(msg, info):
    from trainserve.training.zoo.nets.rnn import RecurrentNet
    _, features = info.input_shape
    return RecurrentNet(msg.cell, features, msg.hidden_size, msg.num_layers,
                        msg.bidirectional, msg.dropout, info.output_dim,
                        msg.activation or ELMAN_ACTIVATIONS[0])


register_architecture("rnn", Architecture(apply_defaults, check, build))
