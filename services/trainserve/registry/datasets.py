"""User datasets: streamed uploads of CSV or NPZ files, checked, stored by content hash.

The bytes go to `<storage>/datasets/<sha256>.<format>` (written once: identical content
uploaded twice is stored once); the record in Redis maps the name to the hash. Nothing a
user uploads is ever unpickled: NPZ files load with `allow_pickle=False`.
"""
from __future__ import annotations

import csv
import hashlib
import os
import time
import uuid
from pathlib import Path

from trainserve.errors import InvalidArgument, ResourceExhausted
from trainserve.jobs.spec import check_name
from trainserve.pb import dataset_pb2
from trainserve.store.datasets import DatasetStore
from trainserve.store.names import DATASET, NameClaims
from trainserve.tenancy import Principal, check_visible, claim, owner_of, visible

FORMATS = ("csv", "npz")
DEFAULT_MAX_BYTES = 256 << 20
# Columns of a CSV dataset: course data has tens to hundreds of features.
MAX_COLUMNS = 10_000


def dataset_path(storage_dir: str | Path, sha256: str, fmt: str) -> Path:
    return Path(storage_dir) / "datasets" / f"{sha256}.{fmt}"


class Upload:
    """One upload in progress: bytes are hashed and spooled to a temporary file."""

    def __init__(self, core: "DatasetsCore", header: dataset_pb2.DatasetUploadHeader,
                 caller: Principal):
        check_name(header.name, "header.name")
        if header.format not in FORMATS:
            raise InvalidArgument(f"must be one of {', '.join(FORMATS)}", field="header.format")
        self.core, self.header, self.user = core, header, owner_of(caller)
        # The name is the uploader's from here on, before a byte is stored (atomic claim).
        claim(NameClaims(core.store.r), [(DATASET, header.name, "header.name")], self.user)
        self.hash = hashlib.sha256()
        self.size = 0
        folder = Path(core.storage_dir) / "datasets"
        folder.mkdir(parents=True, exist_ok=True)
        self.tmp = folder / f".upload-{uuid.uuid4().hex}"
        self.file = open(self.tmp, "wb")

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.core.max_bytes:
            self.abort()
            raise ResourceExhausted(f"dataset larger than the server's limit of "
                                    f"{self.core.max_bytes} bytes")
        self.hash.update(chunk)
        self.file.write(chunk)

    def finish(self) -> dataset_pb2.Dataset:
        self.file.close()
        try:
            columns, rows = inspect(self.tmp, self.header.format)
        except InvalidArgument:
            self.tmp.unlink(missing_ok=True)
            raise
        sha = self.hash.hexdigest()
        target = dataset_path(self.core.storage_dir, sha, self.header.format)
        if target.exists():
            self.tmp.unlink()
        else:
            os.replace(self.tmp, target)
        ds = dataset_pb2.Dataset(name=self.header.name, format=self.header.format, sha256=sha,
                                 size_bytes=self.size, columns=columns, num_rows=rows,
                                 description=self.header.description, user=self.user)
        ds.created_at.FromNanoseconds(int(time.time() * 1e9))
        self.core.store.put(ds)
        return ds

    def abort(self) -> None:
        if not self.file.closed:
            self.file.close()
        self.tmp.unlink(missing_ok=True)


def inspect(path: Path, fmt: str) -> tuple[list[str], int]:
    """(column or array names, number of samples); `InvalidArgument` if it does not parse."""
    return _inspect_csv(path) if fmt == "csv" else _inspect_npz(path)


def _inspect_csv(path: Path) -> tuple[list[str], int]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header or any(not h.strip() for h in header):
                raise InvalidArgument("the first row must name every column", field="chunk")
            if len(header) > MAX_COLUMNS:
                raise InvalidArgument(f"has {len(header)} columns; at most {MAX_COLUMNS}",
                                      field="chunk")
            if len(set(header)) != len(header):
                raise InvalidArgument("column names must be unique", field="chunk")
            rows = 0
            for rows, row in enumerate(reader, start=1):
                if len(row) != len(header):
                    raise InvalidArgument(f"row {rows + 1} has {len(row)} fields, the header "
                                          f"{len(header)}", field="chunk")
    except UnicodeDecodeError:
        raise InvalidArgument("a CSV dataset must be UTF-8 text", field="chunk") from None
    except csv.Error as exc:
        raise InvalidArgument(f"not a valid CSV file: {exc}", field="chunk") from None
    if rows < 2:
        raise InvalidArgument("needs at least 2 data rows", field="chunk")
    return [h.strip() for h in header], rows


def _inspect_npz(path: Path) -> tuple[list[str], int]:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.files)
            if "x" not in names:
                raise InvalidArgument(f"an NPZ dataset needs an array 'x' (has {names})",
                                      field="chunk")
            x = npz["x"]
            y = npz["y"] if "y" in names else None
    except (ValueError, OSError, EOFError) as exc:  # also: object arrays (would need pickle)
        raise InvalidArgument(f"not a valid NPZ file without pickled objects: {exc}",
                              field="chunk") from None
    if x.ndim < 2 or x.dtype.kind not in "biuf":
        raise InvalidArgument("'x' must be a numeric array of shape [N, ...features]",
                              field="chunk")
    if y is not None and len(y) != len(x):
        raise InvalidArgument(f"'y' has {len(y)} rows, 'x' {len(x)}", field="chunk")
    return names, int(len(x))


class DatasetsCore:
    def __init__(self, client, storage_dir: str, max_bytes: int = DEFAULT_MAX_BYTES):
        self.store = DatasetStore(client)
        self.storage_dir = storage_dir
        self.max_bytes = max_bytes

    def begin(self, header: dataset_pb2.DatasetUploadHeader,
              caller: Principal) -> Upload:
        return Upload(self, header, caller)

    def get(self, name: str, caller: Principal) -> dataset_pb2.Dataset:
        if not name:
            raise InvalidArgument("required", field="name")
        ds = self.store.get(name)
        check_visible(ds.user, caller, f"dataset {name!r} not found")
        return ds

    def list(self, caller: Principal) -> list[dataset_pb2.Dataset]:
        return [d for d in self.store.list() if visible(d.user, caller)]

    def delete(self, name: str, caller: Principal) -> dataset_pb2.Dataset:
        self.get(name, caller)
        return self.store.delete(name)
