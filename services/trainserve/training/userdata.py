"""Uploaded datasets (DatasetService): CSV or NPZ files on the shared storage, pinned in the
job's spec by content hash. Loaded with numpy only — never unpickled.

Two readers of one spec: `uploaded_info` (spec validation, in the API too) answers from the
schema recorded at upload (`UploadedContent.schema`, see `training.describe`) and never opens
the file; `load_uploaded` (the worker) reads the file, checks its hash, validates every value
and checks the classes against that schema.
"""
from __future__ import annotations

import csv
import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from trainserve.core.errors import InvalidArgument
from trainserve.training.describe import MAX_CLASS_VALUES, describe
from trainserve.training.labels import label_of, numeric_if_possible

TASKS = ("classification", "regression")


def load_uploaded(ds) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(x float32, y, class names) of the uploaded content a checked `DatasetSpec` pins.

    Classification targets become class indices 0..K-1 in sorted order of their values, whose
    text is the class name; regression targets are float32.
    """
    up = ds.uploaded
    x, raw_y = _read(up.path, up.format, up.sha256, tuple(ds.feature_columns), ds.target_column)
    if (ds.task or "classification") == "regression":
        try:
            return x, raw_y.astype(np.float32), ()
        except ValueError:
            raise InvalidArgument("the target is not numeric; use task classification",
                                  field="spec.dataset.task") from None
    values, y = np.unique(raw_y, return_inverse=True)
    if len(values) < 2:
        raise InvalidArgument("the target has a single class", field="spec.dataset.target_column")
    classes = tuple(label_of(v) for v in values)
    if up.HasField("schema") and classes != uploaded_info(ds)[2]:
        raise InvalidArgument(f"the classes of {up.path} differ from those recorded at upload; "
                              "upload the dataset again", field="spec.dataset.name")
    return x, y.astype(np.int64), classes


# One file at a time (the folds of a cross-validation read it again otherwise); the API
# never calls this (submission reads the schema).
@lru_cache(maxsize=1)
def _read(path: str, fmt: str, sha256: str, features: tuple[str, ...], target: str):
    data = Path(path).read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise InvalidArgument(f"the stored content of this dataset changed ({path})",
                              field="spec.dataset.name")
    if fmt == "npz":
        return _read_npz(Path(path), features, target)
    return _read_csv(data.decode("utf-8"), features, target)


def _read_npz(path: Path, features, target) -> tuple[np.ndarray, np.ndarray]:
    if features or target:
        raise InvalidArgument("an NPZ dataset has arrays x and y, not columns",
                              field="spec.dataset.feature_columns" if features
                              else "spec.dataset.target_column")
    with np.load(path, allow_pickle=False) as npz:
        if "y" not in npz.files:
            raise InvalidArgument("this NPZ dataset has no array 'y' to train on",
                                  field="spec.dataset.name")
        x, y = npz["x"].astype(np.float32), npz["y"]
    if not np.isfinite(x).all():
        raise InvalidArgument("array 'x' holds NaN or infinite values; fill or drop those "
                              "samples", field="spec.dataset.name")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise InvalidArgument("array 'y' holds NaN or infinite values; fill or drop those "
                              "samples", field="spec.dataset.name")
    return x, y


def _read_csv(text: str, features, target) -> tuple[np.ndarray, np.ndarray]:
    rows = list(csv.reader(text.splitlines()))
    header, body = [h.strip() for h in rows[0]], rows[1:]
    target = target or header[-1]
    if target not in header:
        raise InvalidArgument(f"no column {target!r}; columns: {', '.join(header)}",
                              field="spec.dataset.target_column")
    features = list(features) or [h for h in header if h != target]
    for i, name in enumerate(features):
        if name not in header:
            raise InvalidArgument(f"no column {name!r}; columns: {', '.join(header)}",
                                  field=f"spec.dataset.feature_columns[{i}]")
        if name == target:
            raise InvalidArgument("the target cannot also be a feature",
                                  field=f"spec.dataset.feature_columns[{i}]")
    cols = [header.index(n) for n in features]
    x = np.empty((len(body), len(cols)), dtype=np.float32)
    for r, row in enumerate(body):
        try:
            x[r] = [float(row[c]) for c in cols]
        except ValueError:
            bad = next(features[k] for k, c in enumerate(cols) if not _is_number(row[c]))
            raise InvalidArgument(f"column {bad!r} is not numeric (row {r + 2}); list only "
                                  "numeric feature columns", field="spec.dataset.feature_columns"
                                  ) from None
    _check_finite(x, features)
    y = numeric_if_possible(np.array([row[header.index(target)].strip() for row in body]))
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        row = int(np.flatnonzero(~np.isfinite(y))[0])
        raise InvalidArgument(f"column {target!r} has a missing or non-finite value (row "
                              f"{row + 2}: {body[row][header.index(target)]!r}); fill or drop "
                              "such rows", field="spec.dataset.target_column")
    return x, y


def _check_finite(x: np.ndarray, features: list[str]) -> None:
    """NaN or infinity in a feature would make every loss NaN: refused, naming the place."""
    bad = ~np.isfinite(x)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        raise InvalidArgument(f"column {features[c]!r} has a missing or non-finite value "
                              f"(row {r + 2}: {x[r, c]}); fill or drop such rows",
                              field="spec.dataset.feature_columns")


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


# --- from the schema recorded at upload (validation: never opens the file) -------------------

def uploaded_info(ds) -> tuple[tuple[int, ...], int, tuple[str, ...], int]:
    """(input shape, samples, class names, regression targets) of a pinned `DatasetSpec`,
    with the same refusals (and field paths) `load_uploaded` makes. Content pinned without a
    schema (uploaded before schemas were recorded) is described now, in bounded memory."""
    up = ds.uploaded
    schema = up.schema
    if not up.HasField("schema"):
        schema = describe(up.path, up.format)[0]
    return _npz_info(ds, schema) if up.format == "npz" else _csv_info(ds, schema)


def _fail(field: str, reason: str):
    raise InvalidArgument(reason, field=f"spec.dataset.{field}")


def _target_classes(ds, values, distinct: int, what: str) -> tuple[str, ...]:
    """The classes a classification target has, or () for regression."""
    if (ds.task or "classification") == "regression":
        return ()
    if not values and distinct > MAX_CLASS_VALUES:
        _fail("target_column", f"{what} has more than {MAX_CLASS_VALUES} distinct values, too "
                               "many classes; use task regression for a numeric target")
    if len(values) < 2:
        _fail("target_column", "the target has a single class")
    return tuple(values)


def _npz_info(ds, schema):
    if ds.feature_columns or ds.target_column:
        _fail("feature_columns" if ds.feature_columns else "target_column",
              "an NPZ dataset has arrays x and y, not columns")
    if not schema.y.dtype:
        _fail("name", "this NPZ dataset has no array 'y' to train on")
    x, y = tuple(schema.x.shape), tuple(schema.y.shape)
    if len(y) != 1 and (ds.task or "classification") == "classification":
        _fail("target_column", f"array 'y' has shape {list(y)}; classification needs one "
                               "label per sample")
    classes = _target_classes(ds, schema.y.classes, schema.y.distinct_values, "array 'y'")
    return x[1:], x[0], classes, 1 if len(y) == 1 else int(np.prod(y[1:]))


def _csv_info(ds, schema):
    header = [c.name for c in schema.columns]
    columns = {c.name: c for c in schema.columns}
    target = ds.target_column or header[-1]
    if target not in columns:
        _fail("target_column", f"no column {target!r}; columns: {', '.join(header)}")
    features = list(ds.feature_columns) or [h for h in header if h != target]
    for i, name in enumerate(features):
        if name not in columns:
            _fail(f"feature_columns[{i}]", f"no column {name!r}; columns: {', '.join(header)}")
        if name == target:
            _fail(f"feature_columns[{i}]", "the target cannot also be a feature")
    # The first bad row (then column) is the one the worker meets first, row by row.
    text = [columns[n] for n in features if not columns[n].numeric]
    if text:
        c = min(text, key=lambda c: c.bad_row)
        _fail("feature_columns", f"column {c.name!r} is not numeric (row {c.bad_row}); list "
                                 "only numeric feature columns")
    odd = [columns[n] for n in features if columns[n].bad_row]
    if odd:
        c = min(odd, key=lambda c: c.bad_row)
        _fail("feature_columns", f"column {c.name!r} has a missing or non-finite value (row "
                                 f"{c.bad_row}: {np.float32(float(c.bad_value))}); fill or "
                                 "drop such rows")
    t = columns[target]
    if t.numeric and t.bad_row:
        _fail("target_column", f"column {target!r} has a missing or non-finite value (row "
                               f"{t.bad_row}: {t.bad_value.strip()!r}); fill or drop such rows")
    if ds.task == "regression" and not t.numeric:
        _fail("task", "the target is not numeric; use task classification")
    classes = _target_classes(ds, t.classes, t.distinct_values, f"column {target!r}")
    return (len(features),), int(schema.num_rows), classes, 1


def schema_for_job(schema, target_column: str):
    """A copy of a dataset's schema for one job: class names kept only for the column that
    will be its target (a spec carries tens of names, not every column's values)."""
    out = type(schema)()
    out.CopyFrom(schema)
    if out.columns:
        target = target_column or out.columns[-1].name
        for c in out.columns:
            if c.name != target:
                del c.classes[:]
    return out
