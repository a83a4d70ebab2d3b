"""Durable files on the shared storage: written under a unique temporary name, flushed to the
disk, then renamed into place, so a reader (or a record in Redis written afterwards) never
sees a torn file, even after the machine goes down.

Temporary names carry a random uuid, never a process id: the storage is shared by the API,
the dispatcher and every worker node, where process ids repeat.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path

TEMP_MARK = ".tmp-"


def temp_path(target: str | Path) -> Path:
    """A fresh temporary name next to `target` (same folder, so the rename is atomic)."""
    target = Path(target)
    return target.with_name(f".{target.name}{TEMP_MARK}{uuid.uuid4().hex}")


def fsync_dir(folder: str | Path) -> None:
    """Flush a folder's entries (a rename is durable only once its folder is)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def publish(tmp: str | Path, target: str | Path) -> None:
    """Rename a fully written and fsynced `tmp` onto `target`, then flush the folder."""
    os.replace(tmp, target)
    fsync_dir(Path(target).parent)


def write_bytes(target: str | Path, data: bytes) -> Path:
    """Write `data` to `target` durably: temp file, fsync, rename, fsync of the folder."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(target)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def fsync_tree(folder: str | Path) -> None:
    """Flush every file and folder under `folder` (deepest first), then `folder` itself."""
    for root, _dirs, names in os.walk(folder, topdown=False):
        for name in names:
            fsync_file(Path(root) / name)
        fsync_dir(root)


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str | None:
    """The SHA-256 of a file's content, read in chunks; None if there is no such file."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    except FileNotFoundError:
        return None
    return h.hexdigest()


def remove_tree(path: str | Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
