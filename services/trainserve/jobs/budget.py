"""The model-size bound: what a checked spec's network costs to train, known before it starts.

Every spec field has its own bound, but their product does not: an MLP of 64 layers of 16 384
units passes each width and depth check and has 16.9 billion parameters (253 GiB to train
with Adam), enough to take a worker down. `check_model_budget` estimates, at submission, from the whole spec:

- the parameters, counted on the network the training loop would build (`zoo.build_model`),
  built on torch's `meta` device (shapes only, no memory, no compute);
- the training memory of one worker, in float32 bytes: weights + gradients + the optimizer's
  state (Adam: two copies of the weights; SGD or RMSprop with momentum: one more) + one more
  copy of the gradients for DDP's buckets on several workers + the activations kept for the
  backward pass of one batch per worker (every tensor a forward on meta inputs produces; a GAN
  counts the generator and both discriminator passes of its step).

and refuses a job above `MAX_PARAMS` or `MAX_TRAIN_BYTES` with `ResourceExhausted`, naming the
numbers and the limits. A search is checked at its largest point (`_largest_trial`).

Torch is imported on first use; the job API calls `warm` at start-up so that no submission
pays for it. The forward is measured at two batch sizes and extrapolated (activations are linear in the batch),
so the estimate is cached by the model-relevant part of the spec alone and a job differing
only in batch size, optimizer or epochs costs no rebuild. Recurrent layers are not run on meta
(torch unrolls them step by step, which would cost seconds for long sequences): their outputs
are shaped directly and their per-step state is counted by formula (`_RNN_STATE`). The
uploaded data itself is bounded separately (`datasets.MAX_DATASET_VALUES`).
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
from dataclasses import dataclass

from trainserve.core.errors import ResourceExhausted

log = logging.getLogger(__name__)

FLOAT_BYTES = 4
# Defaults: every example in examples/ stays below 1/300 of both (the largest, transformer_sine,
# needs about 24 MiB; resnet_digits has 175 000 parameters); a ResNet-18-sized network
# (channels 64-512, 11.2 million parameters) on 28x28 images needs about 0.95 GiB at batch 128.
DEFAULT_MAX_PARAMS = 100_000_000
DEFAULT_MAX_TRAIN_BYTES = 8 << 30
ENV_MAX_PARAMS = "TRAINSERVE_MAX_MODEL_PARAMS"
ENV_MAX_TRAIN_BYTES = "TRAINSERVE_MAX_TRAIN_BYTES"
# Copies of the trainable parameters an optimizer keeps, by name: (without, with) momentum.
# An optimizer not listed counts as Adam's two.
_OPTIMIZER_STATE = {"adam": (2, 2), "adamw": (2, 2), "sgd": (0, 1), "gd": (0, 1),
                    "rmsprop": (1, 2), "perceptron": (0, 0)}
# Bytes a recurrent layer's training step holds per sample, step, layer and direction, in
# float32 values per unit of its hidden size: the gates before and after their nonlinearity,
# the cell state and its tanh, the hidden state, and the gates' gradients in backward.
# Calibrated on torch's CPU allocations for examples/lstm_sine.yaml and gru_sine.yaml (the
# real peaks: 11.2 and 5.5 MiB; these give 10.6 and 6.5).
_RNN_STATE = {"LSTM": 20, "GRU": 12, "RNN": 3}
# A guard on the meta forward's cost: far above any zoo network's op count (a 48-layer
# transformer runs about 2 000), so a network that passes it is estimated in milliseconds.
MAX_META_OPS = 50_000
# The spec fields `estimate` reads: search axes elsewhere cannot change it.
_SIZE_PATHS = ("model.", "dataset.", "split.", "scaling.", "training.batch_size",
               "optimizer.name", "optimizer.momentum")
_PROBE_BATCHES = (2, 4)  # two points of the line activation bytes = a + b * batch


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(float(raw))  # accepts 1e8
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"{name} must be a number > 0, got {raw!r}")
    return value


# One owner for each limit: set for the API process by the environment, read once.
MAX_PARAMS = _env_int(ENV_MAX_PARAMS, DEFAULT_MAX_PARAMS)
MAX_TRAIN_BYTES = _env_int(ENV_MAX_TRAIN_BYTES, DEFAULT_MAX_TRAIN_BYTES)


@dataclass(frozen=True)
class Estimate:
    """What one worker of a job holds while training, in float32 bytes.

    `activations_exact` is False where the meta forward failed and the activations are left
    out (the parameters alone are then checked); `built` is False where even the network
    could not be built on meta (nothing is checked: logged, and training will say why)."""
    params: int
    batch: int  # samples per worker in one step
    weight_bytes: int
    grad_bytes: int
    optimizer_bytes: int
    activation_bytes: int
    activations_exact: bool = True
    built: bool = True

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.grad_bytes + self.optimizer_bytes + self.activation_bytes


@dataclass(frozen=True)
class _Profile:
    """The batch-independent facts of a network: parameters and activations = a + b * batch."""
    params: int
    act_fixed: int
    act_per_sample: int
    exact: bool
    built: bool = True


def check_model_budget(spec, max_params: int | None = None,
                       max_train_bytes: int | None = None) -> Estimate:
    """Refuse (`ResourceExhausted`) a checked spec whose network, or the largest trial of its
    search, exceeds the parameter or per-worker memory limit (default `MAX_PARAMS`,
    `MAX_TRAIN_BYTES`). Returns the estimate that was checked."""
    max_params = MAX_PARAMS if max_params is None else max_params
    max_bytes = MAX_TRAIN_BYTES if max_train_bytes is None else max_train_bytes
    base = estimate(spec)
    trial = _largest_trial(spec) if spec.HasField("search") else None
    for where, est in [("", base)] + ([(f" (the search's largest trial, {trial[0]})",
                                        trial[1])] if trial else []):
        if est.built and (est.params > max_params or est.total_bytes > max_bytes):
            raise ResourceExhausted(
                f"spec.model: the model{where} has {_count(est.params)} parameters and needs "
                f"~{_size(est.total_bytes)} to train at batch {est.batch} per worker "
                f"({_breakdown(est)}); the server's limit is {_count(max_params)} parameters "
                f"/ {_size(max_bytes)} per worker: use fewer or narrower layers, or a smaller "
                f"spec.training.batch_size")
    return base if trial is None or base.total_bytes >= trial[1].total_bytes else trial[1]


def estimate(spec, info=None) -> Estimate:
    """The training cost of one worker of a checked (defaulted) spec; see the module doc.
    `info` is the (task-)`DatasetInfo` the network sees, by default the spec's dataset's."""
    from trainserve.training.datasets import dataset_info
    from trainserve.training.tasks import task_info

    info = info or task_info(spec, dataset_info(spec.dataset))
    profile = _profile(_model_key(spec), _shape_key(info))
    batch = batch_per_worker(spec, info)
    params = profile.params
    copies = _OPTIMIZER_STATE.get(spec.optimizer.name, (2, 2))[spec.optimizer.momentum > 0]
    ddp_buckets = params if spec.scaling.num_workers > 1 else 0
    return Estimate(
        params=params, batch=batch, weight_bytes=params * FLOAT_BYTES,
        grad_bytes=(params + ddp_buckets) * FLOAT_BYTES,
        optimizer_bytes=copies * params * FLOAT_BYTES,
        activation_bytes=max(0, profile.act_fixed + profile.act_per_sample * batch),
        activations_exact=profile.exact, built=profile.built)


def warm() -> None:
    """Import torch and estimate a small network once, so that the first submission does not
    pay for it (about 1.5 s and 180 MiB of the API's RSS here, taken at start-up instead)."""
    from trainserve.core.spec import parse_spec
    from trainserve.training.validate import check_spec
    estimate(check_spec(parse_spec({"dataset": {"name": "xor"}, "model": {"mlp": {}}})))


def batch_per_worker(spec, info) -> int:
    """Samples one worker runs forward in a training step (the loop's `_batch_plan`)."""
    from trainserve.training.splits import split_sizes
    from trainserve.training.optimizers import step_size

    n_train = split_sizes(info.num_samples, spec.split.test_fraction, spec.split.val_fraction)[0]
    step = min(step_size(spec.optimizer, spec.training.batch_size, n_train), max(n_train, 1))
    return math.ceil(step / max(spec.scaling.num_workers, 1))


# --- the network, on meta --------------------------------------------------------------------

def _model_key(spec) -> bytes:
    """The model section alone; `transfer` names weights to load, not a shape."""
    from trainserve.core.pb import spec_pb2
    model = spec_pb2.ModelSpec()
    model.CopyFrom(spec.model)
    model.ClearField("transfer")
    return model.SerializeToString(deterministic=True)


def _shape_key(info):
    """`info` without what does not shape the network (name, sizes, class names' text)."""
    return dataclasses.replace(info, name="", num_samples=0,
                               class_names=("",) * len(info.class_names))


@functools.lru_cache(maxsize=1024)
def _profile(model_key: bytes, info) -> _Profile:
    import torch

    from trainserve.core.pb import spec_pb2
    from trainserve.training.zoo import build_model
    spec = spec_pb2.JobSpec()
    spec.model.ParseFromString(model_key)
    try:
        with torch.device("meta"):
            model = build_model(spec, info)
    except Exception as exc:  # noqa: BLE001 - a zoo bug must not fail every submission
        log.warning("could not build %s on meta (%r); its size is not checked",
                    spec.model.WhichOneof("arch"), exc)
        return _Profile(0, 0, 0, exact=False, built=False)
    params = sum(p.numel() for p in model.parameters())
    try:
        low, high = (_activation_bytes(model, info, b) for b in _PROBE_BATCHES)
    except Exception as exc:  # noqa: BLE001 - an estimate must not fail a submission
        log.warning("meta forward of %s failed (%r); checking its parameters only",
                    spec.model.WhichOneof("arch"), exc)
        return _Profile(params, 0, 0, exact=False)
    b0, b1 = _PROBE_BATCHES
    per_sample = (high - low) // (b1 - b0)
    return _Profile(params, low - per_sample * b0, per_sample, exact=True)


def _activation_bytes(model, info, batch: int) -> int:
    """Bytes of every tensor one training forward of `batch` samples produces (inputs
    included), on meta."""
    import torch
    counter = _TensorBytes()
    _shape_only_rnns(model, counter)
    with torch.device("meta"), counter:
        inputs = _inputs(model, info, batch)
        counter.bytes += sum(t.numel() * t.element_size() for t in inputs)
        if info.task == "generation":  # the GAN step: D(real), D(G(z)), G(z) kept for both
            fake = model.generate(torch.zeros(batch, model.latent_dim))
            model(inputs[0])
            model(fake)
        else:
            model(*inputs)
    return counter.bytes


def _inputs(model, info, batch: int) -> tuple:
    import torch
    if info.task == "seq2seq":  # model(src, tgt): teacher forcing
        return (torch.zeros(batch, *info.input_shape, dtype=torch.long),
                torch.zeros(batch, info.num_targets, dtype=torch.long))
    if info.task == "language_model":
        return (torch.zeros(batch, *info.input_shape, dtype=torch.long),)
    return (torch.zeros(batch, *info.input_shape),)


class _TensorBytes:
    """A torch dispatch mode summing the bytes of every op's output tensors (views excluded:
    they share their base's memory); refuses to run more than `MAX_META_OPS` ops."""

    def __new__(cls):
        from torch.utils._python_dispatch import TorchDispatchMode

        class Mode(TorchDispatchMode):
            def __init__(self):
                super().__init__()
                self.bytes, self.ops = 0, 0

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                self.ops += 1
                if self.ops > MAX_META_OPS:
                    raise RuntimeError(f"more than {MAX_META_OPS} ops in one forward")
                if not getattr(func, "is_view", False):
                    self.bytes += _bytes_of(out)
                return out
        return Mode()


def _bytes_of(out) -> int:
    import torch
    if isinstance(out, torch.Tensor):
        return out.numel() * out.element_size()
    if isinstance(out, (tuple, list)):
        return sum(_bytes_of(o) for o in out)
    return 0


def _shape_only_rnns(model, counter) -> None:
    """Replace each recurrent layer's forward by one that shapes its outputs and counts the
    state it keeps (`_RNN_STATE`) without unrolling the steps."""
    import types

    from torch import nn
    for module in model.modules():
        if isinstance(module, nn.RNNBase):
            module.forward = types.MethodType(functools.partial(_rnn_forward, counter=counter),
                                              module)


def _rnn_forward(rnn, x, hx=None, *, counter):
    import torch
    n, t = (x.shape[0], x.shape[1]) if rnn.batch_first else (x.shape[1], x.shape[0])
    dirs = 2 if rnn.bidirectional else 1
    h = rnn.hidden_size
    kept = n * t * rnn.num_layers * dirs * h * _RNN_STATE.get(rnn.mode, 8)
    counter.bytes += kept * FLOAT_BYTES
    out = torch.zeros((n, t, dirs * h) if rnn.batch_first else (t, n, dirs * h))
    state = torch.zeros(rnn.num_layers * dirs, n, h)
    return out, ((state, torch.zeros_like(state)) if rnn.mode == "LSTM" else state)


# --- searches --------------------------------------------------------------------------------

def _largest_trial(spec):
    """`(description, Estimate)` of the search's largest point: each axis at its candidate of
    the largest estimate (the others at the base), then all of them together; where that
    combination is not a valid spec, the largest single-axis trial. None without axes."""
    from trainserve.core.errors import InvalidArgument
    from trainserve.training.validate import check_spec
    from trainserve.tune.space import apply_values, parse_space

    best, single = {}, None
    for axis in parse_space(spec.search):
        if not axis.path.startswith(_SIZE_PATHS):
            continue  # e.g. the learning rate: the estimate does not read it
        for value in axis.candidates():
            est = estimate(check_spec(apply_values(spec, {axis.path: value})))
            if axis.path not in best or est.total_bytes > best[axis.path][1].total_bytes:
                best[axis.path] = (value, est)
            if single is None or est.total_bytes > single[1].total_bytes:
                single = (f"{axis.path} = {value!r}", est)
    if not best:
        return None
    values = {path: value for path, (value, _) in best.items()}
    try:
        combined = estimate(check_spec(apply_values(spec, values)))
    except InvalidArgument:
        return single
    what = ", ".join(f"{p} = {v!r}" for p, v in sorted(values.items()))
    return (what, combined) if combined.total_bytes >= single[1].total_bytes else single


# --- wording ---------------------------------------------------------------------------------

def _count(n: int) -> str:
    """17.2 billion, 100 million, 12 345."""
    for scale, word in ((1e12, "trillion"), (1e9, "billion"), (1e6, "million")):
        if n >= scale:
            return f"{n / scale:.3g} {word}"
    return f"{n:,}".replace(",", " ")


def _size(n: int) -> str:
    """270 GiB, 8 GiB, 1.5 MiB."""
    for shift, unit in ((40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.3g} {unit}"
    return f"{n} B"


def _breakdown(est: Estimate) -> str:
    acts = (f"activations {_size(est.activation_bytes)}" if est.activations_exact
            else "activations not estimated")
    return (f"weights {_size(est.weight_bytes)}, gradients {_size(est.grad_bytes)}, "
            f"optimizer state {_size(est.optimizer_bytes)}, {acts}")
