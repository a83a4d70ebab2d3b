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
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from trainserve.core.errors import InvalidArgument
from trainserve.training.describe import MAX_CLASS_VALUES, describe
from trainserve.training.labels import label_of, numeric_if_possible
from trainserve.training.tabular import (NUMERIC, ColumnPlan, TableEncoding, fit_encoding,
                                         is_missing, missing_mask)
from trainserve.training.tabular_spec import (MISSING_ADVICE, check_missing_cells,
                                              encoded_width, missing_of, needs_encoding,
                                              not_numeric, resolve_columns)

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
    header, body, features, target = _parse_csv(text, features, target)
    cols = [header.index(n) for n in features]
    x = np.empty((len(body), len(cols)), dtype=np.float32)
    for r, row in enumerate(body):
        try:
            x[r] = [float(row[c]) for c in cols]
        except ValueError:
            k = next(k for k, c in enumerate(cols) if not _is_number(row[c]))
            _refuse_cell(features[k], r, row[cols[k]])
    _check_finite(x, features)
    return x, _target_values(body, header, target)


def _refuse_cell(name: str, r: int, text: str):
    """A feature cell that is not a number: missing (blank, NA, ...) or text."""
    if is_missing(text):
        raise InvalidArgument(f"column {name!r} has a missing value (row {r + 2}: {text!r}); "
                              f"{MISSING_ADVICE}", field="spec.dataset.missing")
    raise InvalidArgument(not_numeric(name, r + 2, text), field="spec.dataset.feature_columns")


def _parse_csv(text: str, features, target):
    """(header, data rows, feature names, target name), the names checked."""
    rows = list(csv.reader(text.splitlines()))
    return _parse_csv_rows(rows[0], rows[1:], features, target)


def _parse_csv_rows(header, body, features, target):
    header = [h.strip() for h in header]
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
    return header, body, features, target


def _target_values(body, header, target: str) -> np.ndarray:
    t = header.index(target)
    for r, row in enumerate(body):
        if is_missing(row[t]):
            raise InvalidArgument(f"column {target!r} has a missing value (row {r + 2}: "
                                  f"{row[t]!r}); fill such rows, or drop them with "
                                  "spec.dataset.missing: drop", field="spec.dataset.target_column")
    y = numeric_if_possible(np.array([row[t].strip() for row in body]))
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        row = int(np.flatnonzero(~np.isfinite(y))[0])
        raise InvalidArgument(f"column {target!r} has a missing or non-finite value (row "
                              f"{row + 2}: {body[row][t]!r}); fill or drop such rows",
                              field="spec.dataset.target_column")
    return y


def _check_finite(x: np.ndarray, features: list[str]) -> None:
    """NaN or infinity in a feature would make every loss NaN: refused, naming the place."""
    bad = ~np.isfinite(x)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        if np.isnan(x[r, c]):  # written NaN: a missing value
            raise InvalidArgument(f"column {features[c]!r} has a missing value (row {r + 2}: "
                                  f"nan); {MISSING_ADVICE}", field="spec.dataset.missing")
        raise InvalidArgument(f"column {features[c]!r} has a non-finite value (row {r + 2}: "
                              f"{x[r, c]}); fill or drop such rows",
                              field="spec.dataset.feature_columns")


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


# --- clinical tables: categorical columns and missing values (training.tabular) -------------

@dataclass(frozen=True)
class TablePlan:
    """How an uploaded CSV's feature columns are encoded (`training.tabular_spec`), and
    whether a row with a missing target is left out (`missing: drop`)."""
    columns: tuple[ColumnPlan, ...]
    drop_target: bool = False

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def fit(self, cells: np.ndarray) -> TableEncoding:
        """The encoding fitted on the training split's cells."""
        return fit_encoding(cells, self.columns)


def table_plan(ds, always: bool = False) -> TablePlan | None:
    """The encoding plan of a checked uploaded CSV `DatasetSpec` that needs one (a categorical
    or binary feature, or missing values allowed), else None (unless `always`): its features
    are plain numbers."""
    up = ds.uploaded
    if not ds.HasField("uploaded") or up.format != "csv":
        return None
    schema = up.schema if up.HasField("schema") else describe(up.path, up.format)[0]
    header = [c.name for c in schema.columns]
    target = ds.target_column or header[-1]
    features = tuple(ds.feature_columns) or tuple(h for h in header if h != target)
    plans = resolve_columns(ds, features, {c.name: c for c in schema.columns})
    if not (always or needs_encoding(plans)):
        return None
    return TablePlan(plans, missing_of(ds) == "drop")


def load_uploaded_table(ds, plan: TablePlan) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(text cells [N, features], y, class names) of an uploaded CSV under `plan`: rows with a
    missing cell dropped with `missing: drop`; a numeric column's other cells checked to be
    numbers, naming the first bad cell."""
    up = ds.uploaded
    header, body = _read_rows(up.path, up.sha256)
    header, body, features, target = _parse_csv_rows(header, body, plan.features,
                                                     ds.target_column)
    cols = [header.index(n) for n in features]
    t = header.index(target)
    cells = np.array([[row[c].strip() for c in cols] for row in body], dtype=np.str_)
    cells = cells.reshape(len(body), len(cols))
    keep = _kept_rows(cells, body, t, plan)
    cells, body = cells[keep], [row for row, k in zip(body, keep) if k]
    _check_numeric_cells(cells, features, plan, np.flatnonzero(keep))
    y = _target_values(body, header, target)
    return cells, *_classes_of(ds, y)


def _kept_rows(cells: np.ndarray, body, t: int, plan: TablePlan) -> np.ndarray:
    """Rows without a missing cell in a column whose strategy is drop (nor, with
    `missing: drop`, a missing target)."""
    dropping = np.array([c.missing == "drop" for c in plan.columns], dtype=bool)
    if not (dropping.any() or plan.drop_target):
        return np.ones(len(body), dtype=bool)
    target_missing = np.array([is_missing(row[t]) for row in body], dtype=bool)
    keep = ~((missing_mask(cells) & dropping[None, :]).any(axis=1)
             | (target_missing & plan.drop_target))
    if keep.sum() < 2:
        raise InvalidArgument(f"only {int(keep.sum())} row(s) have no missing value; "
                              "spec.dataset.missing: drop leaves too little to train on",
                              field="spec.dataset.missing")
    return keep


def _check_numeric_cells(cells: np.ndarray, features, plan: TablePlan, rows) -> None:
    """Every cell of a numeric feature is a finite number or (unless its strategy is error)
    missing; the first that is not is refused, naming its row (`rows`: file positions)."""
    for k, (name, column) in enumerate(zip(features, plan.columns)):
        if column.kind != NUMERIC:
            continue
        missing = missing_mask(cells[:, k])
        if column.missing == "error" and missing.any():
            r = int(np.flatnonzero(missing)[0])
            _refuse_cell(name, int(rows[r]), str(cells[r, k]))
        present = np.flatnonzero(~missing)
        try:
            values = cells[present, k].astype(np.float64)
        except ValueError:
            r = next(int(r) for r in present if not _is_number(cells[r, k]))
            _refuse_cell(name, int(rows[r]), str(cells[r, k]))
        if not np.isfinite(values).all():
            r = int(present[np.flatnonzero(~np.isfinite(values))[0]])
            raise InvalidArgument(f"column {name!r} has a non-finite value (row "
                                  f"{rows[r] + 2}: {str(cells[r, k])!r}); fill or drop such rows",
                                  field="spec.dataset.feature_columns")


def _classes_of(ds, raw_y: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Targets as `load_uploaded` gives them: float32 (regression) or class indices."""
    if (ds.task or "classification") == "regression":
        try:
            return raw_y.astype(np.float32), ()
        except ValueError:
            raise InvalidArgument("the target is not numeric; use task classification",
                                  field="spec.dataset.task") from None
    values, y = np.unique(raw_y, return_inverse=True)
    if len(values) < 2:
        raise InvalidArgument("the target has a single class", field="spec.dataset.target_column")
    return y.astype(np.int64), tuple(label_of(v) for v in values)


@lru_cache(maxsize=1)
def _read_rows(path: str, sha256: str) -> tuple[list[str], list[list[str]]]:
    data = Path(path).read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise InvalidArgument(f"the stored content of this dataset changed ({path})",
                              field="spec.dataset.name")
    rows = list(csv.reader(data.decode("utf-8").splitlines()))
    return rows[0], rows[1:]


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
    for name in ("categorical_columns", "missing", "missing_indicators", "fill_value",
                 "columns"):
        if getattr(ds, name):
            _fail(name, "only CSV datasets have columns to encode")
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
    plans = resolve_columns(ds, features, columns)
    check_missing_cells(ds, plans, columns)
    numeric = [columns[p.name] for p in plans if p.kind == NUMERIC]
    odd = [c for c in numeric if c.bad_row]
    if odd:
        c = min(odd, key=lambda c: c.bad_row)
        _fail("feature_columns", f"column {c.name!r} has a non-finite value (row {c.bad_row}: "
                                 f"{c.bad_value.strip()!r}); fill or drop such rows")
    t = _check_target(ds, columns[target])
    classes = _target_classes(ds, t.classes, t.distinct_values, f"column {target!r}")
    return (encoded_width(plans, columns),), int(schema.num_rows), classes, 1








def _check_target(ds, t):
    if t.missing and missing_of(ds) != "drop":
        _fail("target_column", f"column {t.name!r} has {t.missing} missing value(s); fill "
                               "such rows, or drop them with spec.dataset.missing: drop")
    if t.numeric and t.bad_row:
        _fail("target_column", f"column {t.name!r} has a missing or non-finite value (row "
                               f"{t.bad_row}: {t.bad_value.strip()!r}); fill or drop such rows")
    if ds.task == "regression" and not t.numeric:
        _fail("task", "the target is not numeric; use task classification")
    return t




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
