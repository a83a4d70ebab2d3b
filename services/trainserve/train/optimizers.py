"""Registered optimizers: name -> default learning rate and a builder. torch is imported lazily."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

from trainserve.train.registry import Registry

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Optimizer:
    """An optimizer entry. `build(params, OptimizerSpec)` gets a checked spec (lr set);
    `momentum` / `nesterov` say which `OptimizerSpec` fields it honours (others are refused)."""
    default_lr: float
    build: Callable[[Iterable, object], "torch.optim.Optimizer"]
    momentum: bool = False
    nesterov: bool = False


OPTIMIZERS: Registry[Optimizer] = Registry("optimizer")


def register_optimizer(name: str, optimizer: Optimizer) -> Optimizer:
    """Register an optimizer under `name` (`ValueError` if taken)."""
    return OPTIMIZERS.register(name, optimizer)


def get_optimizer(name: str) -> Optimizer:
    """The optimizer registered under `name` (`ValueError` listing known names otherwise)."""
    return OPTIMIZERS.get(name)


def build_optimizer(params: Iterable, spec) -> "torch.optim.Optimizer":
    """A torch optimizer over `params` for a checked `OptimizerSpec`."""
    return get_optimizer(spec.name).build(params, spec)


def _adam(params, s):
    import torch
    return torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay)


def _adamw(params, s):
    import torch
    # AdamW's own default decay is 0.01; the spec's 0 means 0 (explicit beats surprising).
    return torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)


def _sgd(params, s):
    import torch
    return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay,
                           nesterov=s.nesterov)


def _rmsprop(params, s):
    import torch
    return torch.optim.RMSprop(params, lr=s.lr, momentum=s.momentum,
                               weight_decay=s.weight_decay)


register_optimizer("adam", Optimizer(1e-3, _adam))
register_optimizer("adamw", Optimizer(1e-3, _adamw))
register_optimizer("sgd", Optimizer(1e-2, _sgd, momentum=True, nesterov=True))
register_optimizer("rmsprop", Optimizer(1e-3, _rmsprop, momentum=True))
