"""The trained-model artifact: `model.safetensors` + `meta.json` (layout in docs/architecture.md).

Weights are safetensors (loading runs no pickle); the module is rebuilt from the stored spec
through the zoo, so loading needs no code beyond this package.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from google.protobuf import json_format
from torch import nn

from trainserve.core.pb import spec_pb2
from trainserve.training.data import Preprocessing
from trainserve.training.datasets import DatasetInfo
from trainserve.training.zoo import build_model

MODEL_FILE = "model.safetensors"
META_FILE = "meta.json"


@dataclass
class LoadedModel:
    """A loaded artifact: `module` (eval mode, CPU) and the parsed `meta.json`."""
    module: nn.Module
    meta: dict

    @property
    def preprocessing(self) -> Preprocessing:
        """The input normalization to apply before `module`."""
        return Preprocessing.from_dict(self.meta["preprocessing"])

    @property
    def spec(self) -> spec_pb2.JobSpec:
        return json_format.ParseDict(self.meta["spec"], spec_pb2.JobSpec())


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DistributedDataParallel wrapper (or `model` itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def build_meta(spec, info: DatasetInfo, preprocessing: Preprocessing,
               metrics: Mapping[str, float], dataset_hash: str | None,
               extra: Mapping | None = None) -> dict:
    """The `meta.json` document. Non-finite metrics become null (JSON has no NaN). `extra`
    adds JSON-ready entries (e.g. `confusion_matrix`) without overriding the standard ones."""
    return dict(extra or {}) | {
        "spec": json_format.MessageToDict(spec),
        "task": info.task,
        "class_names": list(info.class_names),
        "input_shape": list(info.input_shape),
        "output_dim": info.output_dim,
        "preprocessing": preprocessing.to_dict(),
        "metrics": {k: (float(v) if math.isfinite(v) else None) for k, v in metrics.items()},
        "dataset_hash": dataset_hash,
        "seed": spec.training.seed,
    }


def save_artifact(directory: str | Path, model: nn.Module, spec, info: DatasetInfo,
                  preprocessing: Preprocessing, metrics: Mapping[str, float],
                  dataset_hash: str | None = None, extra_meta: Mapping | None = None) -> Path:
    """Write the artifact of a trained `model` (DDP-wrapped or not) into `directory`;
    `extra_meta` adds entries to `meta.json` (see `build_meta`).

    Built in a sibling temp dir that then replaces `directory`, so a reader never sees a
    weights file without its meta (or the reverse). Returns `directory`.
    """
    from safetensors.torch import save_file
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".{directory.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
        save_file(state, str(tmp / MODEL_FILE), metadata={"format": "pt"})
        meta = build_meta(spec, info, preprocessing, metrics, dataset_hash, extra_meta)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        _fsync_files(tmp)
        _replace_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def load_artifact(directory: str | Path) -> LoadedModel:
    """Rebuild the module of an artifact from its spec and load its weights; eval mode."""
    from safetensors.torch import load_file
    directory = Path(directory)
    meta = json.loads((directory / META_FILE).read_text())
    spec = json_format.ParseDict(meta["spec"], spec_pb2.JobSpec())
    module = build_model(spec, info_from_meta(meta, spec))
    module.load_state_dict(load_file(str(directory / MODEL_FILE)), strict=True)
    return LoadedModel(module.eval(), meta)


def info_from_meta(meta: dict, spec) -> DatasetInfo:
    """The `DatasetInfo` fields a model needs, from `meta.json` (sample count is not kept)."""
    task = meta["task"]
    num_classes = meta["output_dim"] if task == "classification" else 0
    num_targets = meta["output_dim"] if task == "regression" else 1  # reconstruction: 1
    return DatasetInfo(spec.dataset.name, task, num_classes, tuple(meta["class_names"]),
                       tuple(meta["input_shape"]), 0, num_targets=num_targets)


def _fsync_files(directory: Path) -> None:
    for path in directory.iterdir():
        with open(path, "rb") as f:
            os.fsync(f.fileno())


def _replace_dir(src: Path, dst: Path) -> None:
    # rename() cannot replace a non-empty directory: move the old one aside first, so `dst`
    # is missing only between two renames, and is never half-written.
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(dst, old)
    os.rename(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
