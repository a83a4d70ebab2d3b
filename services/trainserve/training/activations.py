"""Registered activations: name -> factory of a fresh `torch.nn.Module`.

torch is imported when a factory runs, not when this module is imported, so spec validation
can check names without torch.

Parametrized activations (leaky_relu's slope, elu's alpha) take their parameters from an
`ActivationParams`: passed explicitly to `make_activation`, or else the one that
`zoo.build_model` installs (from `ModelSpec.leaky_relu_slope` / `elu_alpha`) with
`activation_params(...)` while an architecture builds. Architectures therefore call
`make_activation(name)` and never see these fields themselves.
"""
from __future__ import annotations

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

from trainserve.training.registry import Registry

if TYPE_CHECKING:
    from torch import nn

NO_ACTIVATION = "none"  # a layer left linear (e.g. a generator's output)
DEFAULT_LEAKY_RELU_SLOPE = 0.01  # PyTorch's and the proto's default
DEFAULT_ELU_ALPHA = 1.0


@dataclass(frozen=True)
class ActivationParams:
    """Parameters of the parametrized activations (each factory reads what it needs)."""
    leaky_relu_slope: float = DEFAULT_LEAKY_RELU_SLOPE
    elu_alpha: float = DEFAULT_ELU_ALPHA

    @classmethod
    def from_model_spec(cls, model_spec) -> "ActivationParams":
        """The parameters of a `ModelSpec`; unset optional fields take the defaults."""
        return cls(
            model_spec.leaky_relu_slope if model_spec.HasField("leaky_relu_slope")
            else DEFAULT_LEAKY_RELU_SLOPE,
            model_spec.elu_alpha if model_spec.HasField("elu_alpha") else DEFAULT_ELU_ALPHA)


ActivationFactory = Callable[[ActivationParams], "nn.Module"]
ACTIVATIONS: Registry[ActivationFactory] = Registry("activation")
_CURRENT: ContextVar[ActivationParams] = ContextVar("activation_params",
                                                    default=ActivationParams())


def register_activation(name: str, factory: ActivationFactory) -> ActivationFactory:
    """Register a factory `(ActivationParams) -> nn.Module` (it may ignore the parameters)."""
    return ACTIVATIONS.register(name, factory)


def get_activation(name: str) -> ActivationFactory:
    """The factory registered under `name` (`ValueError` listing known names otherwise)."""
    return ACTIVATIONS.get(name)


def make_activation(name: str, params: ActivationParams | None = None) -> "nn.Module":
    """A new activation module for `name`, with `params` or the ones currently installed."""
    return get_activation(name)(params if params is not None else _CURRENT.get())


@contextlib.contextmanager
def activation_params(params: ActivationParams) -> Iterator[ActivationParams]:
    """Install `params` for every `make_activation` call inside the `with` block."""
    token = _CURRENT.set(params)
    try:
        yield params
    finally:
        _CURRENT.reset(token)


def _plain(class_name: str) -> ActivationFactory:
    def factory(params: ActivationParams) -> "nn.Module":
        from torch import nn
        return getattr(nn, class_name)()
    return factory


def _leaky_relu(params: ActivationParams) -> "nn.Module":
    from torch import nn
    return nn.LeakyReLU(params.leaky_relu_slope)


def _elu(params: ActivationParams) -> "nn.Module":
    from torch import nn
    return nn.ELU(params.elu_alpha)


for _name, _cls in {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid", "gelu": "GELU"}.items():
    register_activation(_name, _plain(_cls))
register_activation("leaky_relu", _leaky_relu)
register_activation("elu", _elu)
