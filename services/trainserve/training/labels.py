"""Class labels of a dataset's target values: what a classification's classes are called."""
from __future__ import annotations

import numpy as np


def class_names_of(values: np.ndarray) -> tuple[str, ...]:
    """Class names of target values, in class-index order (what `load_uploaded` gives)."""
    return tuple(label_of(v) for v in np.unique(values))


def label_of(value) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def numeric_if_possible(y: np.ndarray) -> np.ndarray:
    """Text values as float64 when every one is a number, else unchanged."""
    try:
        return y.astype(np.float64)
    except ValueError:
        return y
