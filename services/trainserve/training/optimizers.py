"""Registered optimizers: name -> default learning rate, how often it steps, and a builder.

torch is imported lazily. The update granularity is part of the entry, because two of the
course's algorithms are defined by it:

| name       | steps            | default lr | notes                                          |
|------------|------------------|------------|------------------------------------------------|
| adam       | every mini-batch | 1e-3       |                                                |
| adamw      | every mini-batch | 1e-3       | decoupled weight decay (spec's 0 means 0)      |
| sgd        | every mini-batch | 1e-2       | momentum, nesterov                             |
| rmsprop    | every mini-batch | 1e-3       | momentum                                       |
| gd         | once an epoch    | 0.1        | full-batch gradient descent; batch_size unused |
| perceptron | every sample     | 1.0        | Rosenblatt's rule: plain SGD on the perceptron |
|            |                  |            | criterion, one sample a step; single worker    |
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Literal

from trainserve.training.registry import Registry

if TYPE_CHECKING:
    import torch

Steps = Literal["batch", "epoch", "sample"]


@dataclass(frozen=True)
class Optimizer:
    """An optimizer entry. `build(params, OptimizerSpec)` gets a checked spec (lr set).

    `momentum` / `nesterov` / `weight_decay` / `betas` say which `OptimizerSpec` fields it honours
    (others are refused). `steps`: "batch" (one step per `batch_size` samples), "epoch" (one
    step over the whole training split) or "sample" (one step per sample). `loss`: the loss
    it requires (validation defaults to it and refuses any other), or None.
    """
    default_lr: float
    build: Callable[[Iterable, object], "torch.optim.Optimizer"]
    momentum: bool = False
    nesterov: bool = False
    weight_decay: bool = True
    betas: bool = False
    steps: Steps = "batch"
    loss: str | None = None


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


def step_size(spec, batch_size: int, num_train: int) -> int:
    """Samples per optimizer step (across all workers) for a checked `OptimizerSpec`."""
    steps = get_optimizer(spec.name).steps
    return {"batch": batch_size, "epoch": num_train, "sample": 1}[steps]


def _adam(params, s):
    import torch
    params = list(params)
    return torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay, betas=_betas(s),
                            fused=_fusable(params))


def _adamw(params, s):
    import torch
    params = list(params)
    # AdamW's own default decay is 0.01; the spec's 0 means 0 (explicit beats surprising).
    return torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay, betas=_betas(s),
                             fused=_fusable(params))


def _fusable(params: list) -> bool | None:
    """Whether torch's fused Adam(W) kernel can update `params` (floating point, on a CPU
    or CUDA device): one op for all of them instead of about ten a parameter. On a course
    model on one CPU thread that is 1.4-1.5x the samples/s (bench/README.md). None leaves
    the choice to torch."""
    ok = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda")
                              for p in params)
    return True if ok else None


def _betas(s) -> tuple[float, float]:
    return (s.betas[0], s.betas[1]) if len(s.betas) == 2 else (0.9, 0.999)


def _sgd(params, s):
    import torch
    return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay,
                           nesterov=s.nesterov)


def _rmsprop(params, s):
    import torch
    return torch.optim.RMSprop(params, lr=s.lr, momentum=s.momentum,
                               weight_decay=s.weight_decay)


def _perceptron(params, s):
    import torch
    # w <- w + lr * (x for the true class, -x for the wrongly winning one): plain SGD on the
    # perceptron criterion, one sample at a time (the loop's "sample" steps).
    return torch.optim.SGD(params, lr=s.lr)


register_optimizer("adam", Optimizer(1e-3, _adam, betas=True))
register_optimizer("adamw", Optimizer(1e-3, _adamw, betas=True))
register_optimizer("sgd", Optimizer(1e-2, _sgd, momentum=True, nesterov=True))
register_optimizer("rmsprop", Optimizer(1e-3, _rmsprop, momentum=True))
# Full-batch steps are few (one an epoch), so the default lr is larger than SGD's.
register_optimizer("gd", Optimizer(0.1, _sgd, momentum=True, nesterov=True, steps="epoch"))
register_optimizer("perceptron", Optimizer(1.0, _perceptron, weight_decay=False,
                                           steps="sample", loss="perceptron"))
