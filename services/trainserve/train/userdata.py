"""Uploaded datasets (DatasetService): CSV or NPZ files on the shared storage, pinned in the
job's spec by content hash. Loaded with numpy only — never unpickled."""
from __future__ import annotations

import csv
import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from trainserve.errors import InvalidArgument

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
    return x, y.astype(np.int64), tuple(_label(v) for v in values)


def _label(value) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


@lru_cache(maxsize=8)
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
    y = _numeric_if_possible(np.array([row[header.index(target)].strip() for row in body]))
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


def _numeric_if_possible(y: np.ndarray) -> np.ndarray:
    try:
        return y.astype(np.float64)
    except ValueError:
        return y
