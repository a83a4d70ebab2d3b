"""Clinical tables: categorical columns and missing values of an uploaded CSV, encoded as
numbers the network takes. numpy only (the serving side applies the same encoding).

A `TableEncoding` is fitted on the training split's raw cells (text) and travels with the
model inside its `Preprocessing`, so inference applies exactly the same encoding to a raw
row. Per feature column, in the CSV's order:

- numeric: the number itself; a missing cell (see `is_missing`) becomes the training split's
  median of the column (`missing: impute`), followed, with `missing_indicators`, by a 0/1
  column "<name>_missing" for every numeric column that had a missing cell in the training
  split;
- categorical: one 0/1 column per category seen in the training split (sorted as text), a
  "one-hot" encoding; a category the training split never had, or a missing cell, encodes as
  all zeros (no column fires).

A cell is compared as text with surrounding spaces removed: a categorical column of codes
"1", "2" does not match "1.0".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Cells that mean "no value", compared case-insensitively after trimming spaces.
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null"})
MISSING_CHOICES = ("error", "drop", "impute")
DEFAULT_MISSING = "error"
# Categories of one categorical column: more distinct values are no category but free text
# or an identifier, and would make the input as wide as the table is long.
MAX_CATEGORIES = 100
NUMERIC, CATEGORICAL = "numeric", "categorical"
INDICATOR_SUFFIX = "_missing"


def is_missing(text: str) -> bool:
    """Whether a CSV cell holds no value: blank, NA, N/A, NaN or null (any case)."""
    return text.strip().lower() in MISSING_TOKENS


def missing_mask(cells: np.ndarray) -> np.ndarray:
    """Boolean mask of the missing cells of a text array."""
    stripped = np.char.lower(np.char.strip(cells.astype(np.str_)))
    return np.isin(stripped, list(MISSING_TOKENS))


@dataclass(frozen=True)
class ColumnEncoding:
    """How one raw column becomes numbers: `kind` numeric (with `fill`, the value a missing
    cell takes, and `indicator`) or categorical (with its `categories`)."""
    name: str
    kind: str
    fill: float = math.nan
    indicator: bool = False
    categories: tuple[str, ...] = ()

    @property
    def width(self) -> int:
        if self.kind == CATEGORICAL:
            return len(self.categories)
        return 1 + int(self.indicator)

    def output_names(self) -> list[str]:
        if self.kind == CATEGORICAL:
            return [f"{self.name}={c}" for c in self.categories]
        return [self.name] + ([self.name + INDICATOR_SUFFIX] if self.indicator else [])

    def encode(self, cells: np.ndarray) -> np.ndarray:
        """float32 [N, width] of one column's text cells [N]."""
        cells = np.char.strip(cells.astype(np.str_))
        missing = missing_mask(cells)
        if self.kind == CATEGORICAL:
            return (cells[:, None] == np.asarray(self.categories, np.str_)[None, :]
                    ).astype(np.float32).reshape(len(cells), self.width)
        values = np.full(len(cells), self.fill, np.float64)
        values[~missing] = cells[~missing].astype(np.float64)
        parts = [values] + ([missing.astype(np.float64)] if self.indicator else [])
        return np.stack(parts, axis=1).astype(np.float32)

    def to_dict(self) -> dict:
        out = {"name": self.name, "kind": self.kind}
        if self.kind == CATEGORICAL:
            return out | {"categories": list(self.categories)}
        return out | {"fill": None if math.isnan(self.fill) else self.fill,
                      "indicator": self.indicator}

    @classmethod
    def from_dict(cls, d: dict) -> "ColumnEncoding":
        fill = d.get("fill")
        return cls(d["name"], d["kind"], math.nan if fill is None else float(fill),
                   bool(d.get("indicator")), tuple(str(c) for c in d.get("categories", ())))


@dataclass(frozen=True)
class TableEncoding:
    """The encoding of a table's feature columns, in their order (see the module docstring)."""
    columns: tuple[ColumnEncoding, ...]

    @property
    def width(self) -> int:
        return sum(c.width for c in self.columns)

    @property
    def trivial(self) -> bool:
        """Every column a plain number (no category, fill or indicator): nothing to store."""
        return all(c.kind == NUMERIC and math.isnan(c.fill) and not c.indicator
                   for c in self.columns)

    def output_names(self) -> list[str]:
        return [n for c in self.columns for n in c.output_names()]

    def encode(self, cells: np.ndarray) -> np.ndarray:
        """float32 [N, width] of raw text cells [N, columns]; `ValueError` naming the column
        for a cell that is neither a number nor missing in a numeric column, or a missing cell
        where the training split had none to impute from."""
        cells = np.asarray(cells)
        if cells.ndim != 2 or cells.shape[1] != len(self.columns):
            raise ValueError(f"expected rows of {len(self.columns)} cells "
                             f"({', '.join(c.name for c in self.columns)}), got shape "
                             f"{list(cells.shape)}")
        parts = [self._column(c, cells[:, i]) for i, c in enumerate(self.columns)]
        return np.concatenate(parts, axis=1) if parts else np.zeros((len(cells), 0), np.float32)

    @staticmethod
    def _column(col: ColumnEncoding, cells: np.ndarray) -> np.ndarray:
        if col.kind == NUMERIC:
            missing = missing_mask(cells)
            if missing.any() and math.isnan(col.fill):
                raise ValueError(f"column {col.name!r} has a missing value, which this model "
                                 "was not trained to fill (missing: impute)")
            try:
                return col.encode(cells)
            except ValueError:
                bad = next(c for c in cells[~missing] if not _is_number(str(c)))
                raise ValueError(f"column {col.name!r}: {str(bad)[:40]!r} is not a number"
                                 ) from None
        return col.encode(cells)

    def to_list(self) -> list[dict]:
        return [c.to_dict() for c in self.columns]

    @classmethod
    def from_list(cls, items) -> "TableEncoding":
        return cls(tuple(ColumnEncoding.from_dict(d) for d in items))


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def fit_encoding(cells: np.ndarray, names, categorical, impute: bool,
                 indicators: bool) -> TableEncoding:
    """Fit on the training split's text cells [N, columns]: categories of the `categorical`
    column names, medians of the numeric ones (when `impute`), indicator columns for numeric
    columns with a missing cell (when `indicators`)."""
    columns = []
    for i, name in enumerate(names):
        col = np.char.strip(np.asarray(cells)[:, i].astype(np.str_))
        missing = missing_mask(col)
        if name in categorical:
            columns.append(ColumnEncoding(name, CATEGORICAL,
                                          categories=tuple(sorted(set(col[~missing].tolist())))))
            continue
        values = col[~missing].astype(np.float64)
        fill = float(np.median(values)) if impute and values.size else math.nan
        if impute and math.isnan(fill):
            fill = 0.0  # no value at all in the training split: nothing better to say
        columns.append(ColumnEncoding(name, NUMERIC, fill, indicators and bool(missing.any())))
    return TableEncoding(tuple(columns))
