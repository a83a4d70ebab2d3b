"""`DatasetSpec.label_fraction`: train on a seeded (stratified for classification) fraction of
the training split only, e.g. to show what transfer learning buys when labels are scarce.
Validation and test splits are untouched. numpy/scikit-learn only."""
from __future__ import annotations

import math

import numpy as np

from trainserve.training.checks import check_range, fail
from trainserve.training.splits import split_sizes

FIELD = "spec.dataset.label_fraction"


def fraction_of(spec) -> float:
    ds = spec.dataset
    return ds.label_fraction if ds.HasField("label_fraction") else 1.0


def kept(n_train: int, fraction: float) -> int:
    """How many of `n_train` training samples a fraction keeps (rounded up, at least 1)."""
    return max(1, min(n_train, math.ceil(fraction * n_train)))


def check_label_fraction(spec, info) -> None:
    """Validate a defaulted spec's label_fraction against its split (`InvalidArgument`)."""
    if not spec.dataset.HasField("label_fraction"):
        return
    fraction = spec.dataset.label_fraction
    check_range(fraction, FIELD, low=0.0, high=1.0, low_open=True, high_open=False)
    sp = spec.split
    n_train, _, _ = split_sizes(info.num_samples, sp.test_fraction, sp.val_fraction)
    if sp.folds >= 2:
        n_train = n_train - n_train // sp.folds
    need = info.num_classes if sp.stratify else 1
    n = kept(n_train, fraction)
    if n < need:
        fail(FIELD, f"{fraction:g} of the {n_train} training samples leaves {n}; the subset "
                    f"is stratified and needs at least one per class ({need}): raise it")


def subset(train: np.ndarray, y: np.ndarray, fraction: float, stratify: bool,
           seed: int) -> np.ndarray:
    """The kept positions of `train` (indices into `y`): a seeded subset of `fraction` of
    them, stratified on `y[train]` when asked; `train` itself when fraction >= 1."""
    if fraction >= 1 or len(train) == 0:
        return train
    from sklearn.model_selection import train_test_split
    n = kept(len(train), fraction)
    if n >= len(train):
        return train
    keep, _ = train_test_split(train, train_size=n, random_state=(seed + 1) % 2**32,
                               stratify=y[train] if stratify else None)
    return np.sort(keep)
