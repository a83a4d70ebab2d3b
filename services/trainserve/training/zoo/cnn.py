"""CNN: stages of conv ("same" padding) [-> batch norm] -> activation -> 2x2 pool, then a fully
connected head over the flattened maps.

Each pool halves the height and width (rounding down), so the number of stages is bounded by the
image size: 8x8 digits take at most 3 (8 -> 4 -> 2 -> 1); `check` refuses more, naming the most
that fit, rather than silently skipping pools.
"""
from __future__ import annotations

from collections import OrderedDict

from trainserve.training.activations import ACTIVATIONS, make_activation
from trainserve.training.checks import check_choice, check_range, check_widths, fail
from trainserve.training.zoo import (Architecture, check_batch_norm_batch, register_architecture,
                                  require_input)

DEFAULT_CHANNELS = (16, 32)
DEFAULT_KERNEL_SIZE = 3
DEFAULT_POOLING = "max"
DEFAULT_ACTIVATION = "relu"
DEFAULT_HIDDEN = (64,)
POOLINGS = ("max", "avg")
# Guards against specs that would exhaust a worker's memory; far above course-sized nets.
MAX_CHANNELS, MAX_WIDTH, MAX_KERNEL, MAX_LAYERS = 1024, 16384, 15, 16


def apply_defaults(msg) -> None:
    if not msg.channels:
        msg.channels.extend(DEFAULT_CHANNELS)
    if not msg.HasField("kernel_size"):
        msg.kernel_size = DEFAULT_KERNEL_SIZE
    msg.pooling = msg.pooling or DEFAULT_POOLING
    msg.activation = msg.activation or DEFAULT_ACTIVATION
    if not msg.hidden:
        msg.hidden.extend(DEFAULT_HIDDEN)


def pooled_size(height: int, width: int, stages: int) -> tuple[int, int]:
    """Map size after `stages` 2x2 pools (floor division, as torch's pooling)."""
    return height >> stages, width >> stages


def check(msg, path: str, info, spec) -> None:
    require_input(info, path, "cnn", ["image"])
    _check_widths(msg.channels, f"{path}.channels", MAX_CHANNELS)
    _check_widths(msg.hidden, f"{path}.hidden", MAX_WIDTH)
    _, height, width = info.input_shape
    if min(pooled_size(height, width, len(msg.channels))) < 1:
        fits = min(height, width).bit_length() - 1
        fail(f"{path}.channels", f"{len(msg.channels)} conv/pool stages halve {height}x{width} "
                                 f"images below 1x1 (each conv is followed by a 2x2 pool); "
                                 f"at most {fits} fit")
    if not (msg.kernel_size % 2 == 1 and 1 <= msg.kernel_size <= MAX_KERNEL):
        fail(f"{path}.kernel_size", f"must be odd and in [1, {MAX_KERNEL}] ('same' padding), "
                                    f"got {msg.kernel_size}")
    check_choice(msg.pooling, POOLINGS, f"{path}.pooling", "pooling")
    check_choice(msg.activation, ACTIVATIONS, f"{path}.activation", "activation")
    check_range(msg.dropout, f"{path}.dropout", low=0.0, high=1.0)
    check_batch_norm_batch(spec, msg.batch_norm)


def _check_widths(widths, field: str, most: int) -> None:
    check_widths(widths, field, most_layers=MAX_LAYERS, most_width=most)


def build(msg, info):
    from torch import nn
    c_in, height, width = info.input_shape
    pool = nn.MaxPool2d if msg.pooling == "max" else nn.AvgPool2d
    layers: list[tuple[str, nn.Module]] = []
    for i, c_out in enumerate(msg.channels, start=1):
        # A conv bias before batch norm is cancelled by its mean subtraction.
        layers.append((f"conv{i}", nn.Conv2d(c_in, c_out, msg.kernel_size,
                                             padding=msg.kernel_size // 2,
                                             bias=not msg.batch_norm)))
        if msg.batch_norm:
            layers.append((f"bn{i}", nn.BatchNorm2d(c_out)))
        layers += [(f"act{i}", make_activation(msg.activation)), (f"pool{i}", pool(2))]
        c_in = c_out
    h, w = pooled_size(height, width, len(msg.channels))
    layers.append(("flatten", nn.Flatten()))
    width_in = c_in * h * w
    for i, hidden in enumerate(msg.hidden, start=1):
        layers += [(f"fc{i}", nn.Linear(width_in, hidden)),
                   (f"fc_act{i}", make_activation(msg.activation))]
        if msg.dropout > 0:
            layers.append((f"drop{i}", nn.Dropout(msg.dropout)))
        width_in = hidden
    layers.append(("out", nn.Linear(width_in, info.output_dim)))
    return nn.Sequential(OrderedDict(layers))


register_architecture("cnn", Architecture(apply_defaults, check, build))
