"""Clinical tables: numeric, categorical and binary columns of an uploaded CSV and their
missing values, encoded as numbers the network takes. numpy only (the serving side applies
the same encoding; `registry.export_table` builds the same steps into an exported graph).

A `TableEncoding` is fitted on the training split's raw cells (text) and travels with the
model inside its `Preprocessing`, so inference applies exactly the same encoding to a raw
row. Per feature column, in the CSV's order:

- numeric: the number itself; a missing cell (see `is_missing`) takes `fill`, fitted by the
  column's strategy (mean, median, most_frequent, constant; NaN for error and drop: such a
  cell is refused), followed, with an indicator, by a 0/1 column "<name>_missing" when the
  training split had a missing cell in it;
- categorical: one 0/1 column per category seen in the training split (sorted as text), a
  "one-hot" encoding; a category the training split never had encodes as all zeros, and so
  does a missing cell unless the strategy fills it (`fill_category`: most_frequent or
  constant);
- binary: one 0/1 column, 1 when the cell is the `positive` value (by default the second of
  the two values sorted as text, as scikit-learn's OneHotEncoder(drop="if_binary")); the
  other value, an unseen one and an unfilled missing cell are 0.

A cell is compared as text with surrounding spaces removed: a categorical column of codes
"1", "2" does not match "1.0". The column plans (kind, strategy, fill value) come from the
job's spec: `training.tabular_spec`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from trainserve.core.errors import InvalidArgument

# Cells that mean "no value", compared case-insensitively after trimming spaces.
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null"})
DEFAULT_MISSING = "error"
# Categories of one categorical column: more distinct values are no category but free text
# or an identifier, and would make the input as wide as the table is long.
MAX_CATEGORIES = 100
NUMERIC, CATEGORICAL, BINARY = "numeric", "categorical", "binary"
KINDS = (NUMERIC, CATEGORICAL, BINARY)
INDICATOR_SUFFIX = "_missing"
# What a missing cell does, by column kind. "error": the job is refused when the column has
# one; "drop": such rows are left out of training; the others fill the cell ("zeros": a
# categorical or binary column's inputs stay 0, the behaviour before strategies existed).
NUMERIC_STRATEGIES = ("error", "drop", "mean", "median", "most_frequent", "constant")
CATEGORY_STRATEGIES = ("error", "drop", "most_frequent", "constant", "zeros")
# `missing: impute` is the older spelling of median (categorical columns: zeros).
ALIASES = {"impute": "median"}
MISSING_CHOICES = ("error", "drop", "impute", "mean", "median", "most_frequent", "constant")
FILLING = ("mean", "median", "most_frequent", "constant")


def is_missing(text: str) -> bool:
    """Whether a CSV cell holds no value: blank, NA, N/A, NaN or null (any case)."""
    return text.strip().lower() in MISSING_TOKENS


def missing_mask(cells: np.ndarray) -> np.ndarray:
    """Boolean mask of the missing cells of a text array."""
    stripped = np.char.lower(np.char.strip(cells.astype(np.str_)))
    return np.isin(stripped, list(MISSING_TOKENS))


@dataclass(frozen=True)
class ColumnPlan:
    """How the spec says one feature column is encoded (resolved by `tabular_spec`): its
    kind, its missing-value strategy (canonical: no alias), the constant of `constant`, a
    binary column's positive value ("" = the second in sorted order), indicator wanted."""
    name: str
    kind: str
    missing: str = DEFAULT_MISSING
    fill_value: str = ""
    positive: str = ""
    indicator: bool = False


@dataclass(frozen=True)
class ColumnEncoding:
    """How one raw column becomes numbers: `kind` numeric (with `fill`, the value a missing
    cell takes, and `indicator`), categorical (its `categories`, and `fill_category`, the
    category a missing cell takes, None: all zeros) or binary (its values in `categories`,
    `positive` encoded 1). `missing` names the strategy that fitted it ("" in models stored
    before strategies)."""
    name: str
    kind: str
    fill: float = math.nan
    indicator: bool = False
    categories: tuple[str, ...] = ()
    missing: str = ""
    fill_category: str | None = None
    positive: str = ""

    @property
    def width(self) -> int:
        if self.kind == CATEGORICAL:
            return len(self.categories)
        return 1 + int(self.indicator and self.kind == NUMERIC)

    def output_names(self) -> list[str]:
        if self.kind == CATEGORICAL:
            return [f"{self.name}={c}" for c in self.categories]
        if self.kind == BINARY:
            return [f"{self.name}={self.positive}"]
        return [self.name] + ([self.name + INDICATOR_SUFFIX] if self.indicator else [])

    def encode(self, cells: np.ndarray) -> np.ndarray:
        """float32 [N, width] of one column's text cells [N]."""
        cells = np.char.strip(cells.astype(np.str_))
        missing = missing_mask(cells)
        if self.kind != NUMERIC:
            if self.fill_category is not None:
                cells = np.where(missing, np.str_(self.fill_category), cells)
            levels = self.categories if self.kind == CATEGORICAL else (self.positive,)
            return (cells[:, None] == np.asarray(levels, np.str_)[None, :]
                    ).astype(np.float32).reshape(len(cells), self.width)
        values = np.full(len(cells), self.fill, np.float64)
        values[~missing] = cells[~missing].astype(np.float64)
        parts = [values] + ([missing.astype(np.float64)] if self.indicator else [])
        return np.stack(parts, axis=1).astype(np.float32)

    def to_dict(self) -> dict:
        out = {"name": self.name, "kind": self.kind}
        if self.missing:
            out["missing"] = self.missing
        if self.kind == NUMERIC:
            return out | {"fill": None if math.isnan(self.fill) else self.fill,
                          "indicator": self.indicator}
        out["categories"] = list(self.categories)
        if self.fill_category is not None:
            out["fill_category"] = self.fill_category
        return out | ({"positive": self.positive} if self.kind == BINARY else {})

    @classmethod
    def from_dict(cls, d: dict) -> "ColumnEncoding":
        fill = d.get("fill")
        category = d.get("fill_category")
        return cls(d["name"], d["kind"], math.nan if fill is None else float(fill),
                   bool(d.get("indicator")), tuple(str(c) for c in d.get("categories", ())),
                   str(d.get("missing") or ""), None if category is None else str(category),
                   str(d.get("positive") or ""))


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
                                 f"was not trained to fill (missing: {col.missing or 'error'})")
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


# --- fitting, on the training split only ------------------------------------------------------

def fit_encoding(cells: np.ndarray, plans: tuple[ColumnPlan, ...]) -> TableEncoding:
    """Fit on the training split's text cells [N, columns], one `ColumnPlan` a column."""
    cells = np.asarray(cells)
    return TableEncoding(tuple(fit_column(p, cells[:, i]) for i, p in enumerate(plans)))


def fit_column(plan: ColumnPlan, cells: np.ndarray) -> ColumnEncoding:
    col = np.char.strip(np.asarray(cells).astype(np.str_))
    missing = missing_mask(col)
    if plan.kind == NUMERIC:
        return _fit_numeric(plan, col[~missing].astype(np.float64), bool(missing.any()))
    return _fit_categories(plan, col[~missing], bool(missing.any()))


def _fit_numeric(plan: ColumnPlan, values: np.ndarray, any_missing: bool) -> ColumnEncoding:
    if plan.missing not in FILLING:
        return ColumnEncoding(plan.name, NUMERIC, missing=plan.missing)
    if plan.missing == "constant":
        fill = float(plan.fill_value)
    elif not values.size:
        fill = 0.0  # no value at all in the training split: nothing better to say
    elif plan.missing == "mean":
        fill = float(np.mean(values))
    elif plan.missing == "median":
        fill = float(np.median(values))
    else:
        fill = float(most_frequent(values))
    return ColumnEncoding(plan.name, NUMERIC, fill, plan.indicator and any_missing,
                          missing=plan.missing)


def most_frequent(values: np.ndarray):
    """The most frequent value; among equally frequent ones the smallest (scikit-learn's
    SimpleImputer does the same)."""
    levels, counts = np.unique(values, return_counts=True)
    return levels[int(np.argmax(counts))]


def _fit_categories(plan: ColumnPlan, present: np.ndarray, any_missing: bool
                    ) -> ColumnEncoding:
    fill = None
    if plan.missing == "constant":
        fill = plan.fill_value
    elif plan.missing == "most_frequent" and present.size:
        fill = str(most_frequent(present))
    levels = set(present.tolist())
    if fill is not None and any_missing and plan.kind == CATEGORICAL:
        levels.add(fill)  # filled before the categories are fitted (binary: compared only)
    categories = tuple(sorted(levels))
    if plan.kind == CATEGORICAL:
        return ColumnEncoding(plan.name, CATEGORICAL, categories=categories,
                              missing=plan.missing, fill_category=fill)
    return ColumnEncoding(plan.name, BINARY, categories=categories, missing=plan.missing,
                          fill_category=fill, positive=_positive(plan, categories))


def _positive(plan: ColumnPlan, categories: tuple[str, ...]) -> str:
    """A binary column's value encoded 1: the spec's, or the second in sorted order."""
    if len(categories) > 2:
        raise InvalidArgument(
            f"column {plan.name!r} has {len(categories)} values in the training split "
            f"({', '.join(map(repr, categories[:5]))}); binary takes two",
            field=f'spec.dataset.columns["{plan.name}"].type')
    if plan.positive and plan.positive not in categories and len(categories) == 2:
        raise InvalidArgument(
            f"{plan.positive!r} is not a value of column {plan.name!r} (its values: "
            f"{', '.join(map(repr, categories))})",
            field=f'spec.dataset.columns["{plan.name}"].positive')
    return plan.positive or (categories[-1] if categories else "")
