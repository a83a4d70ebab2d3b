"""Weight initialization by name (`ModelSpec.init`), applied by `zoo.build_model`.

Importing this module does not import torch (validation checks the names). What is
initialized: every parameter named `weight`, `weight_*` (recurrent layers) or `in_proj_weight`
(attention) with at least 2 dimensions, i.e. the weights of linear, convolutional, recurrent
and attention layers; biases of any layer (`bias`, `bias_*`, `in_proj_bias`) start at zero.
Normalization layers (1-D weights), RBF centres, positional encodings and class tokens keep
their own initialization, which is part of what those layers mean.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from trainserve.training.registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn

DEFAULT_INIT = "default"
DEFAULT_INIT_STD = 0.02


@dataclass(frozen=True)
class InitParams:
    """What a scheme may need: the std of "normal", and the network's nonlinearity for the
    kaiming gain ("relu", or "leaky_relu" with its `slope`)."""
    std: float = DEFAULT_INIT_STD
    nonlinearity: str = "relu"
    slope: float = 0.0


WeightInit = Callable[["torch.Tensor", InitParams], None]
INITS: Registry[WeightInit] = Registry("init")


def register_init(name: str, fn: WeightInit) -> WeightInit:
    """Register an in-place weight initializer `fn(weight, InitParams)`."""
    return INITS.register(name, fn)


def _is_weight(name: str, p) -> bool:
    return p.dim() >= 2 and (name == "weight" or name.startswith("weight_")
                             or name == "in_proj_weight")


def _is_bias(name: str) -> bool:
    return name == "bias" or name.startswith("bias_") or name == "in_proj_bias"


def apply_init(model: "nn.Module", name: str, params: InitParams = InitParams()) -> int:
    """Initialize `model`'s layer weights in place with scheme `name`; zero the biases.

    "default" changes nothing. Draws from torch's global RNG (seeded by the training loop).
    Returns the number of weight tensors initialized.
    """
    import torch
    fn = INITS.get(name)
    if name == DEFAULT_INIT:  # PyTorch's per-layer initialization, biases included
        return 0
    count = 0
    with torch.no_grad():
        for module in model.modules():
            for pname, p in module.named_parameters(recurse=False):
                if _is_weight(pname, p):
                    fn(p, params)
                    count += 1
                elif _is_bias(pname):
                    p.zero_()
    return count


def _xavier(kind: str) -> WeightInit:
    def fn(w, params: InitParams) -> None:
        from torch import nn
        getattr(nn.init, f"xavier_{kind}_")(w)
    return fn


def _kaiming(kind: str) -> WeightInit:
    def fn(w, params: InitParams) -> None:
        from torch import nn
        getattr(nn.init, f"kaiming_{kind}_")(w, a=params.slope, nonlinearity=params.nonlinearity)
    return fn


def _normal(w, params: InitParams) -> None:
    from torch import nn
    nn.init.normal_(w, 0.0, params.std)


def _keep(w, params: InitParams) -> None:
    """ "default": the weights keep the initialization their layer gave them."""


register_init("default", _keep)
register_init("xavier_uniform", _xavier("uniform"))
register_init("xavier_normal", _xavier("normal"))
register_init("kaiming_uniform", _kaiming("uniform"))
register_init("kaiming_normal", _kaiming("normal"))
register_init("normal", _normal)
