"""Registered activations: name -> factory of a fresh `torch.nn.Module`.

torch is imported when a factory runs, not when this module is imported, so spec validation
can check names without torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from trainserve.train.registry import Registry

if TYPE_CHECKING:
    from torch import nn

ActivationFactory = Callable[[], "nn.Module"]
ACTIVATIONS: Registry[ActivationFactory] = Registry("activation")


def register_activation(name: str, factory: ActivationFactory) -> ActivationFactory:
    """Register a zero-argument factory returning an activation module."""
    return ACTIVATIONS.register(name, factory)


def get_activation(name: str) -> ActivationFactory:
    """The factory registered under `name` (`ValueError` listing known names otherwise)."""
    return ACTIVATIONS.get(name)


def make_activation(name: str) -> "nn.Module":
    """A new activation module for `name`."""
    return get_activation(name)()


def _torch_layer(class_name: str) -> ActivationFactory:
    def factory() -> "nn.Module":
        from torch import nn
        return getattr(nn, class_name)()
    return factory


for _name, _cls in {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid",
                    "leaky_relu": "LeakyReLU", "elu": "ELU", "gelu": "GELU"}.items():
    register_activation(_name, _torch_layer(_cls))
