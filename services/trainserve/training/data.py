"""Splits and input normalization: from a `JobSpec` to normalized train/val/test arrays.

numpy/scikit-learn only. The normalization is fitted on the training split alone (fitting on
all samples would leak test statistics into training) and travels with the model as a
`Preprocessing`, which the serving side re-applies as `(x - shift) / scale`.

k-fold cross-validation (`SplitSpec.folds` = k >= 2; validation then makes `val_fraction` 0):
the test set is drawn as always, the other samples are dealt into k folds (stratified for
classification when `stratify`), and `prepare_data(spec, fold=i)` trains on all folds but i
and validates on fold i; `prepare_data(spec)` is the final training on all non-test samples.

Uploaded CSVs with categorical columns or missing values (`userdata.table_plan`) are read as
text cells; their `training.tabular.TableEncoding` is fitted on the training split too,
encodes every split before the normalization, and travels in the `Preprocessing`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from trainserve.training.datasets import DatasetInfo, dataset_hash, dataset_info, load_dataset
from trainserve.training.label_fraction import fraction_of, subset
from trainserve.training.splits import fold_indices, split_indices
from trainserve.training.tabular import TableEncoding
from trainserve.training.tasks import task_info
from trainserve.training.userdata import load_uploaded_table, table_plan

NORMALIZERS = ("standard", "minmax", "none")
# A feature whose spread is below this is (nearly) constant on the training split: scale it by
# 1 rather than by its spread, so an unseen value is not blown up by a huge factor.
_MIN_SCALE = 1e-6


@dataclass(frozen=True)
class Preprocessing:
    """Per-feature affine input transform, `(x - shift) / scale` on the flattened sample;
    with `encoding`, raw table rows (text cells) are first encoded as numbers by it."""
    kind: str
    shift: tuple[float, ...]
    scale: tuple[float, ...]
    encoding: TableEncoding | None = None

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Normalize a batch `x` of shape `(N, *input_shape)`; returns float32, same shape."""
        x = np.asarray(x, dtype=np.float32)
        flat = x.reshape(len(x), int(np.prod(x.shape[1:])))  # "-1" fails on an empty split
        out = (flat - np.asarray(self.shift, np.float32)) / np.asarray(self.scale, np.float32)
        return out.reshape(np.shape(x)).astype(np.float32, copy=False)

    def to_dict(self) -> dict:
        out = {"kind": self.kind, "shift": list(self.shift), "scale": list(self.scale)}
        if self.encoding is not None:
            out["columns"] = self.encoding.to_list()
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        encoding = TableEncoding.from_list(d["columns"]) if d.get("columns") else None
        return cls(d["kind"], tuple(map(float, d["shift"])), tuple(map(float, d["scale"])),
                   encoding)


def fit_preprocessing(kind: str, x_train: np.ndarray) -> Preprocessing:
    """Fit `kind` ("standard", "minmax" or "none") per flattened feature on `x_train`.

    Sequences `(N, T, F)` are fitted per feature over all time steps (a value's statistics do
    not depend on its position in the window) and the result is repeated for every step, so
    serving still applies one shift and scale per flattened value.
    """
    x = np.asarray(x_train, dtype=np.float64)
    if x.ndim == 3:
        pooled = fit_preprocessing(kind, x.reshape(-1, x.shape[2]))
        return Preprocessing(kind, pooled.shift * x.shape[1], pooled.scale * x.shape[1])
    flat = x.reshape(len(x), -1)
    if kind == "standard":
        shift, spread = flat.mean(axis=0), flat.std(axis=0)
    elif kind == "minmax":
        shift, spread = flat.min(axis=0), flat.max(axis=0) - flat.min(axis=0)
    elif kind == "none":
        shift, spread = np.zeros(flat.shape[1]), np.ones(flat.shape[1])
    else:
        raise ValueError(f"unknown normalization {kind!r}; known: {', '.join(NORMALIZERS)}")
    scale = np.where(spread > _MIN_SCALE, spread, 1.0)
    return Preprocessing(kind, tuple(shift.tolist()), tuple(scale.tolist()))


@dataclass(frozen=True)
class PreparedData:
    """Normalized splits of one job's dataset, with what is needed to reproduce them."""
    info: DatasetInfo
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    preprocessing: Preprocessing
    dataset_hash: str


def prepare_data(spec, fold: int | None = None) -> PreparedData:
    """Load, split and normalize the dataset of a checked `JobSpec` (see `validate.check_spec`).

    `fold` (0-based, with `spec.split.folds` >= 2): that cross-validation fold is the
    validation split and the other non-test samples the training split.
    """
    # The split still uses the dataset's labels (stratified as the spec says); the model and
    # the loop see the task's info (an autoencoder's reconstruction).
    info = task_info(spec, dataset_info(spec.dataset))
    plan = table_plan(spec.dataset)
    x, y = load_dataset(spec.dataset) if plan is None else _load_table(spec.dataset, plan)
    digest = dataset_hash(x, y)
    train, val, test = split_indices(y, spec.split.test_fraction, spec.split.val_fraction,
                                     spec.split.stratify, spec.training.seed)
    if fold is not None:
        rest = np.concatenate([train, val])
        inner, outer = fold_indices(y[rest], spec.split.folds, spec.split.stratify,
                                    spec.training.seed)[fold]
        train, val = rest[inner], rest[outer]
    encoding = None
    if plan is not None:  # fitted on the training split, like the normalization
        encoding = plan.fit(x[train])
        x = encoding.encode(x)
        info = replace(info, input_shape=(encoding.width,))
        encoding = None if encoding.trivial else encoding  # plain numbers: served as such
    pre = replace(fit_preprocessing(spec.dataset.normalize, x[train]), encoding=encoding)
    train = _label_subset(spec, train, y)  # the inputs of the whole split are known
    return PreparedData(info, pre.apply(x[train]), y[train], pre.apply(x[val]), y[val],
                        pre.apply(x[test]), y[test], pre, digest)


def _load_table(ds, plan) -> tuple[np.ndarray, np.ndarray]:
    """Text cells [N, features] and targets of an uploaded CSV that needs an encoding."""
    cells, y, _ = load_uploaded_table(ds, plan)
    return cells, y


def _label_subset(spec, train: np.ndarray, y: np.ndarray) -> np.ndarray:
    """`DatasetSpec.label_fraction` of the training split (see `training.label_fraction`)."""
    return subset(train, y, fraction_of(spec), spec.split.stratify, spec.training.seed)
