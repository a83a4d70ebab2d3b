"""The model zoo: one module per architecture, registered under its `ModelSpec.arch` oneof name.

Importing this package does not import torch: each `Architecture` builds its network lazily, so
spec validation (`apply_defaults`, `check`) stays cheap in the API process.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from trainserve.train.registry import Registry

if TYPE_CHECKING:
    from torch import nn

    from trainserve.train.datasets import DatasetInfo


@dataclass(frozen=True)
class Architecture:
    """A zoo entry; `msg` is the architecture's sub-message (e.g. `MLPSpec`).

    - `apply_defaults(msg)`: fill unset fields in place.
    - `check(msg, path, info, spec)`: raise `InvalidArgument` with paths under `path`
      (`spec.model.<arch>`); `spec` is the defaulted `JobSpec` for cross-field checks.
    - `build(msg, info)`: the network, input `(N, *info.input_shape)` -> `(N, info.output_dim)`.
    """
    apply_defaults: Callable[[object], None]
    check: Callable[[object, str, "DatasetInfo", object], None]
    build: Callable[[object, "DatasetInfo"], "nn.Module"]


ARCHITECTURES: Registry[Architecture] = Registry("architecture")


def register_architecture(name: str, arch: Architecture) -> Architecture:
    """Register an architecture under its `ModelSpec.arch` oneof field name."""
    return ARCHITECTURES.register(name, arch)


def get_architecture(name: str) -> Architecture:
    """The architecture registered under `name` (`ValueError` listing known names otherwise)."""
    return ARCHITECTURES.get(name)


def build_model(spec, info: "DatasetInfo") -> "nn.Module":
    """The network for a checked `JobSpec`: logits `(N, num_classes)` for classification,
    values `(N, 1)` for regression.

    Regression networks end in a fixed `OutputScale` (buffers, saved with the weights) that the
    training loop sets to the training targets' mean and std: the layers then learn a
    standardized target, while outputs and losses stay in the dataset's units.
    """
    arch = spec.model.WhichOneof("arch")
    if arch is None:
        raise ValueError("spec.model has no architecture set")
    model = get_architecture(arch).build(getattr(spec.model, arch), info)
    if info.task == "regression":
        from collections import OrderedDict

        from torch import nn

        from trainserve.train.zoo.layers import OutputScale
        model = nn.Sequential(OrderedDict(net=model, target_scale=OutputScale()))
    return model


# Registration happens on import; keep these last.
from trainserve.train.zoo import lenet5, mlp  # noqa: E402,F401
