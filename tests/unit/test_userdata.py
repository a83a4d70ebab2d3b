"""Loading uploaded CSV/NPZ content for training (no servers)."""
import hashlib

import numpy as np
import pytest

from trainserve.core.errors import InvalidArgument
from trainserve.core.pb import spec_pb2
from trainserve.training.userdata import load_uploaded


def _spec(path, fmt, **fields):
    ds = spec_pb2.DatasetSpec(name="mine", **fields)
    ds.uploaded.CopyFrom(spec_pb2.UploadedContent(
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(), format=fmt, path=str(path)))
    return ds


def test_csv_classification_with_text_labels(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("dose,age,outcome\n1.5,40,benign\n2.5,50,malignant\n0.5,60,benign\n")
    x, y, classes = load_uploaded(_spec(path, "csv"))
    assert x.dtype == np.float32 and x.shape == (3, 2)
    assert y.tolist() == [0, 1, 0] and classes == ("benign", "malignant")


def test_csv_columns_by_name_and_regression(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("a,b,c,y\n1,2,3,0.5\n4,5,6,1.5\n")
    x, y, classes = load_uploaded(_spec(path, "csv", feature_columns=["c", "a"],
                                        target_column="y", task="regression"))
    assert x.tolist() == [[3, 1], [6, 4]] and y.tolist() == [0.5, 1.5] and classes == ()


@pytest.mark.parametrize("fields,field", [
    ({"target_column": "nope"}, "spec.dataset.target_column"),
    ({"feature_columns": ["a", "zz"]}, "spec.dataset.feature_columns[1]"),
    ({"feature_columns": ["name"]}, "spec.dataset.feature_columns"),
])
def test_csv_errors_name_the_field(tmp_path, fields, field):
    path = tmp_path / "e.csv"
    path.write_text("a,name,y\n1,x,0\n2,z,1\n")
    with pytest.raises(InvalidArgument) as e:
        load_uploaded(_spec(path, "csv", **fields))
    assert e.value.field == field


def test_npz_and_content_check(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.ones((4, 1, 8, 8)), y=np.array([3, 1, 3, 1]))
    ds = _spec(path, "npz")
    x, y, classes = load_uploaded(ds)
    assert x.shape == (4, 1, 8, 8) and y.tolist() == [1, 0, 1, 0] and classes == ("1", "3")
    ds.uploaded.sha256 = "0" * 64
    with pytest.raises(InvalidArgument, match="changed"):
        load_uploaded(ds)
