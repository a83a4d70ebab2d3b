"""Registered losses. Each builds a function `(outputs, targets) -> per-sample losses`.

Per-sample (unreduced) losses let the training loop weight every sample by the *global* batch
size, so a DDP step averages exactly like a single-process step. torch is imported lazily.

Shapes: classification targets are int64 class indices `(N,)` against scores `(N, C)`;
regression targets are float `(N,)` or `(N, k)` (a forecast of k steps) against outputs
`(N, k)`, and a sample's loss is the mean over its k outputs.

| name          | task           | what                                                     |
|---------------|----------------|----------------------------------------------------------|
| cross_entropy | classification | softmax cross-entropy; accepts `class_weights`           |
| bce           | classification | binary cross-entropy with logits, two classes only       |
| perceptron    | classification | max_k s_k - s_y: zero when correctly classified          |
| mse           | regression, reconstruction | squared error (an autoencoder's only loss)   |
| mae           | regression     | absolute error                                           |
| huber         | regression     | quadratic below `huber_delta` (default 1.0), linear above |
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from trainserve.training.registry import Registry

if TYPE_CHECKING:
    import torch

    from trainserve.training.datasets import DatasetInfo

LossFn = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]
DEFAULT_HUBER_DELTA = 1.0


@dataclass(frozen=True)
class Loss:
    """A loss entry: the tasks it fits and a builder `(LossSpec, DatasetInfo) -> LossFn`.

    `max_classes` bounds the classes of a classification dataset it accepts (None: any);
    `accepts_class_weights` / `accepts_huber_delta` say which `LossSpec` fields it honours
    (the others are refused by validation).
    """
    tasks: frozenset[str]
    build: Callable[[object, "DatasetInfo"], LossFn]
    accepts_class_weights: bool = False
    accepts_huber_delta: bool = False
    max_classes: int | None = None


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


def build_mean_loss(spec, info: "DatasetInfo") -> LossFn | None:
    """The batch-mean form of a checked `LossSpec` as one fused op, where it equals the mean
    of `build_loss`'s per-sample losses (same k outputs a sample, no class weights); None
    otherwise. A single worker's step backpropagates it: on a small model the separate
    per-sample loss and mean cost several percent of the step."""
    import functools

    import torch.nn.functional as F
    if spec.class_weights:
        return None
    if spec.name == "cross_entropy":
        return F.cross_entropy
    if spec.name == "bce":
        return lambda out, y: F.binary_cross_entropy_with_logits(
            out, F.one_hot(y, out.shape[1]).to(out.dtype))
    fn = {"mse": F.mse_loss, "mae": F.l1_loss,
          "huber": functools.partial(F.huber_loss, delta=_huber_delta(spec))}.get(spec.name)
    return None if fn is None else (lambda out, y: fn(out, y.reshape(out.shape)))


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
    # Binary cross-entropy with logits on each of the two class logits against the one-hot
    # target; the prediction stays argmax of the logits as for cross_entropy. Validation
    # refuses more than two classes (there cross_entropy is the right loss).
    import torch.nn.functional as F

    def fn(out, y):
        target = F.one_hot(y, out.shape[1]).to(out.dtype)
        return F.binary_cross_entropy_with_logits(out, target, reduction="none").mean(dim=1)
    return fn


def _perceptron(spec, info) -> LossFn:
    # The multi-class perceptron criterion. Its gradient on a misclassified sample is +x for
    # the winning class's weights and -x for the true class's: an SGD step with it is exactly
    # Rosenblatt's update rule (and nothing moves for a correctly classified sample).
    def fn(out, y):
        return out.max(dim=1).values - out.gather(1, y[:, None])[:, 0]
    return fn


def _regression(kind: str) -> Callable[[object, "DatasetInfo"], LossFn]:
    def build(spec, info) -> LossFn:
        import functools

        import torch.nn.functional as F
        fn = {"mse": F.mse_loss, "mae": F.l1_loss,
              "huber": functools.partial(F.huber_loss, delta=_huber_delta(spec))}[kind]
        # Targets (N,) or (N, k) against outputs (N, k): one loss per sample, the mean over
        # its outputs, so a forecast of k steps weighs like a single value.
        return lambda out, y: fn(out, y.reshape(out.shape), reduction="none").mean(dim=1)
    return build


def _huber_delta(spec) -> float:
    return spec.huber_delta if spec.HasField("huber_delta") else DEFAULT_HUBER_DELTA


_CLASSIFICATION = frozenset({"classification"})
_REGRESSION = frozenset({"regression"})
register_loss("cross_entropy", Loss(_CLASSIFICATION, _cross_entropy, accepts_class_weights=True))
register_loss("bce", Loss(_CLASSIFICATION, _bce, max_classes=2))
register_loss("perceptron", Loss(_CLASSIFICATION, _perceptron))
register_loss("mse", Loss(_REGRESSION | {"reconstruction"}, _regression("mse")))
register_loss("mae", Loss(_REGRESSION, _regression("mae")))
register_loss("huber", Loss(_REGRESSION, _regression("huber"), accepts_huber_delta=True))
