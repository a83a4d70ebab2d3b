"""The column plans of an uploaded CSV job: each feature column's kind and missing-value
strategy, resolved from its `DatasetSpec` (`categorical_columns`, `missing`, `fill_value`,
`missing_indicators`, the per-column `columns` map) and the schema recorded at upload, with
every refusal naming its field (`spec.dataset.columns["age"].missing`).

Validation (`userdata.uploaded_info`, from the schema alone) and the worker
(`userdata.table_plan`) resolve the same plans with the same function.
"""
from __future__ import annotations

import math

from trainserve.core.errors import InvalidArgument
from trainserve.training.tabular import (ALIASES, BINARY, CATEGORICAL, CATEGORY_STRATEGIES,
                                         DEFAULT_MISSING, FILLING, KINDS, MAX_CATEGORIES,
                                         MISSING_CHOICES, NUMERIC, NUMERIC_STRATEGIES,
                                         ColumnPlan, is_missing)

TEXT = "text"


def fail(field: str, reason: str):
    raise InvalidArgument(reason, field=field)


def column_field(name: str, attr: str = "") -> str:
    """The field path of one entry of `spec.dataset.columns` (or of one of its fields)."""
    return f'spec.dataset.columns["{name}"]' + (f".{attr}" if attr else "")


def column_kind(c) -> str:
    """A column's kind as recorded at upload; "text" (refused as a feature unless listed as
    categorical) for a non-numeric column of a schema recorded before kinds."""
    return c.kind or (NUMERIC if c.numeric else TEXT)


def not_numeric(name: str, line: int, text: str) -> str:
    return (f"column {name!r} is not numeric (row {line}: {text[:40]!r}); list it in "
            "spec.dataset.categorical_columns if its values are categories, or leave it out "
            "of the feature columns")


def missing_of(ds) -> str:
    return ds.missing or DEFAULT_MISSING


def resolve_columns(ds, features, columns) -> tuple[ColumnPlan, ...]:
    """The plan of every feature column (`columns`: name -> `ColumnSchema`), checked."""
    _check_names(ds, features, columns)
    _check_dataset_wide(ds)
    return tuple(_plan(ds, name, columns[name]) for name in features)


def needs_encoding(plans) -> bool:
    """Whether the table needs an encoding (else its features are read as plain numbers)."""
    return any(p.kind != NUMERIC or p.missing != DEFAULT_MISSING for p in plans)


def _check_names(ds, features, columns) -> None:
    for i, name in enumerate(ds.categorical_columns):
        if name not in features:
            fail(f"spec.dataset.categorical_columns[{i}]",
                 f"{name!r} is not a feature column; features: {', '.join(features)}")
    for name in sorted(ds.columns):
        if name not in columns:
            fail(column_field(name), f"no column {name!r}; columns: {', '.join(columns)}")
        if name not in features:
            fail(column_field(name), f"{name!r} is not a feature column; features: "
                                     f"{', '.join(features)}")


def _check_dataset_wide(ds) -> None:
    mode = missing_of(ds)
    if mode not in MISSING_CHOICES:
        fail("spec.dataset.missing", f"must be one of {', '.join(MISSING_CHOICES)}, got "
                                     f"{mode!r}")
    filling = ALIASES.get(mode, mode) in FILLING
    if ds.missing_indicators and not filling:
        fail("spec.dataset.missing_indicators",
             "indicator columns mark imputed values; they need spec.dataset.missing: impute, "
             "median, mean, most_frequent or constant")
    if ds.fill_value and mode != "constant":
        fail("spec.dataset.fill_value", "is used only with spec.dataset.missing: constant")
    if mode == "constant":
        _check_number(ds.fill_value, "spec.dataset.fill_value")


def _check_number(text: str, field: str) -> None:
    if not text:
        fail(field, "missing: constant needs the value a missing cell takes")
    try:
        ok = math.isfinite(float(text))
    except ValueError:
        ok = False
    if not ok:
        fail(field, f"a numeric column's constant must be a finite number, got {text[:40]!r}")


def _plan(ds, name: str, col) -> ColumnPlan:
    own = ds.columns[name] if name in ds.columns else None
    kind = _kind_of(ds, name, col, own)
    missing = _strategy_of(ds, name, kind, own)
    fill = _fill_of(ds, name, kind, missing, own)
    if own is not None and own.positive and kind != BINARY:
        fail(column_field(name, "positive"), f"only binary columns take it; {name!r} is {kind}")
    return ColumnPlan(name, kind, missing, fill, own.positive if own else "",
                      _indicator_of(ds, name, kind, missing, own))


# --- the kind ------------------------------------------------------------------------------

def _kind_of(ds, name: str, col, own) -> str:
    override = own.type if own is not None else ""
    listed = name in ds.categorical_columns
    field = column_field(name, "type")
    if override and override not in KINDS:
        fail(field, f"must be one of {', '.join(KINDS)}, got {override!r}")
    if listed and override and override != CATEGORICAL:
        fail(field, f"{name!r} is also listed in spec.dataset.categorical_columns")
    kind = override or (CATEGORICAL if listed else _inferred(col))
    if kind == NUMERIC and not col.numeric:
        fail(field if override else "spec.dataset.feature_columns",
             not_numeric(name, col.bad_row, col.bad_value))
    if kind == TEXT or (kind == CATEGORICAL and col.distinct_values > MAX_CATEGORIES):
        _refuse_text(ds, name, col, field if override else "")
    if kind == BINARY and col.distinct_values > 2:
        fail(field, f"column {name!r} has {_count(col)} distinct values; binary takes two "
                    "(use categorical)")
    return kind


def _inferred(col) -> str:
    """The kind at upload, as a feature: two numbers stay a number (already one input)."""
    kind = column_kind(col)
    if kind == BINARY:
        return NUMERIC if col.numeric else BINARY
    return kind


def _refuse_text(ds, name: str, col, override_field: str) -> None:
    if col.distinct_values <= MAX_CATEGORIES:
        fail("spec.dataset.feature_columns", not_numeric(name, col.bad_row, col.bad_value))
    listed = list(ds.categorical_columns)
    field = override_field or (f"spec.dataset.categorical_columns[{listed.index(name)}]"
                               if name in listed else "spec.dataset.feature_columns")
    fail(field, f"column {name!r} has more than {MAX_CATEGORIES} distinct values: free text "
                "or an identifier, not categories; leave it out of spec.dataset.feature_columns")


def _count(col) -> str:
    from trainserve.training.describe import MAX_CLASS_VALUES
    n = int(col.distinct_values)
    return f"more than {MAX_CLASS_VALUES}" if n > MAX_CLASS_VALUES else str(n)


# --- the missing-value strategy --------------------------------------------------------------

def _strategy_of(ds, name: str, kind: str, own) -> str:
    """The column's canonical strategy: its own, else the dataset-wide one as it applies to
    this kind (mean, median and constant fill numbers only: categories stay all zeros)."""
    choices = NUMERIC_STRATEGIES if kind == NUMERIC else CATEGORY_STRATEGIES
    if own is not None and own.missing:
        strategy = ALIASES.get(own.missing, own.missing)
        if kind != NUMERIC and own.missing == "impute":
            strategy = "zeros"
        if strategy not in choices:
            fail(column_field(name, "missing"),
                 f"a {kind} column takes one of {', '.join(choices)}, got {own.missing!r}")
        return strategy
    strategy = ALIASES.get(missing_of(ds), missing_of(ds))
    if kind == NUMERIC or strategy in ("error", "drop", "most_frequent"):
        return strategy
    return "zeros"


def _fill_of(ds, name: str, kind: str, missing: str, own) -> str:
    """The constant of `constant` ("" for other strategies), checked for the column."""
    own_fill = own.fill_value if own is not None else ""
    if own_fill and missing != "constant":
        fail(column_field(name, "fill_value"), "is used only with missing: constant")
    if missing != "constant":
        return ""
    from_column = bool(own is not None and (own.missing or own_fill))
    value = own_fill if from_column or kind != NUMERIC else ds.fill_value
    field = column_field(name, "fill_value") if from_column else "spec.dataset.fill_value"
    if kind == NUMERIC:
        _check_number(value, field)
    elif not value:
        fail(column_field(name, "fill_value"), "missing: constant needs the category a "
                                               "missing cell takes")
    elif is_missing(value):
        fail(column_field(name, "fill_value"), f"{value!r} is itself a missing value")
    return value.strip()


def _indicator_of(ds, name: str, kind: str, missing: str, own) -> bool:
    if own is not None and own.HasField("indicator"):
        if own.indicator and (kind != NUMERIC or missing not in FILLING):
            fail(column_field(name, "indicator"),
                 "only numeric columns whose missing cells are filled (mean, median, "
                 "most_frequent, constant) take an indicator")
        return own.indicator
    return bool(ds.missing_indicators) and kind == NUMERIC and missing in FILLING


# --- what the schema tells about the plans -----------------------------------------------------

def check_missing_cells(ds, plans, columns) -> None:
    """Columns whose strategy is error must have no missing cell: refused, naming every such
    column at once (a column's own `error` names its own field)."""
    holes = [p for p in plans if p.missing == "error" and columns[p.name].missing]
    own = [p for p in holes if p.name in ds.columns and ds.columns[p.name].missing]
    if own:
        fail(column_field(own[0].name, "missing"),
             f"column {own[0].name!r} has {columns[own[0].name].missing} missing value(s)")
    if holes:
        listed = ", ".join(f"{p.name!r} ({columns[p.name].missing} missing)" for p in holes)
        fail("spec.dataset.missing", f"feature columns with missing values (blank, NA, NaN): "
                                     f"{listed}; {MISSING_ADVICE}")


MISSING_ADVICE = ("set spec.dataset.missing to impute (the training split's median; or mean, "
                  "most_frequent, constant) or drop (leave such rows out), or fill such cells")


def encoded_width(plans, columns) -> int:
    """The network's input width: an upper bound when categories are fitted on the training
    split (which may lack some of the file's)."""
    return sum(_width(p, columns[p.name]) for p in plans)


def _width(plan: ColumnPlan, col) -> int:
    if plan.kind == BINARY:
        return 1
    if plan.kind == CATEGORICAL:
        return int(col.distinct_values) + int(plan.missing == "constant" and col.missing > 0)
    return 1 + int(plan.indicator and col.missing > 0)
