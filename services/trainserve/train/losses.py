"""Registered losses. Each builds a function `(outputs, targets) -> per-sample losses`.

Per-sample (unreduced) losses let the training loop weight every sample by the *global* batch
size, so a DDP step averages exactly like a single-process step. torch is imported lazily.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from trainserve.train.registry import Registry

if TYPE_CHECKING:
    import torch

    from trainserve.train.datasets import DatasetInfo

LossFn = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]


@dataclass(frozen=True)
class Loss:
    """A loss entry: the tasks it fits and a builder `(LossSpec, DatasetInfo) -> LossFn`.

    Classification targets are int64 class indices `(N,)` against logits `(N, C)`; regression
    targets are float `(N,)` against outputs `(N, 1)`.
    """
    tasks: frozenset[str]
    build: Callable[[object, "DatasetInfo"], LossFn]
    accepts_class_weights: bool = False


LOSSES: Registry[Loss] = Registry("loss")


def register_loss(name: str, loss: Loss) -> Loss:
    """Register a loss under `name` (`ValueError` if taken)."""
    return LOSSES.register(name, loss)


def get_loss(name: str) -> Loss:
    """The loss registered under `name` (`ValueError` listing known names otherwise)."""
    return LOSSES.get(name)


def build_loss(spec, info: "DatasetInfo") -> LossFn:
    """The per-sample loss function for a checked `LossSpec`."""
    return get_loss(spec.name).build(spec, info)


def _cross_entropy(spec, info) -> LossFn:
    import torch
    import torch.nn.functional as F
    weight = torch.tensor(list(spec.class_weights), dtype=torch.float32) \
        if spec.class_weights else None

    def fn(out, y):
        w = None if weight is None else weight.to(out.device)  # no-op on the same device
        return F.cross_entropy(out, y, weight=w, reduction="none")
    return fn


def _bce(spec, info) -> LossFn:
    # One-vs-rest over the class logits, so it works for any number of classes and the
    # prediction stays argmax of the logits like for cross_entropy.
    import torch.nn.functional as F

    def fn(out, y):
        target = F.one_hot(y, out.shape[1]).to(out.dtype)
        return F.binary_cross_entropy_with_logits(out, target, reduction="none").mean(dim=1)
    return fn


def _regression(kind: str) -> Callable[[object, "DatasetInfo"], LossFn]:
    def build(spec, info) -> LossFn:
        import torch.nn.functional as F
        fn = {"mse": F.mse_loss, "mae": F.l1_loss, "huber": F.huber_loss}[kind]
        return lambda out, y: fn(out[:, 0], y, reduction="none")
    return build


_CLASSIFICATION = frozenset({"classification"})
_REGRESSION = frozenset({"regression"})
register_loss("cross_entropy", Loss(_CLASSIFICATION, _cross_entropy, accepts_class_weights=True))
register_loss("bce", Loss(_CLASSIFICATION, _bce))
for _kind in ("mse", "mae", "huber"):
    register_loss(_kind, Loss(_REGRESSION, _regression(_kind)))
