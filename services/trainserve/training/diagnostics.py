"""Per-layer statistics of a network while it trains (`spec.training.diagnostics`).

Both are off by default; each costs time only when asked for:

- `gradients`: after every optimizer step's backward (before clipping), the L2 norm of each
  weight layer's parameter gradients (its weight and bias together); per epoch the mean over
  the epoch's steps, reported as `grad_norm/<layer>`. The norms are summed on the device, so a
  step adds a few small ops and no synchronization.
- `activations`: at the end of each epoch, one forward pass in eval mode over a fixed probe
  batch (the first `PROBE_SAMPLES` samples of the training split), with a forward hook on
  each activation layer: `act_mean/<layer>`, `act_std/<layer>` and `act_saturated/<layer>`,
  the fraction of outputs where the activation's slope is near zero (sigmoid: output below
  `SATURATION` or above 1 - `SATURATION`; tanh: |output| above 1 - `SATURATION`) or, for the
  ReLU family, the fraction of dead units (a unit: a feature, or a conv channel; dead: at most
  0 on every probe sample and position). The hooks exist only during the probe. A module
  applied several times in one forward (a shared ReLU) reports the mean over its calls.

A weight layer is a module owning a trainable parameter of at least 2 dimensions (linear,
convolutional, recurrent, attention, embedding); an activation layer a module of a known
activation class (`ACTIVATION_KINDS`; activations called as functions are not seen). Layers
are named `<position>_<module path>`, the position (1-based, zero-padded) counting layers of
that kind from the input, so names sort in network order. At most `max_layers` (default and
most `MAX_LAYERS`) of each kind are recorded, picked evenly from the first to the last: at most
4 x 16 per-epoch series, which the job's curves, its record and the console's charts carry.

Importing this module does not import torch (validation uses `check_diagnostics`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from trainserve.training.checks import fail

if TYPE_CHECKING:
    import torch

MAX_LAYERS = 16
PROBE_SAMPLES = 256
SATURATION = 0.01
GRAD_NORM, ACT_MEAN, ACT_STD, ACT_SATURATED = "grad_norm", "act_mean", "act_std", "act_saturated"
STATS = (GRAD_NORM, ACT_MEAN, ACT_STD, ACT_SATURATED)
# torch.nn class name -> how its saturation is measured.
ACTIVATION_KINDS = {"Sigmoid": "sigmoid", "Tanh": "tanh", "ReLU": "relu", "LeakyReLU": "relu",
                    "ELU": "relu", "GELU": "relu", "ReLU6": "relu", "SiLU": "relu"}
FIELD = "spec.training.diagnostics"


# -- the spec side (no torch) -----------------------------------------------------------------

def check_diagnostics(training) -> None:
    """`spec.training.diagnostics` of a `TrainingSpec`: `max_layers` in [1, MAX_LAYERS]."""
    d = training.diagnostics
    if d.HasField("max_layers") and not 1 <= d.max_layers <= MAX_LAYERS:
        fail(f"{FIELD}.max_layers", f"must be in [1, {MAX_LAYERS}], got {d.max_layers}")


def max_layers(spec) -> int:
    d = spec.training.diagnostics
    return d.max_layers if d.HasField("max_layers") else MAX_LAYERS


def plots_enabled(spec) -> bool:
    """Whether the job saves the plots of the trained network (default true)."""
    d = spec.training.diagnostics
    return d.plots if d.HasField("plots") else True


def metric_name(stat: str, layer: str) -> str:
    return f"{stat}/{layer}"


def split_name(metric: str) -> tuple[str, str] | None:
    """"grad_norm/01_fc1" -> ("grad_norm", "01_fc1"); None for any other metric."""
    stat, sep, layer = metric.partition("/")
    return (stat, layer) if sep and stat in STATS and layer else None


def pick_evenly(items: list, most: int) -> list:
    """At most `most` of `items`, evenly spaced, the first and the last included."""
    if len(items) <= most:
        return list(items)
    if most == 1:
        return [items[-1]]
    step = (len(items) - 1) / (most - 1)
    return [items[round(i * step)] for i in range(most)]


def layer_names(paths: list[str]) -> list[str]:
    """`<position>_<path>` for module paths in network order (see the module docstring)."""
    width = max(2, len(str(len(paths))))
    return [f"{i:0{width}d}_{path or 'model'}" for i, path in enumerate(paths, start=1)]


# -- layers -----------------------------------------------------------------------------------

def weight_layers(module: "torch.nn.Module") -> list[tuple[str, list]]:
    """(name, trainable parameters) of each weight layer, in network order."""
    found = []
    for path, m in module.named_modules():
        params = [p for p in m.parameters(recurse=False) if p.requires_grad]
        if any(p.dim() >= 2 for p in params):
            found.append((path, params))
    return [(name, params) for name, (_, params) in zip(layer_names([p for p, _ in found]),
                                                        found)]


def activation_layers(module: "torch.nn.Module") -> list[tuple[str, "torch.nn.Module", str]]:
    """(name, module, kind) of each activation layer, in network order."""
    found = [(path, m, ACTIVATION_KINDS[type(m).__name__]) for path, m in module.named_modules()
             if type(m).__name__ in ACTIVATION_KINDS]
    names = layer_names([p for p, _, _ in found])
    return [(name, m, kind) for name, (_, m, kind) in zip(names, found)]


# -- gradients --------------------------------------------------------------------------------

class GradientNorms:
    """Sums each recorded layer's gradient norm over an epoch's steps, on the device."""

    def __init__(self, module: "torch.nn.Module", most: int = MAX_LAYERS):
        import torch
        layers = pick_evenly(weight_layers(module), most)
        self.names = [name for name, _ in layers]
        self.params = [p for _, params in layers for p in params]
        device = self.params[0].device if self.params else torch.device("cpu")
        self.segment = torch.tensor([i for i, (_, params) in enumerate(layers) for _ in params],
                                    dtype=torch.long, device=device)
        self.sums = torch.zeros(len(layers), dtype=torch.float64, device=device)
        self.steps = 0

    def step(self) -> None:
        """After a step's backward: add each layer's gradient norm (a missing grad counts 0)."""
        import torch
        if not self.params:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        norms = torch.stack(torch._foreach_norm(grads)).double()
        per_layer = torch.zeros_like(self.sums).index_add_(0, self.segment, norms.square())
        self.sums += per_layer.sqrt()
        self.steps += 1

    def epoch_metrics(self) -> dict[str, float]:
        """`grad_norm/<layer>`: the mean over the steps since the last call; starts anew."""
        if not self.steps:
            return {}
        means = (self.sums / self.steps).tolist()
        self.sums.zero_()
        self.steps = 0
        return {metric_name(GRAD_NORM, n): v for n, v in zip(self.names, means)}


# -- activations ------------------------------------------------------------------------------

def activation_stats(out: "torch.Tensor", kind: str) -> "torch.Tensor":
    """[mean, std, saturated] of one activation layer's output (see the module docstring)."""
    import torch
    out = out.detach().float()
    if kind == "sigmoid":
        saturated = ((out < SATURATION) | (out > 1 - SATURATION)).float().mean()
    elif kind == "tanh":
        saturated = (out.abs() > 1 - SATURATION).float().mean()
    else:
        units = out.transpose(0, 1).reshape(out.shape[1], -1) if out.dim() >= 2 \
            else out.reshape(1, -1)
        saturated = 1.0 - (units > 0).any(dim=1).float().mean()
    return torch.stack([out.mean(), out.std(unbiased=False), saturated])


class ActivationProbe:
    """Measures the recorded activation layers on one probe forward pass."""

    def __init__(self, module: "torch.nn.Module", most: int = MAX_LAYERS):
        self.layers = pick_evenly(activation_layers(module), most)

    def measure(self, forward: Callable[[], object]) -> dict[str, float]:
        """Run `forward()` (the probe batch through the model) with the hooks in place."""
        import torch
        calls: dict[str, list] = {name: [] for name, _, _ in self.layers}
        handles = [m.register_forward_hook(self._hook(calls[name], kind))
                   for name, m, kind in self.layers]
        try:
            with torch.no_grad():
                forward()
        finally:
            for h in handles:
                h.remove()
        return self._metrics(calls)

    @staticmethod
    def _hook(calls: list, kind: str):
        def hook(module, inputs, output):
            calls.append(activation_stats(output, kind))
        return hook

    @staticmethod
    def _metrics(calls: dict[str, list]) -> dict[str, float]:
        import torch
        metrics = {}
        for name, stats in calls.items():
            if not stats:
                continue
            mean, std, saturated = torch.stack(stats).mean(dim=0).tolist()
            metrics |= {metric_name(ACT_MEAN, name): mean, metric_name(ACT_STD, name): std,
                        metric_name(ACT_SATURATED, name): saturated}
        return metrics


class Diagnostics:
    """What the training loop calls: `step()` after each backward, `epoch_metrics(probe)` at
    the end of each epoch (`probe` runs the probe batch through the model)."""

    def __init__(self, spec, module: "torch.nn.Module"):
        d, most = spec.training.diagnostics, max_layers(spec)
        self.gradients = GradientNorms(module, most) if d.gradients else None
        self.activations = ActivationProbe(module, most) if d.activations else None
        self.step = self.gradients.step if self.gradients is not None else None

    def epoch_metrics(self, probe: Callable[[], object]) -> dict[str, float]:
        metrics = {} if self.gradients is None else self.gradients.epoch_metrics()
        if self.activations is not None:
            metrics |= self.activations.measure(probe)
        return metrics


def make_diagnostics(spec, module: "torch.nn.Module") -> Diagnostics | None:
    """The job's `Diagnostics`, or None when it records no statistics (the default)."""
    d = spec.training.diagnostics
    return Diagnostics(spec, module) if d.gradients or d.activations else None
