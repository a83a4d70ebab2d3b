"""The model zoo: one module per architecture, registered under its `ModelSpec.arch` oneof name.

Importing this package does not import torch: each `Architecture` builds its network lazily, so
spec validation (`apply_defaults`, `check`) stays cheap in the API process.

Besides the architecture's own sub-message, every model has the architecture-independent
`ModelSpec` fields `init`, `init_std`, `leaky_relu_slope` and `elu_alpha`:
`apply_model_defaults` fills them and `check_model_options` validates them. Every registered
architecture's `check` runs both first, so `validate.check_spec` covers them through the
per-architecture hook alone; `build_model` applies them.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

from trainserve.training.activations import ActivationParams, activation_params
from trainserve.training.checks import check_choice, check_range, fail
from trainserve.training.init import DEFAULT_INIT, DEFAULT_INIT_STD, INITS, InitParams, apply_init
from trainserve.training.registry import Registry

if TYPE_CHECKING:
    from torch import nn

    from trainserve.training.datasets import DatasetInfo

# What to use instead, by input kind, for the refusals of architectures that do not fit it.
SUGGESTIONS = {
    "image": "use cnn or resnet for images (or lenet5; mlp takes the flattened pixels)",
    "sequence": "use rnn or transformer for sequences (mlp takes the flattened window); an "
                "NPZ of single-channel images needs its channel axis: x[:, None], [N, 1, H, W]",
    "tabular": "use mlp for tabular data (perceptron, rbf and transformer take it too)",
}
_SHAPES = {"image": "[C, H, W]", "sequence": "[T, F]", "tabular": "[F]"}


@dataclass(frozen=True)
class Architecture:
    """A zoo entry; `msg` is the architecture's sub-message (e.g. `MLPSpec`).

    - `apply_defaults(msg)`: fill unset fields in place.
    - `check(msg, path, info, spec)`: raise `InvalidArgument` with paths under `path`
      (`spec.model.<arch>`); `spec` is the `JobSpec` for cross-field checks (dataset, split
      and training are defaulted by then; loss and optimizer are not yet).
    - `build(msg, info)`: the network, input `(N, *info.input_shape)` -> `(N, info.output_dim)`.
      It creates activations with `make_activation(name)`, which picks up the model's
      `leaky_relu_slope` / `elu_alpha`.
    """
    apply_defaults: Callable[[object], None]
    check: Callable[[object, str, "DatasetInfo", object], None]
    build: Callable[[object, "DatasetInfo"], "nn.Module"]
    # Normalizes over the batch whatever its fields say (ResNet); others follow `batch_norm`.
    always_batch_norm: bool = False


ARCHITECTURES: Registry[Architecture] = Registry("architecture")


def register_architecture(name: str, arch: Architecture) -> Architecture:
    """Register an architecture under its `ModelSpec.arch` oneof field name.

    The registered entry's `check` first applies and checks the model-wide fields
    (`apply_model_defaults`, `check_model_options`), then runs `arch.check`.
    """
    return ARCHITECTURES.register(name, Architecture(
        arch.apply_defaults, _with_model_options(arch.check), arch.build))


def get_architecture(name: str) -> Architecture:
    """The architecture registered under `name` (`ValueError` listing known names otherwise)."""
    return ARCHITECTURES.get(name)


def _with_model_options(check):
    @functools.wraps(check)
    def checked(msg, path: str, info, spec) -> None:
        # validate.check_spec calls only the architecture's hooks; the model-wide fields ride
        # along here so that they are defaulted and checked whatever the architecture.
        apply_model_defaults(spec.model)
        check_model_options(spec.model)
        check(msg, path, info, spec)
    return checked


# --- model-wide fields -----------------------------------------------------------------------

def apply_model_defaults(model_spec) -> None:
    """Fill `init`, `init_std`, `leaky_relu_slope` and `elu_alpha` of a `ModelSpec` in place."""
    defaults = ActivationParams()
    model_spec.init = model_spec.init or DEFAULT_INIT
    if not model_spec.HasField("init_std"):
        model_spec.init_std = DEFAULT_INIT_STD
    if not model_spec.HasField("leaky_relu_slope"):
        model_spec.leaky_relu_slope = defaults.leaky_relu_slope
    if not model_spec.HasField("elu_alpha"):
        model_spec.elu_alpha = defaults.elu_alpha


def check_model_options(model_spec, path: str = "spec.model") -> None:
    """Validate the model-wide fields of a defaulted `ModelSpec`; raises `InvalidArgument`."""
    check_choice(model_spec.init, INITS, f"{path}.init", "init")
    if not (math.isfinite(model_spec.init_std) and model_spec.init_std > 0):
        fail(f"{path}.init_std", f"must be > 0, got {model_spec.init_std:g}")
    check_range(model_spec.leaky_relu_slope, f"{path}.leaky_relu_slope", low=0.0, high=1.0,
                high_open=False)
    if not (math.isfinite(model_spec.elu_alpha) and model_spec.elu_alpha > 0):
        fail(f"{path}.elu_alpha", f"must be > 0, got {model_spec.elu_alpha:g}")


def require_input(info: "DatasetInfo", path: str, arch: str, kinds: Iterable[str]) -> None:
    """Refuse (`InvalidArgument` at `path`) an input kind `arch` cannot take, saying what to
    use instead. `kinds` are `DatasetInfo.input_kind` values: image, sequence, tabular."""
    kinds = tuple(kinds)
    if info.input_kind in kinds:
        return
    wanted = " or ".join(f"{k} input {_SHAPES[k]}" for k in kinds)
    fail(path, f"{arch} needs {wanted}; dataset {info.name!r} has {info.input_kind} input of "
               f"shape {list(info.input_shape)}; {SUGGESTIONS[info.input_kind]}")


def uses_batch_norm(model_spec) -> bool:
    """Whether the network normalizes over the batch (and so needs >= 2 samples a step)."""
    arch = model_spec.WhichOneof("arch")
    if arch is None:
        return False
    msg = getattr(model_spec, arch)
    return get_architecture(arch).always_batch_norm or bool(getattr(msg, "batch_norm", False))


def check_batch_norm_batch(spec, uses_batch_norm: bool = True) -> None:
    """BatchNorm cannot normalize over a batch of one sample (torch raises mid-training)."""
    if uses_batch_norm and spec.training.batch_size < 2:
        fail("spec.training.batch_size", "batch_norm needs batch_size >= 2")


# --- building --------------------------------------------------------------------------------

def build_model(spec, info: "DatasetInfo") -> "nn.Module":
    """The network for a checked `JobSpec`: logits `(N, num_classes)` for classification,
    values `(N, output_dim)` for regression.

    Activations get the spec's `leaky_relu_slope` / `elu_alpha`; weights are then initialized
    with `init` (see `training.init`). Regression networks end in a fixed `OutputScale` (buffers,
    saved with the weights) that the training loop sets to the training targets' mean and std:
    the layers then learn a standardized target, while outputs and losses stay in the
    dataset's units.
    """
    arch = spec.model.WhichOneof("arch")
    if arch is None:
        raise ValueError("spec.model has no architecture set")
    msg = getattr(spec.model, arch)
    act = ActivationParams.from_model_spec(spec.model)
    with activation_params(act):
        model = get_architecture(arch).build(msg, info)
    apply_init(model, spec.model.init or DEFAULT_INIT, _init_params(spec.model, msg, act))
    if info.task == "regression":
        from collections import OrderedDict

        from torch import nn

        from trainserve.training.zoo.layers import OutputScale
        model = nn.Sequential(OrderedDict(net=model, target_scale=OutputScale()))
    return model


def _init_params(model_spec, msg, act: ActivationParams) -> InitParams:
    # kaiming's gain follows the architecture's activation where it is leaky_relu; ReLU
    # otherwise (He et al.), which is also what the ResNet blocks use.
    std = model_spec.init_std if model_spec.HasField("init_std") else DEFAULT_INIT_STD
    if getattr(msg, "activation", "") == "leaky_relu":
        return InitParams(std, "leaky_relu", act.leaky_relu_slope)
    return InitParams(std)


def init_from_data(model: "nn.Module", x_train) -> int:
    """Data-dependent initialization (e.g. RBF centres by k-means) of every submodule that
    has an `init_from_data(x)` method, on the normalized training inputs `x_train` (numpy or
    tensor, `(N, *input_shape)`). Call once after `build_model`, before training and before
    any DDP wrapping; a resumed checkpoint overwrites it. Returns how many modules took it.
    """
    import torch
    x = torch.as_tensor(x_train, dtype=torch.float32)
    hooks = [m for m in model.modules() if callable(getattr(m, "init_from_data", None))]
    with torch.no_grad():
        for module in hooks:
            module.init_from_data(x)
    return len(hooks)


# Registration happens on import; keep these last.
from trainserve.training.zoo import (  # noqa: E402,F401
    autoencoder, cnn, lenet5, mlp, perceptron, rbf, resnet, rnn, transformer)
from trainserve.training.zoo import gan  # noqa: E402,F401  (generation task)
from trainserve.training.zoo import bert, gpt, seq2seq  # noqa: E402,F401  (token tasks)
