"""Seeded train/validation/test splits and cross-validation folds, as indices into a dataset."""
from __future__ import annotations

import math

import numpy as np


def split_sizes(n: int, test_fraction: float, val_fraction: float) -> tuple[int, int, int]:
    """`(n_train, n_val, n_test)` for `n` samples; test and val sizes round up (as sklearn)."""
    n_test = math.ceil(test_fraction * n)
    n_val = math.ceil(val_fraction * n) if val_fraction > 0 else 0
    return n - n_test - n_val, n_val, n_test


def split_indices(y: np.ndarray, test_fraction: float, val_fraction: float, stratify: bool,
                  seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices `(train, val, test)` of a seeded split; stratified on `y` when asked.

    The test set is drawn first, so changing `val_fraction` never changes the test set.
    """
    from sklearn.model_selection import train_test_split
    _, n_val, n_test = split_sizes(len(y), test_fraction, val_fraction)
    state = seed % 2**32  # sklearn wants a uint32
    rest, test = train_test_split(np.arange(len(y)), test_size=n_test, random_state=state,
                                  stratify=y if stratify else None)
    if n_val == 0:
        return rest, np.empty(0, dtype=rest.dtype), test
    train, val = train_test_split(rest, test_size=n_val, random_state=state,
                                  stratify=y[rest] if stratify else None)
    return train, val, test


def fold_indices(y: np.ndarray, folds: int, stratify: bool,
                 seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """`(train, val)` positions into `y` for each of `folds` seeded folds; stratified on `y`
    when asked (every fold then keeps the class proportions)."""
    from sklearn.model_selection import KFold, StratifiedKFold
    state = seed % 2**32
    if stratify:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=state)
    else:
        splitter = KFold(folds, shuffle=True, random_state=state)
    return list(splitter.split(np.zeros((len(y), 1)), y if stratify else None))
