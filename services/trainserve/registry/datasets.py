"""User datasets: streamed uploads of CSV or NPZ files, checked, stored by content hash.

The bytes go to `<storage>/datasets/<sha256>.<format>` (written once: identical content
uploaded twice is stored once), fsynced and renamed into place before the record in Redis maps
the name to the hash. The content is checked and described once, here (`training.describe`):
the record carries its schema, so a submission never reads the file. Nothing a user uploads
is ever unpickled, and no NPZ array is inflated to check it (its .npy headers are read).
Each user's datasets hold at most `max_user_bytes` in all.
"""
from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from pathlib import Path

from trainserve.core.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from trainserve.core.spec import check_name
from trainserve.core.pb import dataset_pb2
from trainserve.store import files
from trainserve.store.datasets import DatasetStore
from trainserve.store.jobs import JobStore
from trainserve.store.names import DATASET, NameClaims
from trainserve.store import keys
from trainserve.core.tenancy import Principal, check_visible, claim, owner_of, visible
from trainserve.training.describe import describe

FORMATS = ("csv", "npz")
DEFAULT_MAX_BYTES = 256 << 20
# Uploaded bytes one user may store (their datasets' sizes summed): eight of the largest
# uploads, far above a course's needs.
DEFAULT_MAX_USER_BYTES = 2 << 30
# Field of a user's quota hash (store.keys.quota) that overrides it for that user.
USER_BYTES_FIELD = "dataset_bytes"


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
        # The user's quota counts their other datasets (not this name's old content, which
        # this upload replaces) and their uploads in flight (`DatasetsCore.reserve`).
        self.limit = core.user_limit(self.user)
        self.stored = core.stored_bytes(self.user, but=header.name)
        self.reserved = 0
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
        try:
            self.core.reserve(self, len(chunk))  # before the bytes are stored
        except ResourceExhausted:
            self.abort()
            raise
        self.hash.update(chunk)
        self.file.write(chunk)

    def finish(self) -> dataset_pb2.Dataset:
        self.file.flush()
        os.fsync(self.file.fileno())  # on the disk before any record names it
        self.file.close()
        try:
            schema, columns, rows = describe(self.tmp, self.header.format)
        except InvalidArgument:
            self.tmp.unlink(missing_ok=True)
            raise
        sha = self.hash.hexdigest()
        target = dataset_path(self.core.storage_dir, sha, self.header.format)
        # Content-addressed, so stored once; but a file already there is trusted only when its
        # bytes hash to its name (one torn by a crash is replaced by this upload's).
        if files.sha256_of(target) == sha:
            self.tmp.unlink()
        else:
            files.publish(self.tmp, target)
        ds = dataset_pb2.Dataset(name=self.header.name, format=self.header.format, sha256=sha,
                                 size_bytes=self.size, columns=columns, num_rows=rows,
                                 description=self.header.description, user=self.user,
                                 schema=schema)
        ds.created_at.FromNanoseconds(int(time.time() * 1e9))
        with self.core.quota_lock:  # counted again, with uploads that finished meanwhile
            self.stored = self.core.stored_bytes(self.user, but=self.header.name)
            if self.stored + self.size > self.limit:
                raise self.over_quota()
            self.core.store.put(ds)
        self.core.release(self)
        return ds

    def over_quota(self) -> ResourceExhausted:
        return ResourceExhausted(
            f"user {self.user!r} would store more than the per-user limit of {self.limit} "
            f"bytes of uploaded datasets (max_user_dataset_bytes); delete datasets to make room")

    def abort(self) -> None:
        if not self.file.closed:
            self.file.close()
        self.tmp.unlink(missing_ok=True)
        self.core.release(self)


class DatasetsCore:
    def __init__(self, client, storage_dir: str, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_user_bytes: int = DEFAULT_MAX_USER_BYTES):
        self.store = DatasetStore(client)
        self.storage_dir = storage_dir
        self.max_bytes = max_bytes
        self.max_user_bytes = max_user_bytes
        # Bytes of each user's uploads in flight in this process, so that parallel uploads
        # cannot together pass the user's quota.
        self.quota_lock = threading.Lock()
        self._inflight: dict[str, int] = {}

    def reserve(self, upload: Upload, n: int) -> None:
        """Count `n` more bytes of `upload` against its user's quota, or refuse them."""
        with self.quota_lock:
            inflight = self._inflight.get(upload.user, 0)
            if upload.stored + inflight + n > upload.limit:
                raise upload.over_quota()
            self._inflight[upload.user] = inflight + n
            upload.reserved += n

    def release(self, upload: Upload) -> None:
        """The bytes `upload` reserved no longer in flight (it is stored or given up)."""
        with self.quota_lock:
            left = self._inflight.get(upload.user, 0) - upload.reserved
            upload.reserved = 0
            if left > 0:
                self._inflight[upload.user] = left
            else:
                self._inflight.pop(upload.user, None)

    def user_limit(self, user: str) -> int:
        """Upload bytes `user` may store: the operator's override (`ts:quota:<user>` field
        `dataset_bytes`, when > 0), else the server's `max_user_bytes`."""
        own = self.store.r.hget(keys.quota(user or "-"), USER_BYTES_FIELD)
        return int(own) if own and int(own) > 0 else self.max_user_bytes

    def stored_bytes(self, user: str, but: str = "") -> int:
        """Bytes of `user`'s datasets (named other than `but`), what their quota counts."""
        return sum(d.size_bytes for d in self.store.list() if d.user == user and d.name != but)

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
        """Remove the dataset's record (its name stays its owner's). Refused while a queued or
        running job trains on its content: the job reads the file when it starts or resumes.
        Model versions trained on it keep their lineage (the content's hash)."""
        ds = self.get(name, caller)
        for job in JobStore(self.store.r).unfinished():
            pinned = job.spec.dataset.uploaded
            if job.spec.dataset.name == name and pinned.sha256 == ds.sha256:
                who = f"job {job.id}" if visible(job.user, caller) else "a job of another user"
                raise FailedPrecondition(f"dataset {name!r}: {who} trains on it and has not "
                                         "finished; wait for it or cancel it first")
        return self.store.delete(name)
