"""Small helpers for spec validation, shared by `validate` and the zoo's per-architecture checks.

All raise `errors.InvalidArgument` carrying the full field path (e.g. `spec.model.mlp.dropout`).
"""
from __future__ import annotations

import math
from typing import Iterable

from trainserve.core import errors
from trainserve.training.registry import Registry


def fail(field: str, message: str) -> None:
    """Raise `InvalidArgument(message, field=field)`."""
    raise errors.InvalidArgument(message, field=field)


def check_choice(value: str, known: Registry | Iterable[str], field: str, kind: str) -> None:
    """`value` must be a registered name (or one of `known`); the error lists the known names."""
    names = known.names() if isinstance(known, Registry) else sorted(known)
    if value not in names:
        fail(field, f"unknown {kind} {value!r}; known: {', '.join(names)}")


def check_range(value: float, field: str, *, low: float, high: float,
                low_open: bool = False, high_open: bool = True) -> None:
    """`value` must be finite and within the interval; brackets in the message show openness."""
    ok = math.isfinite(value) and (value > low if low_open else value >= low) \
        and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        fail(field, f"must be in {interval}, got {value:g}")


def check_positive(value: float, field: str) -> None:
    """`value` must be finite and > 0."""
    if not (math.isfinite(value) and value > 0):
        fail(field, f"must be > 0, got {value:g}")


def check_widths(widths, field: str, *, most_layers: int, most_width: int) -> None:
    """Layer widths of a fully connected stack: at most `most_layers`, each in [1, most_width]."""
    if len(widths) > most_layers:
        fail(field, f"at most {most_layers} layers, got {len(widths)}")
    for i, width in enumerate(widths):
        if not 0 < width <= most_width:
            fail(f"{field}[{i}]", f"width must be in [1, {most_width}], got {width}")
