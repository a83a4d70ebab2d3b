"""DatasetService over real gRPC: streamed uploads, content addressing, refusals."""
from __future__ import annotations

import hashlib
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest

from tests.conftest import free_port
from trainserve.core import errors
from trainserve.client import Client
from trainserve.core.pb import job_pb2
from trainserve.store.redis import connect

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sdk(stack):
    with Client(stack.config.api_address, retry_for=0) as c:
        yield c


def _csv(tmp_path, text: str, name="d.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_upload_is_stored_by_content_hash(sdk, stack, tmp_path):
    text = "age,dose,label\n" + "".join(f"{i},{i * 0.5},{i % 2}\n" for i in range(100))
    path = _csv(tmp_path, text)
    ds = sdk.upload_dataset(path, "doses", chunk_size=64)  # many chunks
    assert ds.sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert list(ds.columns) == ["age", "dose", "label"] and ds.num_rows == 100
    stored = stack.config.storage_path / "datasets" / f"{ds.sha256}.csv"
    assert stored.read_text() == text
    assert sdk.get_dataset("doses") == ds
    assert "doses" in {d.name for d in sdk.list_datasets()}
    again = sdk.upload_dataset(path, "doses-copy")
    assert again.sha256 == ds.sha256  # one copy on storage, two names


def test_npz_upload_and_refusal_of_pickled_objects(sdk, tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, x=np.random.rand(20, 3).astype(np.float32), y=np.arange(20) % 2)
    ds = sdk.upload_dataset(good, "arrays")
    assert ds.format == "npz" and ds.num_rows == 20 and set(ds.columns) == {"x", "y"}
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(errors.InvalidArgument, match="pickle"):
        sdk.upload_dataset(bad, "pickled")


@pytest.mark.parametrize("text,words", [
    ("a,b\n1,2\n3\n", "row 3 has 1 fields"),
    ("a,a\n1,2\n3,4\n", "unique"),
    ("a,b\n1,2\n", "at least 2"),
])
def test_bad_csv_is_invalid_argument(sdk, tmp_path, text, words):
    with pytest.raises(errors.InvalidArgument, match=words):
        sdk.upload_dataset(_csv(tmp_path, text), "bad")
    with pytest.raises(errors.NotFound):
        sdk.get_dataset("bad")


def test_bad_header_fields(sdk, tmp_path):
    path = _csv(tmp_path, "a,b\n1,2\n3,4\n")
    with pytest.raises(errors.InvalidArgument) as e:
        sdk.upload_dataset(path, "Bad Name")
    assert e.value.field == "header.name"
    with pytest.raises(errors.InvalidArgument) as e:
        sdk.upload_dataset(path, "ok", fmt="xlsx")
    assert e.value.field == "header.format"


def test_size_limit_is_resource_exhausted_and_leaves_nothing(stack, tmp_path):
    port = free_port()
    cfg = stack.config
    proc = subprocess.Popen([sys.executable, "-m", "trainserve.api", "--listen",
                             f"127.0.0.1:{port}", "--redis-url", cfg.redis_url, "--storage-dir",
                             str(cfg.storage_path), "--metrics-port", "0",
                             "--max-dataset-bytes", "1000"])
    try:
        with Client(f"127.0.0.1:{port}", retry_for=20, connect_for=20) as c:
            c.list_datasets()  # waits for the server to start
            path = _csv(tmp_path, "a,b\n" + "1,2\n" * 1000)
            with pytest.raises(errors.ResourceExhausted, match="1000 bytes"):
                c.upload_dataset(path, "too-big", chunk_size=256)
            with pytest.raises(errors.NotFound):
                c.get_dataset("too-big")
        leftovers = list((cfg.storage_path / "datasets").glob(".upload-*"))
        assert leftovers == []
    finally:
        proc.terminate()
        proc.wait(10)


def test_delete_and_unknown(sdk, tmp_path):
    sdk.upload_dataset(_csv(tmp_path, "a,b\n1,2\n3,4\n"), "temp")
    assert sdk.delete_dataset("temp").name == "temp"
    with pytest.raises(errors.NotFound):
        sdk.get_dataset("temp")
    with pytest.raises(errors.NotFound):
        sdk.delete_dataset("temp")


def test_a_job_trains_on_an_uploaded_csv_pinned_by_hash(sdk, stack, tmp_path):
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    names = [f"f{i}" for i in range(data.data.shape[1])]
    lines = [",".join(names + ["diagnosis"])]
    lines += [",".join([*map(str, row), data.target_names[t]])
              for row, t in zip(data.data, data.target)]
    path = _csv(tmp_path, "\n".join(lines) + "\n", "bc.csv")
    ds = sdk.upload_dataset(path, "clinic")
    spec = {"dataset": {"name": "clinic", "target_column": "diagnosis"},
            "model": {"mlp": {"hidden": [16]}}, "training": {"epochs": 30, "batch_size": 32}}
    job = sdk.submit(spec)
    assert job.spec.dataset.uploaded.sha256 == ds.sha256
    sdk.upload_dataset(_csv(tmp_path, "a,b\n1,2\n3,4\n", "other.csv"), "clinic")  # re-pointed
    done = sdk.wait(job.id, timeout=300)
    assert done.state == job_pb2.JOB_STATE_SUCCEEDED, done.message
    assert done.metrics["test_accuracy"] >= 0.93, done.message
    mv = sdk.get_model(done.model_name, done.model_version)
    assert list(mv.class_names) == ["benign", "malignant"]
    assert mv.spec.dataset.uploaded.sha256 == ds.sha256


def test_bad_columns_of_an_uploaded_csv_are_refused_at_submission(sdk, tmp_path):
    sdk.upload_dataset(_csv(tmp_path, "a,b,y\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n"), "small")
    spec = {"dataset": {"name": "small", "target_column": "label"}, "model": {"mlp": {}}}
    with pytest.raises(errors.InvalidArgument) as e:
        sdk.submit(spec)
    assert e.value.field == "spec.dataset.target_column" and "columns: a, b, y" in str(e.value)
    with pytest.raises(errors.InvalidArgument) as e:
        sdk.submit({"dataset": {"name": "digits", "target_column": "y"}, "model": {"mlp": {}}})
    assert e.value.field == "spec.dataset.target_column"
