"""Rosenblatt's perceptron (1958): one linear unit per class over the flattened input.

The network outputs the units' raw scores `w_c . x + b_c` as logits; the prediction is their
argmax, which for two classes is the step function of the difference of the two scores. It is
a linear classifier: whatever trains it (the perceptron learning rule, optimizer "perceptron",
or gradient descent on a loss), no setting of the weights separates XOR.
"""
from __future__ import annotations

from collections import OrderedDict

from trainserve.training.checks import fail
from trainserve.training.zoo import Architecture, register_architecture


def apply_defaults(msg) -> None:
    """`PerceptronSpec` has no fields."""


def check(msg, path: str, info, spec) -> None:
    if info.task != "classification":
        fail(path, f"perceptron classifies (a step over per-class scores); dataset "
                   f"{info.name!r} is {info.task}; use mlp for regression")


def build(msg, info):
    from torch import nn
    return nn.Sequential(OrderedDict(flatten=nn.Flatten(),
                                     out=nn.Linear(info.num_features, info.output_dim)))


register_architecture("perceptron", Architecture(apply_defaults, check, build))
