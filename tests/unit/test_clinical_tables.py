"""Clinical CSVs: categorical columns and missing values, described at upload, validated from
that schema, encoded on the training split, stored with the model and applied when serving."""
import json
import math

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import OneHotEncoder

from tests.unit.csv_specs import pinned_spec, refusal
from trainserve.core.errors import InvalidArgument
from trainserve.core.pb import spec_pb2
from trainserve.serve.predictor import Predictor
from trainserve.serve.signature import io_specs, version_record
from trainserve.training import describe as d
from trainserve.training.artifacts import load_artifact
from trainserve.training.data import Preprocessing, prepare_data
from trainserve.training.loop import train
from trainserve.training.reporting import ListReporter
from trainserve.training.tabular import is_missing
from trainserve.training.validate import check_spec

HEADER = "age,sex,creatinine,stage,outcome"


def _rows(n=80, seed=0):
    """Rows whose outcome follows sex and creatinine; blanks, NA and NaN in creatinine."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        sex = "MF"[i % 2]
        cr = rng.normal(1.4 if sex == "M" else 0.8, 0.2)
        cell = ("", "NA", "NaN")[i % 3] if i % 8 == 0 else f"{cr:.2f}"
        rows.append(f"{30 + i % 40},{sex},{cell},{1 + i % 3},{'sick' if cr > 1.1 else 'well'}")
    return rows


def _csv(tmp_path, rows, header=HEADER, name="c.csv"):
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _spec(path, **dataset):
    return pinned_spec(path, hidden=16, epochs=30, **dataset)


# -- upload: the schema says each column's kind and missing cells ----------------------------

def test_upload_describes_kinds_and_missing_counts(tmp_path):
    schema = d.describe(_csv(tmp_path, _rows()), "csv")[0]
    cols = {c.name: c for c in schema.columns}
    assert {n: c.kind for n, c in cols.items()} == {
        "age": "numeric", "sex": "binary", "creatinine": "numeric", "stage": "numeric",
        "outcome": "binary"}
    assert cols["creatinine"].missing == 10 and cols["creatinine"].numeric
    assert cols["creatinine"].bad_row == 0  # missing cells are not bad values
    assert list(cols["sex"].classes) == ["F", "M"] and cols["sex"].missing == 0


def test_a_word_among_numbers_is_text_not_a_category(tmp_path):
    rows = [f"{i},M,1.0,1,{i % 2}" for i in range(10)] + ["hello,F,1.0,1,1"]
    cols = {c.name: c for c in d.describe(_csv(tmp_path, rows), "csv")[0].columns}
    assert cols["age"].kind == "text" and cols["age"].bad_row == 12
    e = refusal(_spec(_csv(tmp_path, rows)))
    assert e.field == "spec.dataset.feature_columns"
    assert "column 'age' is not numeric (row 12: 'hello')" in str(e)
    assert "categorical_columns" in str(e)


# -- validation: every refusal names its field and gives the right advice --------------------

def test_missing_values_default_to_a_refusal_with_the_right_advice(tmp_path):
    e = refusal(_spec(_csv(tmp_path, _rows())))
    assert e.field == "spec.dataset.missing"
    assert "'creatinine' (10 missing)" in str(e) and "impute" in str(e)
    assert "not numeric" not in str(e)
    assert check_spec(_spec(_csv(tmp_path, _rows()), missing="impute")).dataset.missing == \
        "impute"


def test_a_blank_cell_gets_the_missing_advice_on_the_worker_too(tmp_path):
    # Without a recorded schema (old uploads), the worker's own reading gives the advice.
    from trainserve.training.userdata import load_uploaded
    path = _csv(tmp_path, ["1,2,0", "3,,1", "4,5,0"], header="a,b,y")
    spec = _spec(path)
    spec.dataset.uploaded.ClearField("schema")
    with pytest.raises(InvalidArgument) as e:
        load_uploaded(spec.dataset)
    assert e.value.field == "spec.dataset.missing" and "(row 3: '')" in str(e.value)
    assert "impute" in str(e.value) and "not numeric" not in str(e.value)


@pytest.mark.parametrize("fields,field,words", [
    ({"missing": "avg"}, "spec.dataset.missing",
     "error, drop, impute, mean, median, most_frequent, constant, got 'avg'"),
    ({"missing": "drop", "missing_indicators": True}, "spec.dataset.missing_indicators",
     "need spec.dataset.missing: impute"),
    ({"missing": "impute", "categorical_columns": ["age", "zz"]},
     "spec.dataset.categorical_columns[1]", "'zz' is not a feature column"),
    ({"missing": "impute", "categorical_columns": ["outcome"]},
     "spec.dataset.categorical_columns[0]", "not a feature column"),
])
def test_refusals_name_the_field(tmp_path, fields, field, words):
    e = refusal(_spec(_csv(tmp_path, _rows()), **fields))
    assert e.field == field and words in str(e), (e.field, str(e))


def test_built_in_and_npz_datasets_refuse_the_table_fields(tmp_path):
    spec = spec_pb2.JobSpec(dataset=spec_pb2.DatasetSpec(name="iris", missing="impute"),
                            model=spec_pb2.ModelSpec(mlp=spec_pb2.MLPSpec(hidden=[4])))
    assert refusal(spec).field == "spec.dataset.missing"


def test_a_missing_target_is_refused_unless_dropped(tmp_path):
    rows = _rows()
    rows[5] = rows[5].rsplit(",", 1)[0] + ","
    e = refusal(_spec(_csv(tmp_path, rows), missing="impute"))
    assert e.field == "spec.dataset.target_column" and "drop" in str(e)
    data = prepare_data(check_spec(_spec(_csv(tmp_path, rows), missing="drop")))
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == 80 - 10 - 1


def test_too_many_categories_are_refused(tmp_path):
    rows = [f"{i},id{i},1.0,1,{i % 2}" for i in range(150)]
    e = refusal(_spec(_csv(tmp_path, rows)))
    assert e.field == "spec.dataset.feature_columns" and "more than 100" in str(e)


# -- training: fitted on the training split, as scikit-learn's ColumnTransformer --------------

def _table(path):
    lines = path.read_text().splitlines()[1:]
    return np.array([line.split(",")[:4] for line in lines], dtype=object)


def test_encoding_matches_scikit_learn_column_transformer(tmp_path):
    path = _csv(tmp_path, _rows())
    spec = check_spec(_spec(path, missing="impute", missing_indicators=True,
                            categorical_columns=["stage"], normalize="none"))
    data = prepare_data(spec)
    enc = data.preprocessing.encoding
    assert enc.output_names() == ["age", "sex=M", "creatinine",
                                  "creatinine_missing", "stage=1", "stage=2", "stage=3"]
    table = _table(path)
    numeric = np.array([[np.nan if is_missing(c) else float(c) for c in row[[0, 2]]]
                        for row in table])
    train = _training_rows(data, enc, table)
    ct = ColumnTransformer([
        ("age", SimpleImputer(strategy="median"), [0]),
        ("sex", OneHotEncoder(drop="if_binary", handle_unknown="ignore"), [1]),
        ("cr", SimpleImputer(strategy="median", add_indicator=True), [2]),
        ("stage", OneHotEncoder(handle_unknown="ignore"), [3])])
    frame = np.concatenate([numeric[:, :1], table[:, 1:2], numeric[:, 1:2],
                            table[:, 3:4]], axis=1)
    ct.fit(frame[train])
    ours = enc.encode(table.astype(str))
    np.testing.assert_allclose(ours, ct.transform(frame).astype(np.float64), rtol=1e-6)


def _training_rows(data, enc, table):
    """The rows of `table` that form the training split (their encodings are unique)."""
    encoded = enc.encode(table.astype(str))
    return [i for i, row in enumerate(encoded)
            if any(np.allclose(row, t) for t in data.x_train)]


def test_medians_and_categories_come_from_the_training_split_only(tmp_path):
    rows = _rows()
    rows[-1] = "50,X,99.0,1,sick"  # one odd row: a new category and a huge value
    path = _csv(tmp_path, rows)
    seen = set()
    for seed in range(12):  # the odd row falls in the training split for some seeds only
        spec = _spec(path, missing="impute", normalize="none")
        spec.training.seed = seed
        data = prepare_data(check_spec(spec))
        enc = data.preprocessing.encoding
        cr = enc.output_names().index("creatinine")
        in_train = bool((data.x_train[:, cr] == 99.0).any())
        seen.add(in_train)
        sex = enc.columns[1]
        assert ("X" in sex.categories) == in_train
        # A median over all rows moves by the odd value's row; the training split's only
        # when it holds it (the ColumnTransformer test checks the median itself).
        assert data.info.input_shape == (enc.width,)
    assert seen == {True, False}
    unseen = enc.encode(np.array([["40", "Q", "", "2"]]))[0]
    names = enc.output_names()
    assert [unseen[names.index(f"sex={c}")] for c in "FM"] == [0, 0]  # unseen: all zeros
    assert unseen[names.index("creatinine")] == pytest.approx(enc.columns[2].fill)


def test_the_encoding_round_trips_through_the_stored_preprocessing(tmp_path):
    data = prepare_data(check_spec(_spec(_csv(tmp_path, _rows()), missing="impute",
                                         missing_indicators=True)))
    stored = json.loads(json.dumps(data.preprocessing.to_dict()))
    assert Preprocessing.from_dict(stored) == data.preprocessing
    numeric_only = prepare_data(check_spec(_spec(
        _csv(tmp_path, [r for r in _rows() if ",," not in r and "NA" not in r],
             name="n.csv"), feature_columns=["age", "creatinine"], missing="drop")))
    assert numeric_only.preprocessing.encoding is None  # plain numbers: nothing to store


# -- serving: the raw row in, the same answer as training's evaluation ------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clinical")
    path = _csv(tmp, _rows(200))
    spec = check_spec(_spec(path, missing="impute", missing_indicators=True))
    result = train(spec, tmp / "job", ListReporter())
    return spec, result, load_artifact(result.artifact_dir), path


def test_a_trained_table_model_reports_clinical_metrics(trained):
    _, result, _, _ = trained
    m = result.metrics
    assert m["test_accuracy"] > 0.8
    for key in ("test_sick_sensitivity", "test_sick_specificity", "test_well_ppv",
                "test_well_npv", "test_brier", "test_ece", "test_sick_tp"):
        assert math.isfinite(m[key]), key


def test_the_served_model_takes_raw_rows(trained):
    spec, _, loaded, path = trained
    meta = loaded.meta
    inputs, _ = io_specs(meta)
    assert (inputs[0].datatype, list(inputs[0].shape)) == ("BYTES", [-1, 4])
    record = version_record("m", 1, meta, "uri")
    assert [c.name for c in record.preprocessing.columns] == ["age", "sex", "creatinine",
                                                              "stage"]
    predictor = Predictor(loaded.module, meta)
    raw = np.array([[b"63", b"M", b"", b"2"], [b"41", b"F", b"0.7", b"1"],
                    [b"55", b"M", b"NA", b"3"]], dtype=object)
    out = predictor.predict(raw)
    assert out["probabilities"].shape == (3, 2)
    # The same rows through training's own path: encode, normalize, forward.
    pre = Preprocessing.from_dict(meta["preprocessing"])
    x = pre.apply(pre.encoding.encode(raw.astype(str)))
    import torch
    with torch.no_grad():
        expected = torch.softmax(loaded.module(torch.from_numpy(x)), 1).numpy()
    np.testing.assert_allclose(out["probabilities"], expected, rtol=1e-5, atol=1e-6)
    assert out["class_name"][1] == b"well"


def test_a_bad_raw_cell_is_the_request_s_error(trained):
    _, _, loaded, _ = trained
    predictor = Predictor(loaded.module, loaded.meta)
    with pytest.raises(InvalidArgument, match="column 'age': 'old' is not a number"):
        predictor.predict(np.array([[b"old", b"M", b"1.0", b"2"]], dtype=object))
    with pytest.raises(InvalidArgument, match="rows of 4 cells"):
        predictor.predict(np.array([[b"1", b"M"]], dtype=object))


RAW = np.array([[b"63", b"M", b"", b"2"], [b" 41 ", b"F", b"0.7", b"1"],
                [b"55", b"X", b"na", b"3"],       # an unseen category, NA in lower case
                [b"70", b"", b" NULL ", b"7"]], dtype=object)  # blank sex, unseen stage


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_the_exported_file_takes_raw_rows_and_answers_as_the_endpoint(trained, fmt):
    from trainserve.registry.export import export_model, run_exported
    from trainserve.registry.export_table import reference_encode
    _, _, loaded, _ = trained
    data = export_model(loaded.module, loaded.meta, fmt, name="m", version=1)
    served = Predictor(loaded.module, loaded.meta).predict(RAW)
    probs, label = run_exported(data, fmt, RAW)
    np.testing.assert_allclose(probs, served["probabilities"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(label, served["label"])
    columns = json.loads(_file_meta(data, fmt)["columns"]) if fmt == "onnx" else \
        _file_meta(data, fmt)["columns"]
    pre = Preprocessing.from_dict(loaded.meta["preprocessing"])
    x = pre.apply(reference_encode(columns, RAW.astype(str)))  # the documented companion
    import torch
    with torch.no_grad():
        ref = torch.softmax(loaded.module(torch.from_numpy(x)), 1).numpy()
    np.testing.assert_allclose(ref, served["probabilities"], rtol=1e-5, atol=1e-6)


def _file_meta(data: bytes, fmt: str) -> dict:
    import io
    if fmt == "onnx":
        import onnx
        return {p.key: p.value for p in onnx.load_from_string(data).metadata_props}
    import warnings

    import torch
    files = {"meta.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.load(io.BytesIO(data), _extra_files=files)
    return json.loads(files["meta.json"])


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_the_exported_file_refuses_what_the_endpoint_refuses(trained, fmt):
    from trainserve.registry.export import export_model, run_exported
    _, _, loaded, _ = trained
    data = export_model(loaded.module, loaded.meta, fmt)
    with pytest.raises(Exception):  # noqa: B017 - onnxruntime's and TorchScript's own errors
        run_exported(data, fmt, np.array([["old", "M", "1.0", "2"]], dtype=object))


@pytest.mark.parametrize("cell,mode,field,words", [
    ("abc", "impute", "spec.dataset.feature_columns", "column 'a' is not numeric (row 4: 'abc')"),
    ("inf", "impute", "spec.dataset.feature_columns", "non-finite value (row 4: 'inf')"),
    ("NA", "error", "spec.dataset.missing", "column 'a' has a missing value (row 4: 'NA')"),
])
def test_the_worker_checks_every_numeric_cell_of_a_table(tmp_path, cell, mode, field, words):
    # What validation refuses from the schema, the worker refuses again from the file.
    from trainserve.training.tabular import ColumnPlan
    from trainserve.training.userdata import TablePlan, load_uploaded_table
    path = _csv(tmp_path, ["1,M,0", "2,F,1", f"{cell},M,0", "4,F,1"], header="a,s,y")
    strategy = "median" if mode == "impute" else mode
    plan = TablePlan((ColumnPlan("a", "numeric", strategy), ColumnPlan("s", "binary", "zeros")))
    with pytest.raises(InvalidArgument) as e:
        load_uploaded_table(_spec(path).dataset, plan)
    assert e.value.field == field and words in str(e.value), str(e.value)
