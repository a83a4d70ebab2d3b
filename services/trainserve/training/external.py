"""External validation, in the worker: a registered model's final metrics and plots on another
dataset (`spec.evaluate`, admitted by `jobs.evaluation`).

Nothing is fitted again: the inputs go through the model's own preprocessing (its table
encoding and normalization, as at serving), labels are matched to the model's classes by
name, and every sample of the dataset is the final split. The metrics are those a training
job computes on its test split (`metrics.final_metrics`, the clinical ones included), under the
same `test_*` names so a training job and its evaluations compare column by column; the plots
come from the same `evaluation.npz` (`training.evaluation`). No Ray, no Redis.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from trainserve.core.errors import InvalidArgument
from trainserve.training.artifacts import info_from_meta, load_artifact
from trainserve.training.data import PreparedData
from trainserve.training.datasets import dataset_hash, dataset_info, load_dataset
from trainserve.training.evaluation import EVALUATION_FILE, save_evaluation
from trainserve.training.losses import build_loss
from trainserve.training.paths import JobPaths
from trainserve.training.reporting import Reporter
from trainserve.training.results import TrainResult
from trainserve.training.task_hooks import make_task

DATASET_FIELD = "spec.evaluate.dataset"
CHUNK = 4096  # samples per forward pass
SPLIT = "test"


def evaluate_model(spec, job_dir: str | Path, reporter: Reporter, *, num_threads: int = 1,
                   device: str | torch.device = "cpu") -> TrainResult:
    """Evaluate the version `spec.evaluate` pins on `spec.dataset`; rank 0's files as a
    training run leaves them (`result.json`, `evaluation.npz`), and no artifact."""
    torch.set_num_threads(max(1, int(num_threads)))
    paths, ev = JobPaths(Path(job_dir)), spec.evaluate
    loaded = load_artifact(ev.artifact_path)
    model_spec = loaded.spec
    info = info_from_meta(loaded.meta, model_spec)
    reporter.log(f"evaluating {ev.model_name}:{ev.model_version} on {ev.dataset}")
    data = prepare_external(spec.dataset, loaded.preprocessing, info)
    module = loaded.module.to(device)
    task = make_task(model_spec, data.info, build_loss(model_spec.loss, data.info))
    x = torch.from_numpy(data.x_test).to(device)
    y = torch.from_numpy(data.y_test).to(device)
    out, losses = predict(task, module, x, y)
    metrics, cm = task.final_metrics(SPLIT, out, x, y, losses, module)
    save_evaluation(paths.root / EVALUATION_FILE, data, module, out, x, y,
                    model_spec.training.seed)
    result = TrainResult("succeeded", metrics, None, data.dataset_hash, cm)
    result.write(paths.result)
    reporter.log(f"evaluated {len(x)} samples: " + ", ".join(
        f"{k}={v:.4g}" for k, v in sorted(metrics.items()) if k.count("_") == 1))
    return result


@torch.no_grad()
def predict(task, module, x: torch.Tensor, y: torch.Tensor):
    """The outputs and per-sample losses of the whole set, `CHUNK` samples at a time."""
    module.eval()
    parts = [task.evaluate(module, x[i:i + CHUNK], y[i:i + CHUNK])
             for i in range(0, len(x), CHUNK)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def prepare_external(ds, pre, info) -> PreparedData:
    """Every sample of `ds` as the final split, through the model's preprocessing `pre`, with
    targets as the model's class indices; `info` is the model's."""
    x, y, classes = load_raw(ds, pre)
    digest = dataset_hash(x, y)  # what exactly was evaluated (text cells too)
    if pre.encoding is not None:
        x = _encode(pre.encoding, x)
    if tuple(x.shape[1:]) != tuple(info.input_shape):
        raise InvalidArgument(f"samples of shape {list(x.shape[1:])}; the model takes "
                              f"{list(info.input_shape)}", field=DATASET_FIELD)
    if info.task == "classification":
        y = to_model_classes(y, classes, info.class_names)
    info = replace(info, num_samples=len(x))
    empty_x = np.zeros((0, *info.input_shape), np.float32)
    empty_y = y[:0]
    return PreparedData(info, empty_x, empty_y, empty_x, empty_y, pre.apply(x), y, pre, digest)


def load_raw(ds, pre) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(inputs, targets, the dataset's class names): text cells for a model with a table
    encoding, floats otherwise."""
    if not ds.HasField("uploaded"):
        x, y = load_dataset(ds)
        return x, y, dataset_info(ds).class_names
    if pre.encoding is None:
        from trainserve.training.userdata import load_uploaded
        return load_uploaded(ds)
    from trainserve.training.userdata import load_uploaded_table, table_plan
    return load_uploaded_table(ds, table_plan(ds, always=True))


def _encode(encoding, cells: np.ndarray) -> np.ndarray:
    try:
        return encoding.encode(cells)
    except ValueError as exc:
        raise InvalidArgument(str(exc), field=DATASET_FIELD) from None


def to_model_classes(y: np.ndarray, classes, model_classes) -> np.ndarray:
    """Class indices `y` of the dataset's `classes` as indices of the model's classes, matched
    by name; a label the model does not know is refused."""
    index = {name: i for i, name in enumerate(model_classes)}
    unknown = [c for c in classes if c not in index]
    if unknown:
        raise InvalidArgument(f"labels {unknown[:10]} are not classes of the model (its "
                              f"classes: {', '.join(model_classes)})", field=DATASET_FIELD)
    mapping = np.array([index[c] for c in classes], dtype=np.int64)
    return mapping[np.asarray(y, dtype=np.int64)]
