"""Transfer learning (`ModelSpec.transfer`): start a network from a registered model's weights.

Two halves:

- torch-free, for the API process at submission: `check_source(spec)` reads the pinned
  source's `meta.json` and the safetensors header (names, shapes; no weights, no pickle) and
  refuses what can be refused without building the network: a missing or unreadable source,
  a `rename` key that matches no source tensor, `freeze` entries that are empty.
- at training (`apply_transfer(spec, module)`, after `build_model`, before the optimizer):
  copy every source tensor whose (renamed) name and shape match one of the network's, freeze
  the `freeze` prefixes, and return a `TransferReport` for the job log. Refused there (as
  `errors.TrainingError`, naming the field and the fix): no tensor fits, a renamed tensor's
  shape differs, a `freeze` prefix that matches no parameter.

Shapes that differ on names that were not renamed are skipped: that is how a classifier head
of another size (or a regression head) gets replaced by a fresh one.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from trainserve.core import errors
from trainserve.training.checks import fail

if TYPE_CHECKING:
    from torch import nn

MODEL_FILE = "model.safetensors"  # = artifacts.MODEL_FILE (that module imports torch)
META_FILE = "meta.json"
FIELD = "spec.model.transfer"
_MAX_HEADER = 100 << 20  # safetensors' own limit on the JSON header


# --- torch-free: source inspection and submission checks -------------------------------------

def read_source_shapes(artifact_path: str | Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of an artifact's `model.safetensors`, from its header alone."""
    path = Path(artifact_path) / MODEL_FILE
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path} is not a safetensors file")
        (size,) = struct.unpack("<Q", raw)
        if size > _MAX_HEADER:
            raise ValueError(f"{path} has an implausible header size {size}")
        header = json.loads(f.read(size))
    return {name: tuple(int(d) for d in entry["shape"])
            for name, entry in header.items() if name != "__metadata__"}


def read_source_meta(artifact_path: str | Path) -> dict:
    return json.loads((Path(artifact_path) / META_FILE).read_text())


def map_name(name: str, rename: Mapping[str, str]) -> tuple[str, bool]:
    """`name` with its longest `rename` prefix replaced; whether a prefix applied."""
    best = max((p for p in rename if name.startswith(p)), key=len, default=None)
    if best is None:
        return name, False
    return rename[best] + name[len(best):], True


def check_source(spec) -> None:
    """Submission-time checks of a spec whose `model.transfer.artifact_path` is pinned.

    Raises `InvalidArgument` with the field path."""
    tr = spec.model.transfer
    if not tr.model and not tr.artifact_path:
        fail(f"{FIELD}.model", "required: the name of a registered model to start from")
    if tr.version < 0:
        fail(f"{FIELD}.version", f"must be >= 0 (0: the latest), got {tr.version}")
    for i, prefix in enumerate(tr.freeze):
        if not prefix:
            fail(f"{FIELD}.freeze[{i}]", "empty prefix: it would freeze the whole network; "
                                         "name the layers to freeze, e.g. 'fc1.'")
    if not tr.artifact_path:
        fail(f"{FIELD}.model", f"model {tr.model!r} could not be resolved to an artifact")
    what = f"model {tr.model!r}" + (f" version {tr.version}" if tr.version else "")
    try:
        shapes = read_source_shapes(tr.artifact_path)
        read_source_meta(tr.artifact_path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        fail(f"{FIELD}.model", f"the weights of {what} cannot be read ({exc}); "
                               f"register it again or pick another version")
    for prefix in tr.rename:
        if not any(name.startswith(prefix) for name in shapes):
            known = sorted({n.split(".")[0] + "." for n in shapes})
            fail(f"{FIELD}.rename", f"{prefix!r} matches no tensor of {what}; its tensors "
                                    f"start with {', '.join(known)}")


def pin_source(spec, resolve) -> None:
    """Set `spec.model.transfer.artifact_path` (in place) through `resolve(name, version)`,
    which returns the artifact directory or None when there is no such model/version."""
    tr = spec.model.transfer
    if tr.artifact_path:
        fail(f"{FIELD}.artifact_path", "set by the server; name the model (and version) "
                                       "instead")
    if not tr.model:
        fail(f"{FIELD}.model", "required: the name of a registered model to start from")
    path = resolve(tr.model, tr.version)
    if not path:
        what = f"version {tr.version} of model {tr.model!r}" if tr.version else \
            f"model {tr.model!r}"
        fail(f"{FIELD}.model", f"{what} is not registered; list the registered models and "
                               f"their versions with the model API (e.g. `trainserve models`)")
    tr.artifact_path = str(path)


# --- training --------------------------------------------------------------------------------

@dataclass
class TransferReport:
    """What `apply_transfer` did: target names loaded (and from which source name), skipped
    source names with the reason, frozen parameter names."""
    loaded: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    frozen: list[str] = field(default_factory=list)

    def lines(self, source: str) -> list[str]:
        out = [f"transfer from {source}: loaded {len(self.loaded)} tensor(s) "
               f"({', '.join(self.loaded) or 'none'})"]
        if self.skipped:
            out.append(f"transfer: skipped {len(self.skipped)} source tensor(s): " + "; ".join(
                f"{k} ({v})" for k, v in self.skipped.items()))
        if self.frozen:
            out.append(f"transfer: froze {len(self.frozen)} parameter(s): "
                       f"{', '.join(self.frozen)}")
        return out


def apply_transfer(spec, module: "nn.Module") -> TransferReport | None:
    """Load, map and freeze as `spec.model.transfer` says (None when it is absent).

    Raises `errors.TrainingError` for the refusals in the module docstring."""
    if not spec.model.HasField("transfer"):
        return None
    from safetensors.torch import load_file
    tr = spec.model.transfer
    try:
        source = load_file(str(Path(tr.artifact_path) / MODEL_FILE))
    except (OSError, ValueError, RuntimeError) as exc:
        raise errors.TrainingError(
            f"{FIELD}: cannot read the weights of model {tr.model!r} at "
            f"{tr.artifact_path} ({exc}); resubmit naming a registered model") from None
    report = load_matching(module, source, dict(tr.rename))
    report.frozen = freeze(module, list(tr.freeze))
    return report


def load_matching(module: "nn.Module", source: Mapping, rename: Mapping[str, str]
                  ) -> TransferReport:
    """Copy every tensor of `source` whose mapped name and shape match one of `module`'s
    state; refuse a renamed tensor of another shape, and a source of which nothing fits."""
    import torch
    target = module.state_dict()
    report = match_shapes({k: tuple(v.shape) for k, v in target.items()},
                          {k: tuple(v.shape) for k, v in source.items()}, rename)
    with torch.no_grad():
        for new, name in report.loaded.items():
            target[new].copy_(source[name].to(target[new].dtype))
    return report


def match_shapes(target: Mapping[str, tuple], source: Mapping[str, tuple],
                 rename: Mapping[str, str], error=None) -> TransferReport:
    """Which source tensors load where, by mapped name and shape (`report.loaded`: target ->
    source name). Raises `error(field, reason)` (default: a `TrainingError`) for a renamed
    tensor of another shape and for a source of which nothing fits."""
    error = error or (lambda f, reason: errors.TrainingError(f"{f}: {reason}"))
    report = TransferReport()
    for name, got in source.items():
        new, renamed = map_name(name, rename)
        if new not in target:
            report.skipped[name] = f"no {new!r} here" if renamed else "no such tensor here"
            continue
        want = tuple(target[new])
        if want != tuple(got):
            if renamed:
                raise error(f"{FIELD}.rename", f"maps {name} {list(got)} onto {new} {list(want)}: "
                            f"the shapes differ; size this layer like the source's (e.g. the "
                            f"same hidden widths) or leave the prefix out of "
                            f"spec.model.transfer.rename")
            report.skipped[name] = f"shape {list(got)} here {list(want)}"
            continue
        report.loaded[new] = name
    if not report.loaded:
        names = ", ".join(list(target)[:8])
        raise error(FIELD, f"no tensor of the source model fits this network (by name and "
                    f"shape); map the source's layer names onto this network's ({names}, ...) "
                    f"with spec.model.transfer.rename, e.g. {{'encoder.': ''}} for an "
                    f"autoencoder's encoder")
    return report


def check_shapes(spec) -> None:
    """Submission-time: build the checked spec's network on torch's meta device (shapes, no
    memory) and match the pinned source's tensor shapes against it (`InvalidArgument`)."""
    import torch

    from trainserve.training.datasets import dataset_info
    from trainserve.training.tasks import task_info
    from trainserve.training.zoo import build_model
    tr = spec.model.transfer
    with torch.device("meta"):
        module = build_model(spec, task_info(spec, dataset_info(spec.dataset)))
    target = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    match_shapes(target, read_source_shapes(tr.artifact_path), dict(tr.rename),
                 lambda f, reason: errors.InvalidArgument(reason, field=f))


def freeze(module: "nn.Module", prefixes: list[str]) -> list[str]:
    """Set `requires_grad = False` on parameters under any of `prefixes`; the frozen names.
    A prefix that matches no parameter is refused (a typo would silently train everything)."""
    frozen = []
    names = [n for n, _ in module.named_parameters()]
    for i, prefix in enumerate(prefixes):
        if not any(n.startswith(prefix) for n in names):
            raise errors.TrainingError(
                f"{FIELD}.freeze[{i}]: {prefix!r} matches no parameter of this network; its "
                f"parameters are {', '.join(names[:12])}")
    for name, param in module.named_parameters():
        if any(name.startswith(p) for p in prefixes):
            param.requires_grad_(False)
            frozen.append(name)
    if len(frozen) == len(names):
        raise errors.TrainingError(f"{FIELD}.freeze freezes every parameter; leave at least "
                                   f"the output layer trainable")
    return frozen
