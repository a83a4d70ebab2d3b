"""Hostile uploads against the real stack (DatasetService over gRPC): a zip bomb refused from
its headers with the API's memory sampled, a torn stored file repaired by re-uploading, the
per-user storage quota, and submissions validated from the schema recorded at upload (the API
never reads the file)."""
from __future__ import annotations

import os
import threading
import time
import uuid
import zipfile

import numpy as np
import pytest

from trainserve.core import errors
from trainserve.client import Client
from trainserve.core.pb import job_pb2
from trainserve.registry.datasets import USER_BYTES_FIELD
from trainserve.store import keys
from trainserve.store.redis import connect

pytestmark = pytest.mark.integration

# The API's resident memory may grow at most this much while it refuses the bomb (inflating
# its x would take 2 GiB).
BOMB_RSS_BOUND = 100 << 20
BOMB_INFLATED = 2 << 30


@pytest.fixture(scope="module")
def sdk(stack):
    with Client(stack.config.api_address, retry_for=0) as c:
        yield c


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    """A ~2 MiB NPZ whose `x` (float32, a valid .npy header) inflates to 2 GiB of zeros."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.npz"
    rows, cols = BOMB_INFLATED // (4 * 256), 256
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("x.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "<f4", "fortran_order": False, "shape": (rows, cols)})
            zeros = bytes(16 << 20)
            for _ in range(BOMB_INFLATED // len(zeros)):
                f.write(zeros)
        zf.writestr("y.npy", b"")  # never reached
    assert path.stat().st_size < 4 << 20
    return path


def _csv(tmp_path, header: str, rows: list[str], name: str):
    path = tmp_path / name
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def _unique_rows(n: int) -> list[str]:
    """Separable two-class rows whose bytes no other test uploads (content is addressed)."""
    rng = np.random.default_rng(uuid.uuid4().int % (1 << 32))
    out = []
    for i in range(n):
        label = i % 2
        a, b = rng.normal(3 * label, 0.5), rng.normal(-3 * label, 0.5)
        out.append(f"{a:.6f},{b:.6f},{'yes' if label else 'no'}")
    return out


def _rss(pid: int) -> int:
    """Resident bytes of process `pid` (Linux /proc)."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakRss:
    """Samples a process's resident memory every 5 ms while open."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self.start = _rss(pid)

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss(self.pid))
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return max(0, self.peak - self.start)


def test_npz_bomb_is_refused_from_its_headers_without_inflating(sdk, stack, bomb):
    pid = stack.pid("api")
    assert pid is not None
    started = time.monotonic()
    with _PeakRss(pid) as rss:
        with pytest.raises(errors.InvalidArgument, match="uncompressed, more than the limit"):
            sdk.upload_dataset(bomb, "hostile-bomb")
    took = time.monotonic() - started
    print(f"bomb refused in {took:.2f} s; API RSS {rss.start >> 20} MiB, peak growth "
          f"{rss.growth / (1 << 20):.1f} MiB")
    assert rss.growth < BOMB_RSS_BOUND, f"API RSS grew {rss.growth >> 20} MiB"
    assert took < 10, f"refused after {took:.1f} s"
    with pytest.raises(errors.NotFound):
        sdk.get_dataset("hostile-bomb")
    assert not list((stack.config.storage_path / "datasets").glob(".upload-*"))


def test_torn_stored_file_is_repaired_by_uploading_it_again(sdk, stack, tmp_path):
    path = _csv(tmp_path, "a,b,label", _unique_rows(120), "torn.csv")
    content = path.read_bytes()
    ds = sdk.upload_dataset(path, "hostile-torn")
    stored = stack.config.storage_path / "datasets" / f"{ds.sha256}.csv"
    stored.write_bytes(content[: len(content) // 2])  # what a crash before the flush leaves
    again = sdk.upload_dataset(path, "hostile-torn")
    assert again.sha256 == ds.sha256 and stored.read_bytes() == content
    job = sdk.submit({"dataset": {"name": "hostile-torn", "target_column": "label"},
                      "model": {"mlp": {"hidden": [8]}},
                      "training": {"epochs": 5, "batch_size": 16}})
    done = sdk.wait(job.id, timeout=300)
    assert done.state == job_pb2.JOB_STATE_SUCCEEDED, done.message


def test_per_user_storage_quota_refuses_past_it(sdk, stack, tmp_path):
    first = sdk.upload_dataset(_csv(tmp_path, "a,b,label", _unique_rows(60), "q1.csv"),
                               "hostile-quota-1")
    user = first.user
    used = sum(d.size_bytes for d in sdk.list_datasets() if d.user == user)
    limit = used + 4000
    r = connect(stack.config.redis_url)
    r.hset(keys.quota(user or "-"), USER_BYTES_FIELD, limit)
    try:
        # Replacing a name's content counts the new bytes only.
        sdk.upload_dataset(_csv(tmp_path, "a,b,label", _unique_rows(60), "q2.csv"),
                           "hostile-quota-1")
        big = _csv(tmp_path, "a,b,label", _unique_rows(400), "q3.csv")
        assert big.stat().st_size > 5000
        with pytest.raises(errors.ResourceExhausted, match=f"per-user limit of {limit} bytes"):
            sdk.upload_dataset(big, "hostile-quota-2", chunk_size=1024)
        with pytest.raises(errors.NotFound):
            sdk.get_dataset("hostile-quota-2")
        assert not list((stack.config.storage_path / "datasets").glob(".upload-*"))
    finally:
        r.hdel(keys.quota(user or "-"), USER_BYTES_FIELD)
        sdk.delete_dataset("hostile-quota-1")


def test_submission_is_checked_from_the_schema_not_the_file(sdk, stack, tmp_path):
    rows = [f"{i},{'abc'[i % 3]},{i % 2}" for i in range(40)] + [f"{uuid.uuid4().int % 97},a,1"]
    ds = sdk.upload_dataset(_csv(tmp_path, "a,name,y", rows, "s.csv"), "hostile-schema")
    stored = stack.config.storage_path / "datasets" / f"{ds.sha256}.csv"
    away = stored.with_name(stored.name + ".away")
    stored.rename(away)  # the API could not read it if it tried
    try:
        spec = {"dataset": {"name": "hostile-schema", "feature_columns": ["a"]},
                "model": {"mlp": {"hidden": [4]}}, "training": {"epochs": 1}}
        job = sdk.submit(spec)
        sdk.cancel(job.id)
        assert job.spec.dataset.uploaded.sha256 == ds.sha256
        assert list(job.spec.dataset.uploaded.schema.columns[-1].classes) == ["0", "1"]
        refusals = [({"target_column": "label"}, "spec.dataset.target_column",
                     "no column 'label'; columns: a, name, y"),
                    ({"feature_columns": ["a"], "categorical_columns": ["name"]},
                     "spec.dataset.categorical_columns[0]", "'name' is not a feature column"),
                    ({"feature_columns": ["zz"]}, "spec.dataset.feature_columns[0]",
                     "no column 'zz'")]
        for fields, field, words in refusals:
            bad = {**spec, "dataset": {"name": "hostile-schema", **fields}}
            with pytest.raises(errors.InvalidArgument) as e:
                sdk.submit(bad)
            assert e.value.field == field and words in str(e.value)
    finally:
        away.rename(stored)


def test_parallel_uploads_of_one_user_share_the_quota(redis_client, tmp_path):
    """Two streams in flight at once (real Redis, the API's upload core): the bytes of both
    count, so together they cannot pass the user's limit; the other user is not affected."""
    from trainserve.core.pb import dataset_pb2
    from trainserve.registry.datasets import DatasetsCore
    from trainserve.core.tenancy import Principal

    core = DatasetsCore(redis_client, str(tmp_path), max_user_bytes=1000)
    ann, bob = Principal("ann", "user"), Principal("bob", "user")

    def begin(name, who):
        return core.begin(dataset_pb2.DatasetUploadHeader(name=name, format="csv"), who)
    first, second, other = begin("par-1", ann), begin("par-2", ann), begin("par-3", bob)
    first.write(b"a,b\n" + b"1,2\n" * 150)  # 604 bytes in flight
    with pytest.raises(errors.ResourceExhausted, match="per-user limit of 1000 bytes"):
        second.write(b"a,b\n" + b"1,2\n" * 150)
    assert not second.tmp.exists()
    other.write(b"a,b\n" + b"3,4\n" * 150)
    assert first.finish().size_bytes == 604 and other.finish().user == "bob"
    again = begin("par-2", ann)
    with pytest.raises(errors.ResourceExhausted):  # 604 stored + 500 > 1000
        again.write(b"a,b\n" + b"5,6\n" * 124)
    assert core._inflight == {}
