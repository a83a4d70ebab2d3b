"""Clinical CSVs: per-column types (numeric, categorical, binary) and missing-value
strategies (drop, mean, median, most_frequent, constant, zeros), checked against
scikit-learn's ColumnTransformer, and every spec refusal naming its field."""
import math

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from tests.unit.csv_specs import pinned_spec, refusal
from trainserve.core.errors import InvalidArgument
from trainserve.training import describe as d
from trainserve.training.data import Preprocessing, prepare_data
from trainserve.training.tabular import (ColumnEncoding, ColumnPlan, TableEncoding,
                                         fit_encoding, is_missing)
from trainserve.training.validate import check_spec

HEADER = "age,sex,smoker,lactate,stage,diabetic,outcome"
SMOKERS = ("never", "former", "current")


def _rows(n=120, seed=3):
    """age (numeric, complete), sex (M/F: binary), smoker (3 categories, some blank),
    lactate (numeric, blanks and NA), stage (codes 1-3), diabetic (yes/no, some blank),
    outcome (string labels)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        smoker = "" if i % 11 == 0 else SMOKERS[int(rng.integers(3))]
        lactate = ("", "NA")[i % 2] if i % 7 == 0 else f"{rng.gamma(2, 1):.2f}"
        diabetic = " " if i % 13 == 0 else ("yes" if rng.random() < 0.3 else "no")
        sick = rng.random() < 0.4
        rows.append(f"{30 + i % 50},{'MF'[int(rng.integers(2))]},{smoker},{lactate},"
                    f"{1 + i % 3},{diabetic},{'disease' if sick else 'healthy'}")
    return rows


def _csv(tmp_path, rows, header=HEADER, name="t.csv"):
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _spec(path, columns=None, **dataset):
    return pinned_spec(path, hidden=8, epochs=2, columns=columns, **dataset)


# -- upload: binary is found, and named ------------------------------------------------------

def test_upload_names_binary_columns(tmp_path):
    rows = [f"{i % 2},{'yes' if i % 3 else 'no'},{'true' if i % 2 else 'false'},{i}"
            for i in range(12)] + ["1,,true,3"]
    kinds = {c.name: c.kind for c in
             d.describe(_csv(tmp_path, rows, header="flag,ans,b,n"), "csv")[0].columns}
    assert kinds == {"flag": "binary", "ans": "binary", "b": "binary", "n": "numeric"}


def test_the_upload_description_names_each_column_s_kind(tmp_path):
    from trainserve.cli.datasets import _column_kinds
    from trainserve.core.pb import dataset_pb2
    schema = d.describe(_csv(tmp_path, _rows()), "csv")[0]
    ds = dataset_pb2.Dataset(name="t", schema=schema, columns=[c.name for c in schema.columns])
    assert _column_kinds(ds) == [
        "age (numeric)", "sex (binary)", "smoker (categorical, 11 missing)",
        "lactate (numeric, 18 missing)", "stage (numeric)", "diabetic (binary, 10 missing)",
        "outcome (binary)"]


# -- fitting: each strategy, on the training split's cells ------------------------------------

CELLS = np.array([["1", "a"], ["", "b"], ["3", "b"], ["NA", ""], ["3", "c"], ["8", "b"]])


@pytest.mark.parametrize("strategy,fill", [("mean", 3.75), ("median", 3.0),
                                           ("most_frequent", 3.0), ("constant", -1.0)])
def test_numeric_strategies(strategy, fill):
    enc = fit_encoding(CELLS[:, :1], (ColumnPlan("x", "numeric", strategy, "-1", "", True),))
    col = enc.columns[0]
    assert col.fill == fill and col.indicator and col.missing == strategy
    sk = SimpleImputer(strategy=strategy, fill_value=-1.0, add_indicator=True)
    x = np.array([[np.nan if is_missing(c) else float(c)] for c in CELLS[:, 0]])
    np.testing.assert_allclose(enc.encode(CELLS[:, :1]), sk.fit_transform(x))


@pytest.mark.parametrize("strategy,fill_value,categories,missing_row", [
    ("zeros", "", ("a", "b", "c"), [0, 0, 0]),
    ("most_frequent", "", ("a", "b", "c"), [0, 1, 0]),
    ("constant", "unknown", ("a", "b", "c", "unknown"), [0, 0, 0, 1]),
])
def test_categorical_strategies(strategy, fill_value, categories, missing_row):
    enc = fit_encoding(CELLS[:, 1:], (ColumnPlan("c", "categorical", strategy, fill_value),))
    assert enc.columns[0].categories == categories
    out = enc.encode(np.array([["NA"], ["z"], [" a "]]))
    assert out[0].tolist() == missing_row
    assert out[1].tolist() == [0] * len(categories)          # unseen: all zeros
    assert out[2].tolist() == [1] + [0] * (len(categories) - 1)  # spaces trimmed


def test_binary_is_one_input_with_a_documented_positive():
    cells = np.array([["no"], ["yes"], [""], ["yes"], ["no"], ["no"]])
    enc = fit_encoding(cells, (ColumnPlan("d", "binary", "zeros"),))
    assert enc.output_names() == ["d=yes"] and enc.width == 1  # the second in sorted order
    assert enc.encode(np.array([["yes"], ["no"], [""], ["maybe"]])).ravel().tolist() == \
        [1, 0, 0, 0]
    mine = fit_encoding(cells, (ColumnPlan("d", "binary", "most_frequent", positive="no"),))
    assert mine.output_names() == ["d=no"]
    assert mine.encode(np.array([["NA"], ["yes"]])).ravel().tolist() == [1, 0]  # NA -> no
    with pytest.raises(InvalidArgument) as e:
        fit_encoding(cells, (ColumnPlan("d", "binary", "zeros", positive="maybe"),))
    assert e.value.field == 'spec.dataset.columns["d"].positive'


def test_the_stored_form_round_trips_and_old_models_still_load():
    cells = np.where(CELLS == "c", "a", CELLS)
    enc = fit_encoding(cells, (ColumnPlan("x", "numeric", "mean", indicator=True),
                               ColumnPlan("c", "binary", "constant", "b", positive="a")))
    assert enc.output_names() == ["x", "x_missing", "c=a"]
    assert TableEncoding.from_list(enc.to_list()) == enc
    old = {"name": "s", "kind": "categorical", "categories": ["F", "M"]}  # before strategies
    col = ColumnEncoding.from_dict(old)
    assert col.fill_category is None and col.encode(np.array(["", "M"])).tolist() == \
        [[0, 0], [0, 1]]


# -- the whole path, against scikit-learn ----------------------------------------------------

SPEC_COLUMNS = {"smoker": {"missing": "most_frequent"},
                "lactate": {"missing": "mean", "indicator": True},
                "stage": {"type": "categorical"},
                "diabetic": {"missing": "constant", "fill_value": "no", "positive": "yes"}}


def _sklearn(path):
    """The same transform as SPEC_COLUMNS with missing: median, in scikit-learn."""
    frame = np.array([r.split(",")[:6] for r in path.read_text().splitlines()[1:]], object)
    frame = np.where(np.vectorize(is_missing)(frame), np.nan, frame)
    number = lambda c: frame[:, c:c + 1].astype(np.float64)  # noqa: E731
    table = np.concatenate([number(0), frame[:, 1:3], number(3), frame[:, 4:6]], axis=1)
    onehot = {"handle_unknown": "ignore", "sparse_output": False}
    ct = ColumnTransformer([
        ("age", SimpleImputer(strategy="median"), [0]),
        ("sex", OneHotEncoder(drop="if_binary", **onehot), [1]),
        ("smoker", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                 OneHotEncoder(**onehot)), [2]),
        ("lactate", SimpleImputer(strategy="mean", add_indicator=True), [3]),
        ("stage", OneHotEncoder(**onehot), [4]),
        ("diabetic", make_pipeline(SimpleImputer(strategy="constant", fill_value="no"),
                                   OneHotEncoder(drop="if_binary", **onehot)), [5])])
    return ct, table, frame


def test_the_encoding_matches_scikit_learn(tmp_path):
    path = _csv(tmp_path, _rows())
    spec = check_spec(_spec(path, SPEC_COLUMNS, missing="impute", normalize="none"))
    data = prepare_data(spec)
    enc = data.preprocessing.encoding
    assert enc.output_names() == [
        "age", "sex=M", "smoker=current", "smoker=former", "smoker=never", "lactate",
        "lactate_missing", "stage=1", "stage=2", "stage=3", "diabetic=yes"]
    ct, table, frame = _sklearn(path)
    cells = np.where(np.vectorize(lambda v: v is np.nan)(frame), "", frame).astype(str)
    ours = enc.encode(cells)
    train = [i for i, row in enumerate(ours) if (data.x_train == row).all(axis=1).any()]
    assert len(train) == len(data.x_train)
    ct.fit(table[train])
    np.testing.assert_allclose(ours, ct.transform(table).astype(np.float64), rtol=1e-6)
    assert math.isclose(enc.columns[3].fill, float(np.nanmean(table[train, 3].astype(float))))


def test_a_column_that_drops_leaves_out_only_its_own_rows(tmp_path):
    path = _csv(tmp_path, _rows())
    spec = check_spec(_spec(path, {"lactate": {"missing": "drop"}}, missing="median",
                            normalize="none"))
    data = prepare_data(spec)
    kept = len(data.x_train) + len(data.x_val) + len(data.x_test)
    assert kept == 120 - len([i for i in range(120) if i % 7 == 0])
    assert math.isnan(data.preprocessing.encoding.columns[3].fill)  # a served blank: refused


def test_the_fitted_strategies_are_stored_and_applied_at_serving(tmp_path):
    data = prepare_data(check_spec(_spec(_csv(tmp_path, _rows()), SPEC_COLUMNS,
                                         missing="impute")))
    pre = Preprocessing.from_dict(data.preprocessing.to_dict())
    row = pre.encoding.encode(np.array([["50", "F", "", "NA", "2", ""]]))[0]
    names = pre.encoding.output_names()
    assert row[names.index("lactate_missing")] == 1
    assert row[names.index("diabetic=yes")] == 0
    smoker = pre.encoding.columns[2].fill_category
    assert smoker in SMOKERS and row[names.index(f"smoker={smoker}")] == 1


# -- validation: every refusal names its field ----------------------------------------------

@pytest.mark.parametrize("columns,fields,field,words", [
    ({"lactate": {"missing": "avg"}}, {}, 'spec.dataset.columns["lactate"].missing',
     "a numeric column takes one of error, drop, mean, median, most_frequent, constant"),
    ({"smoker": {"missing": "mean"}}, {}, 'spec.dataset.columns["smoker"].missing',
     "a categorical column takes one of error, drop, most_frequent, constant, zeros"),
    ({"lactate": {"missing": "constant"}}, {}, 'spec.dataset.columns["lactate"].fill_value',
     "needs the value"),
    ({"lactate": {"missing": "constant", "fill_value": "high"}}, {},
     'spec.dataset.columns["lactate"].fill_value', "finite number, got 'high'"),
    ({"smoker": {"missing": "constant", "fill_value": "NA"}}, {},
     'spec.dataset.columns["smoker"].fill_value', "itself a missing value"),
    ({"lactate": {"fill_value": "1"}}, {}, 'spec.dataset.columns["lactate"].fill_value',
     "only with missing: constant"),
    ({}, {"missing": "constant"}, "spec.dataset.fill_value", "needs the value"),
    ({}, {"fill_value": "0"}, "spec.dataset.fill_value", "only with spec.dataset.missing"),
    ({"weight": {"type": "numeric"}}, {}, 'spec.dataset.columns["weight"]', "no column"),
    ({"outcome": {"type": "binary"}}, {}, 'spec.dataset.columns["outcome"]',
     "not a feature column"),
    ({"age": {"type": "boolean"}}, {}, 'spec.dataset.columns["age"].type',
     "must be one of numeric, categorical, binary, got 'boolean'"),
    ({"smoker": {"type": "binary"}}, {}, 'spec.dataset.columns["smoker"].type',
     "has 3 distinct values; binary takes two"),
    ({"sex": {"type": "numeric"}}, {}, 'spec.dataset.columns["sex"].type', "is not numeric"),
    ({"stage": {"type": "numeric"}}, {"categorical_columns": ["stage"]},
     'spec.dataset.columns["stage"].type', "also listed in spec.dataset.categorical_columns"),
    ({"age": {"positive": "1"}}, {}, 'spec.dataset.columns["age"].positive',
     "only binary columns"),
    ({"smoker": {"indicator": True}}, {}, 'spec.dataset.columns["smoker"].indicator',
     "only numeric columns"),
    ({"lactate": {"missing": "error"}}, {}, 'spec.dataset.columns["lactate"].missing',
     "'lactate' has 18 missing value(s)"),
])
def test_refusals_name_the_field(tmp_path, columns, fields, field, words):
    spec = _spec(_csv(tmp_path, _rows()), columns, **({"missing": "impute"} | fields))
    e = refusal(spec)
    assert (e.field, words in str(e)) == (field, True), (e.field, str(e))


def test_dataset_wide_strategies_apply_by_kind(tmp_path):
    data = prepare_data(check_spec(_spec(_csv(tmp_path, _rows()), missing="constant",
                                         fill_value="-1", missing_indicators=True)))
    cols = {c.name: c for c in data.preprocessing.encoding.columns}
    assert (cols["lactate"].fill, cols["lactate"].indicator) == (-1.0, True)
    assert cols["smoker"].missing == "zeros" and cols["smoker"].fill_category is None
    assert cols["diabetic"].kind == "binary" and cols["diabetic"].positive == "yes"
    assert cols["stage"].kind == "numeric"  # codes are numbers unless said otherwise


# -- export: every strategy inside the exported file ------------------------------------------

@pytest.fixture(scope="module")
def strategies_model(tmp_path_factory):
    from trainserve.training.artifacts import load_artifact
    from trainserve.training.loop import train
    from trainserve.training.reporting import ListReporter
    tmp = tmp_path_factory.mktemp("strategies")
    spec = check_spec(_spec(_csv(tmp, _rows()), SPEC_COLUMNS, missing="impute",
                            missing_indicators=True))
    return load_artifact(train(spec, tmp / "job", ListReporter()).artifact_dir)


EXPORT_ROWS = np.array([
    ["50", "F", "", "NA", "2", ""],               # filled: most frequent smoker, constant no
    [" 61 ", " M ", "former", "1.25", "3", "yes"],  # spaces around cells
    ["44", "X", "vaper", "n/a", "4", "maybe"],     # unseen values everywhere
    ["70", "NULL", "never", "3.5", "", "no"]], dtype=object)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_the_export_reproduces_every_strategy(strategies_model, fmt):
    from trainserve.registry.export import export_model, run_exported
    from trainserve.serve.predictor import Predictor
    loaded = strategies_model
    data = export_model(loaded.module, loaded.meta, fmt)
    served = Predictor(loaded.module, loaded.meta).predict(EXPORT_ROWS)
    probs, label = run_exported(data, fmt, EXPORT_ROWS)
    np.testing.assert_allclose(probs, served["probabilities"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(label, served["label"])


def test_a_column_s_own_options_override_the_dataset_wide_ones(tmp_path):
    data = prepare_data(check_spec(_spec(
        _csv(tmp_path, _rows()), {"lactate": {"indicator": False}, "age": {"missing": "mean"}},
        missing="most_frequent", missing_indicators=True, normalize="none")))
    cols = {c.name: c for c in data.preprocessing.encoding.columns}
    assert (cols["lactate"].missing, cols["lactate"].indicator) == ("most_frequent", False)
    assert cols["smoker"].fill_category in SMOKERS  # most_frequent reaches categories too
    assert cols["diabetic"].fill_category == "no"   # (the commoner of yes / no)
    assert cols["age"].missing == "mean"
