"""Admission of an evaluation job (`spec.evaluate`, external validation; docs/evaluation.md).

An evaluation names a registered model version and a dataset; everything else is the
version's own: its model, loss and dataset options (feature and target columns, missing-value
handling), with the dataset swapped for the one named and pinned like a training job's. The
dataset must fit the model's signature — the model's feature columns (CSV), its input shape
(NPZ, built-in), labels among its classes — or the submission is refused with
INVALID_ARGUMENT on `spec.evaluate.dataset`. A version or dataset the caller may not see is
NOT_FOUND, as one that does not exist. The worker side is `training.external`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from trainserve.core.errors import InvalidArgument, NotFound
from trainserve.core.modelrefs import parse_ref
from trainserve.core.pb import model_pb2, spec_pb2
from trainserve.core.spec import check_scaling

MODEL_FIELD, DATASET_FIELD = "spec.evaluate.model", "spec.evaluate.dataset"
# The label the server gives an evaluation job: "NAME:VERSION" of the version it evaluates,
# so `ListJobs(labels=["evaluates=digits:3"])` lists a version's evaluations.
EVALUATES_LABEL = "evaluates"
TASKS = ("classification", "regression")
# What a user may set beside `evaluate`: the rest comes from the model version.
OWN_FIELDS = ("evaluate", "description", "labels", "priority", "scaling")
SCALING_FIELDS = ("cpus_per_worker", "use_gpu", "max_failures")
# What an evaluation keeps of the version's spec: how to read the data and score the model.
KEPT_FIELDS = ("name", "dataset", "split", "model", "loss", "optimizer", "training")
# Dataset options of a training spec that an evaluation never applies.
TRAINING_ONLY = ("uploaded", "augmentation", "label_fraction")
UPLOAD_ONLY = ("feature_columns", "target_column", "task", "categorical_columns", "missing",
               "missing_indicators", "fill_value", "columns")

Resolve = Callable[[str, int, str], model_pb2.ModelVersion]
Uploaded = Callable[[str], "spec_pb2.UploadedContent | None"]


def check_evaluation(spec: spec_pb2.JobSpec, cluster: dict | None, uploaded: Uploaded,
                     resolve: Resolve) -> spec_pb2.JobSpec:
    """The full spec of the evaluation job `spec` asks for. `resolve(name, version, alias)`
    answers a version the caller may see (NOT_FOUND otherwise); `uploaded(name)` the content
    of the caller's dataset of that name, or None."""
    _check_own_fields(spec)
    mv = resolve_version(spec.evaluate.model, resolve)
    meta = read_meta(mv)
    full = _from_version(spec, mv)
    _pin_dataset(full, meta, uploaded)
    check_signature(full, meta)
    check_scaling(full.scaling, cluster or {})
    return full


def _check_own_fields(spec: spec_pb2.JobSpec) -> None:
    ev = spec.evaluate
    for name in ("model_name", "model_version", "artifact_path"):
        if getattr(ev, name):
            raise InvalidArgument("set by the server; name the model in spec.evaluate.model",
                                  field=f"spec.evaluate.{name}")
    for fd, _ in spec.ListFields():
        if fd.name not in OWN_FIELDS:
            raise InvalidArgument(f"an evaluation takes its {fd.name} from the model version; "
                                  "give only spec.evaluate (and description, labels, "
                                  "priority, scaling)", field=f"spec.{fd.name}")
    for fd, _ in spec.scaling.ListFields():
        if fd.name not in SCALING_FIELDS:
            raise InvalidArgument("an evaluation runs on one worker",
                                  field=f"spec.scaling.{fd.name}")
    if not ev.dataset:
        raise InvalidArgument("required: the dataset to evaluate on", field=DATASET_FIELD)


def resolve_version(text: str, resolve: Resolve) -> model_pb2.ModelVersion:
    """The version `text` (NAME, NAME:VERSION, NAME@ALIAS) names now."""
    if not text:
        raise InvalidArgument("required: NAME, NAME:VERSION or NAME@ALIAS", field=MODEL_FIELD)
    ref = parse_ref(text, MODEL_FIELD)
    return resolve(ref.name, ref.version, ref.alias)


def read_meta(mv: model_pb2.ModelVersion) -> dict:
    """The version's `meta.json`; only classifiers and regressors are evaluated."""
    try:
        meta = json.loads((Path(mv.artifact_uri) / "meta.json").read_text())
    except (OSError, ValueError):
        raise NotFound(f"model {mv.name}:{mv.version} has no readable artifact") from None
    if meta.get("task") not in TASKS:
        raise InvalidArgument(f"{mv.name}:{mv.version} is a {meta.get('task')} model; "
                              f"evaluation takes {' and '.join(TASKS)} models", field=MODEL_FIELD)
    return meta


def _from_version(spec: spec_pb2.JobSpec, mv: model_pb2.ModelVersion) -> spec_pb2.JobSpec:
    """The version's spec, less what only training uses, with the caller's own fields."""
    full = spec_pb2.JobSpec()
    full.CopyFrom(mv.spec)
    for fd, _ in full.ListFields():
        if fd.name not in KEPT_FIELDS:
            full.ClearField(fd.name)
    full.model.ClearField("transfer")
    full.split.folds = 0
    full.evaluate.CopyFrom(spec.evaluate)
    full.scaling.CopyFrom(spec.scaling)
    full.description, full.priority = spec.description, spec.priority
    full.labels.update(spec.labels)
    full.labels[EVALUATES_LABEL] = f"{mv.name}:{mv.version}"
    full.name = mv.name
    full.scaling.num_workers = 1
    ev = full.evaluate
    ev.model_name, ev.model_version, ev.artifact_path = mv.name, mv.version, mv.artifact_uri
    return full


def _pin_dataset(full: spec_pb2.JobSpec, meta: dict, uploaded: Uploaded) -> None:
    """Point `full.dataset` at the dataset named: the caller's upload (pinned by content, as a
    training job's), or a built-in one; NOT_FOUND for neither."""
    from trainserve.training.datasets import DATASETS
    from trainserve.training.userdata import schema_for_job

    ds, name = full.dataset, full.evaluate.dataset
    trained_on = spec_pb2.DatasetSpec()
    trained_on.CopyFrom(ds)
    for field in TRAINING_ONLY:
        ds.ClearField(field)
    ds.name = name
    if name in DATASETS.names():
        for field in UPLOAD_ONLY:
            ds.ClearField(field)
        return
    content = uploaded(name)
    if content is None:
        raise NotFound(f"{DATASET_FIELD}: dataset {name!r} not found (neither one you uploaded "
                       f"nor a built-in one: {', '.join(DATASETS.names())})")
    ds.uploaded.CopyFrom(content)
    ds.task = meta["task"]
    if content.format == "csv":
        _name_csv_columns(ds, trained_on, meta)
    else:
        for field in UPLOAD_ONLY[:2] + UPLOAD_ONLY[3:]:
            ds.ClearField(field)
    if content.HasField("schema"):
        ds.uploaded.schema.CopyFrom(schema_for_job(content.schema, ds.target_column))


def _name_csv_columns(ds: spec_pb2.DatasetSpec, trained_on: spec_pb2.DatasetSpec,
                      meta: dict) -> None:
    """The model's feature and target columns by name (a training spec may have left them to
    the defaults of its own file: every column but the last)."""
    if trained_on.uploaded.format != "csv":
        raise InvalidArgument(f"the model was trained on {_kind(trained_on)} data, not a CSV "
                              "table", field=DATASET_FIELD)
    header = [c.name for c in trained_on.uploaded.schema.columns]
    target = trained_on.target_column or (header[-1] if header else "")
    columns = (meta.get("preprocessing") or {}).get("columns") or []
    features = list(trained_on.feature_columns) or [c["name"] for c in columns] or \
        [h for h in header if h != target]
    del ds.feature_columns[:]
    ds.feature_columns.extend(features)
    ds.target_column = target


def _kind(ds: spec_pb2.DatasetSpec) -> str:
    return f"uploaded {ds.uploaded.format.upper()}" if ds.HasField("uploaded") else \
        f"built-in {ds.name!r}"


def check_signature(full: spec_pb2.JobSpec, meta: dict) -> None:
    """The dataset's info (from its schema) against the model's: input shape, task, classes.
    A refusal of the dataset's own checks names the evaluation's field, and the option of the
    model's spec it came from."""
    from trainserve.training.datasets import dataset_info
    try:
        info = dataset_info(full.dataset)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{full.evaluate.dataset!r} does not fit model "
                              f"{full.evaluate.model_name}:{full.evaluate.model_version}: "
                              f"{exc.reason} (the model's {exc.field})",
                              field=DATASET_FIELD) from None
    encoded = bool((meta.get("preprocessing") or {}).get("columns"))
    shape = list(meta["input_shape"])
    if not encoded and list(info.input_shape) != shape:
        raise InvalidArgument(_shape_advice(full.evaluate.dataset, list(info.input_shape),
                                            shape), field=DATASET_FIELD)
    if info.task != meta["task"]:
        raise InvalidArgument(f"a {info.task} dataset for a {meta['task']} model",
                              field=DATASET_FIELD)
    unknown = sorted(set(info.class_names) - set(meta.get("class_names") or []))
    if meta["task"] == "classification" and unknown:
        raise InvalidArgument(f"labels {unknown[:10]} of {full.evaluate.dataset!r} are not "
                              f"classes of the model (its classes: "
                              f"{', '.join(meta['class_names'])})", field=DATASET_FIELD)


def _shape_advice(name: str, got: list[int], want: list[int]) -> str:
    text = f"{name!r} has samples of shape {got}; the model takes {want}"
    if len(want) == 3 and got == want[1:]:
        text += " (add the channel axis: x[:, None] has shape [N, 1, H, W])"
    return text


def evaluation_message(spec: spec_pb2.JobSpec, metrics: dict[str, float]) -> str:
    """The job's message once done: what was evaluated on what, and the headline metric."""
    ev = spec.evaluate
    key = next((k for k in ("test_accuracy", "test_auc", "test_r2", "test_mae")
                if k in metrics), None)
    shown = f": {key} {metrics[key]:.4g}" if key else ""
    return f"evaluated {ev.model_name}:{ev.model_version} on {ev.dataset}{shown}"
