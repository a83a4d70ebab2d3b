"""Radial-basis-function network: Gaussian units with learnable centres and widths over the
flattened input, then a linear output layer.

Unit k answers `exp(-|x - c_k|^2 / (2 sigma_k^2))`. The widths are learned as `log sigma`, which
keeps them positive. Centres need the training inputs to start well: `RBFLayer.init_from_data`
places them by k-means (`init_centers: kmeans`) or on random training samples (`random`) and
sets each width to the RMS distance of the samples nearest that centre. The training loop calls
it through `zoo.init_from_data`; without that call the centres start as standard normal draws
(inputs are standardized by default) with width 1.
"""
from __future__ import annotations

from collections import OrderedDict

from trainserve.training.checks import check_choice, fail
from trainserve.training.splits import split_sizes
from trainserve.training.zoo import Architecture, register_architecture

DEFAULT_CENTERS = 32
DEFAULT_INIT_CENTERS = "kmeans"
INIT_CENTERS = ("kmeans", "random")
MAX_CENTERS = 4096


def apply_defaults(msg) -> None:
    if not msg.HasField("centers"):
        msg.centers = DEFAULT_CENTERS
    if not msg.init_centers:
        msg.init_centers = DEFAULT_INIT_CENTERS


def check(msg, path: str, info, spec) -> None:
    if not 1 <= msg.centers <= MAX_CENTERS:
        fail(f"{path}.centers", f"must be in [1, {MAX_CENTERS}], got {msg.centers}")
    check_choice(msg.init_centers, INIT_CENTERS, f"{path}.init_centers", "centre initialization")
    n_train, _, _ = split_sizes(info.num_samples, spec.split.test_fraction,
                                spec.split.val_fraction)
    if info.num_samples and msg.centers > n_train:
        fail(f"{path}.centers", f"{msg.centers} centres for {n_train} training samples; "
                                f"use at most as many centres as samples")


def build(msg, info):
    from torch import nn

    from trainserve.training.zoo.nets.rbf import RBFLayer
    return nn.Sequential(OrderedDict(
        rbf=RBFLayer(info.num_features, msg.centers, msg.init_centers),
        out=nn.Linear(msg.centers, info.output_dim)))


register_architecture("rbf", Architecture(apply_defaults, check, build))
