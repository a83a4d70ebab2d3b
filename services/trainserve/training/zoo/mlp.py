"""MLP: fully connected feed-forward network over the flattened input."""
from __future__ import annotations

from collections import OrderedDict

from trainserve.training.activations import ACTIVATIONS, make_activation
from trainserve.training.checks import check_choice, check_range, check_widths
from trainserve.training.zoo import Architecture, check_batch_norm_batch, register_architecture

DEFAULT_HIDDEN = (64,)
DEFAULT_ACTIVATION = "relu"
# Guards against specs that would exhaust a worker's memory; far above course-sized nets.
MAX_WIDTH = 16384
MAX_LAYERS = 64


def apply_defaults(msg) -> None:
    if not msg.hidden:
        msg.hidden.extend(DEFAULT_HIDDEN)
    if not msg.activation:
        msg.activation = DEFAULT_ACTIVATION


def check(msg, path: str, info, spec) -> None:
    check_widths(msg.hidden, f"{path}.hidden", most_layers=MAX_LAYERS, most_width=MAX_WIDTH)
    check_choice(msg.activation, ACTIVATIONS, f"{path}.activation", "activation")
    check_range(msg.dropout, f"{path}.dropout", low=0.0, high=1.0)
    # BatchNorm cannot normalize over a batch of one sample (torch raises mid-training).
    check_batch_norm_batch(spec, msg.batch_norm)


def build(msg, info):
    from torch import nn
    layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
    width_in = info.num_features
    for i, width in enumerate(msg.hidden, start=1):
        layers.append((f"fc{i}", nn.Linear(width_in, width)))
        if msg.batch_norm:
            layers.append((f"bn{i}", nn.BatchNorm1d(width)))
        layers.append((f"act{i}", make_activation(msg.activation)))
        if msg.dropout > 0:
            layers.append((f"drop{i}", nn.Dropout(msg.dropout)))
        width_in = width
    layers.append(("out", nn.Linear(width_in, info.output_dim)))
    return nn.Sequential(OrderedDict(layers))


register_architecture("mlp", Architecture(apply_defaults, check, build))
