"""Uploaded datasets described once, in bounded memory (training.describe), validated from that
description (training.userdata.uploaded_info), and durable files (store.files) (no servers)."""
import hashlib
import io
import zipfile

import numpy as np
import pytest

from trainserve.core.errors import InvalidArgument
from trainserve.core.pb import spec_pb2
from trainserve.registry.versions import _copy_once
from trainserve.store import files
from trainserve.training import describe as d
from trainserve.training.userdata import load_uploaded, schema_for_job, uploaded_info


def _npz_with(path, members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _header_only(shape, descr="<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue()


def test_npy_header_is_read_without_the_data():
    raw = io.BytesIO(_header_only((1 << 20, 512)))  # claims 2 GiB, holds none of it
    shape, dtype, fortran, offset = d.read_npy_header(raw)
    assert shape == (1 << 20, 512) and dtype == np.float32 and not fortran
    assert offset == len(raw.getvalue())


def test_object_and_record_arrays_are_refused_from_the_header():
    for descr in ("|O", [("a", "<f4"), ("b", "<i8")]):
        with pytest.raises(InvalidArgument, match="objects or records"):
            d.read_npy_header(io.BytesIO(_header_only((3,), descr)))


def test_npz_described_from_headers_and_y_counted(tmp_path):
    path = tmp_path / "ok.npz"
    np.savez_compressed(path, x=np.zeros((6, 1, 4, 4), np.float32), y=np.array([3, 1, 3, 1, 2, 2]))
    schema, names, rows = d.describe(path, "npz")
    assert names == ["x", "y"] and rows == 6 and list(schema.x.shape) == [6, 1, 4, 4]
    assert list(schema.y.classes) == ["1", "2", "3"] and schema.y.distinct_values == 3


def test_npz_whose_header_disagrees_with_its_zip_entry_is_refused(tmp_path):
    lying = _header_only((1 << 28, 4)) + bytes(64)  # declares 4 GiB, holds 64 bytes
    with pytest.raises(InvalidArgument, match="declares .* bytes but its zip entry holds"):
        d.describe(_npz_with(tmp_path / "lie.npz", {"x.npy": lying}), "npz")


def test_npz_over_the_inflated_limit_is_refused_unread(tmp_path, monkeypatch):
    monkeypatch.setattr(d, "MAX_NPZ_INFLATED_BYTES", 1 << 20)
    path = _npz_with(tmp_path / "big.npz", {"x.npy": _npy(np.zeros((300, 1024), np.float32))})
    with pytest.raises(InvalidArgument, match="uncompressed, more than the limit of 1048576"):
        d.describe(path, "npz")


def test_npz_member_compressing_like_a_bomb_is_refused(tmp_path):
    path = _npz_with(tmp_path / "ratio.npz",
                     {"x.npy": _npy(np.zeros((5000, 1024), np.float32))})  # 20 MB of zeros
    with pytest.raises(InvalidArgument, match="decompression bomb"):
        d.describe(path, "npz")


def test_npz_members_are_bounded_and_must_be_arrays(tmp_path):
    many = {f"a{i}.npy": _npy(np.zeros((2, 2))) for i in range(d.MAX_NPZ_MEMBERS + 1)}
    with pytest.raises(InvalidArgument, match="at most 16 arrays"):
        d.describe(_npz_with(tmp_path / "many.npz", many), "npz")
    with pytest.raises(InvalidArgument, match="not a .npy array"):
        d.describe(_npz_with(tmp_path / "txt.npz", {"x.npy": _npy(np.zeros((2, 2))),
                                                    "notes.txt": b"hi"}), "npz")


def test_csv_schema_counts_values_and_notes_the_first_bad_one(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,c,y\n1,x,nan,cat\n2,y,3,dog\n10,z,4,cat\n")
    schema, names, rows = d.describe(path, "csv")
    a, b, c, y = schema.columns
    assert names == ["a", "b", "c", "y"] and rows == 3 == schema.num_rows
    assert a.numeric and not a.bad_row and list(a.classes) == ["1", "2", "10"]  # numerically
    assert not b.numeric and (b.bad_row, b.bad_value) == (2, "x")
    assert c.numeric and not c.bad_row and c.missing == 1  # "nan" is a missing cell
    assert (a.kind, b.kind, c.kind) == ("numeric", "categorical", "binary")  # two values
    assert list(y.classes) == ["cat", "dog"]


def test_csv_column_with_many_values_is_not_counted_past_the_limit(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text("v,y\n" + "".join(f"{i * 0.5},{i % 2}\n" for i in range(2000)))
    v, y = d.describe(path, "csv")[0].columns
    assert v.distinct_values == d.MAX_CLASS_VALUES + 1 and not v.classes
    assert list(y.classes) == ["0", "1"]


def _pinned(path, fmt, **fields):
    """A DatasetSpec as submission pins it: hash, path and the schema from upload."""
    schema = d.describe(path, fmt)[0]
    ds = spec_pb2.DatasetSpec(name="mine", **({"task": "classification"} | fields))
    ds.uploaded.CopyFrom(spec_pb2.UploadedContent(
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(), format=fmt, path=str(path),
        schema=schema_for_job(schema, ds.target_column)))
    return ds


@pytest.mark.parametrize("fields,field,words", [
    ({"target_column": "nope"}, "spec.dataset.target_column", "columns: a, name, y"),
    ({"feature_columns": ["a", "zz"]}, "spec.dataset.feature_columns[1]", "no column 'zz'"),
    ({"feature_columns": ["a", "y"]}, "spec.dataset.feature_columns[1]", "also be a feature"),
    ({"task": "regression", "target_column": "name"}, "spec.dataset.task", "not numeric"),
])
def test_schema_gives_the_workers_errors_without_the_file(tmp_path, fields, field, words):
    path = tmp_path / "e.csv"
    path.write_text("a,name,y\n1,x,0\n2,z,1\n")
    ds = _pinned(path, "csv", **fields)
    with pytest.raises(InvalidArgument) as worker:
        load_uploaded(ds)
    path.unlink()  # validation must not need it
    with pytest.raises(InvalidArgument) as schema:
        uploaded_info(ds)
    assert schema.value.field == worker.value.field == field
    assert words in str(schema.value) and str(schema.value) == str(worker.value)


def test_schema_info_matches_what_the_worker_loads(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("dose,age,outcome\n1.5,40,benign\n2.5,50,malignant\n0.5,60,benign\n")
    ds = _pinned(path, "csv")
    x, y, classes = load_uploaded(ds)
    assert uploaded_info(ds) == (tuple(x.shape[1:]), len(x), classes, 1)
    assert [list(c.classes) for c in ds.uploaded.schema.columns] == \
        [[], [], ["benign", "malignant"]]  # kept for the target only


def test_durable_write_leaves_no_temp_and_uses_unique_names(tmp_path):
    target = tmp_path / "sub" / "f.bin"
    files.write_bytes(target, b"one")
    files.write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["f.bin"]
    a, b = files.temp_path(target), files.temp_path(target)
    assert a != b and a.parent == target.parent and str(__import__("os").getpid()) not in a.name
    assert files.sha256_of(target) == hashlib.sha256(b"two").hexdigest()
    assert files.sha256_of(tmp_path / "none") is None


def test_model_copy_replaces_a_torn_target(tmp_path):
    src, target = tmp_path / "artifact", tmp_path / "models" / "m" / "1"
    src.mkdir()
    (src / "meta.json").write_text('{"task": "classification"}')
    (src / "model.safetensors").write_bytes(b"w" * 1000)
    target.mkdir(parents=True)
    (target / "meta.json").write_text('{"task": "classification"}')
    (target / "model.safetensors").write_bytes(b"w" * 10)  # torn by a crash mid-copy
    _copy_once(src, target)
    assert (target / "model.safetensors").read_bytes() == b"w" * 1000
    assert sorted(p.name for p in target.parent.iterdir()) == ["1"]  # no temp folder left


def test_content_pinned_without_a_schema_is_described_not_loaded(tmp_path):
    path = tmp_path / "old.csv"
    path.write_text("a,b,y\n1,2,u\n3,4,v\n5,6,u\n")
    ds = _pinned(path, "csv")
    ds.uploaded.ClearField("schema")  # a job queued before schemas were recorded
    assert uploaded_info(ds) == ((2,), 3, ("u", "v"), 1)


def test_npz_text_labels_are_bounded_before_any_is_read(tmp_path):
    path = tmp_path / "long.npz"
    np.savez(path, x=np.zeros((2, 2)), y=np.array(["a" * (d.MAX_CLASS_CHARS + 1), "b"]))
    with pytest.raises(InvalidArgument, match="class labels have 1 to 100"):
        d.describe(path, "npz")


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04garbage", b"\x00" * 300])
def test_garbage_npz_is_invalid_argument(tmp_path, content):
    path = tmp_path / "g.npz"
    path.write_bytes(content)
    with pytest.raises(InvalidArgument, match="not a valid NPZ"):
        d.describe(path, "npz")


def test_csv_header_names_are_bounded(tmp_path):
    path = tmp_path / "long.csv"
    names = [f"{i:05d}" + "x" * 95 for i in range(3000)]  # 300 000 characters
    path.write_text(",".join(names) + "\n" + 2 * (",".join("1" * 3000) + "\n"))
    with pytest.raises(InvalidArgument, match="column names hold"):
        d.describe(path, "csv")
