"""Per-epoch checkpoints under `<job>/checkpoints/epoch-NNNNNN/state.pt`, written atomically.

A checkpoint holds `{"epoch", "model", "optimizer", "dataset_hash"}`. It is loaded with
`weights_only=True` (no arbitrary unpickling). No RNG state is stored: the loop derives every
epoch's RNG from (seed, epoch, rank), so a resumed run matches an uninterrupted one exactly.

Durability: a write is atomic against the death of the process (temp dir, then rename).
`durable=True` also fsyncs the file and the folder, so that the checkpoint survives the
machine going down; the loop asks for it at most every `DURABLE_EVERY_S` (an fsync after
every few-millisecond epoch would cost a small model a tenth of its speed). A checkpoint that
did not reach the disk before a machine crash is found unreadable by `newest_readable`,
removed, and the one before it used.
"""
from __future__ import annotations

import io
import os
import re
import shutil
import uuid
from pathlib import Path

import torch

from trainserve.core.faults import pause_point

STATE_FILE = "state.pt"
DURABLE_EVERY_S = 30.0
_NAME = re.compile(r"^epoch-(\d{6,})$")


def checkpoint_name(epoch: int) -> str:
    return f"epoch-{epoch:06d}"


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints as `(epoch, dir)`, oldest first (temp dirs are never listed)."""
    if not Path(directory).is_dir():
        return []
    found = []
    for entry in Path(directory).iterdir():
        match = _NAME.match(entry.name)
        if match and (entry / STATE_FILE).is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def save_checkpoint(directory: Path, epoch: int, state: dict, keep: int = 2,
                    durable: bool = True) -> Path:
    """Write `state` as epoch `epoch`'s checkpoint, then delete all but the newest `keep`.

    Written into a temp dir, renamed into place: a process killed mid-write leaves either no
    checkpoint for this epoch or a complete one, never a torn one (the loader ignores temp
    dirs; `remove_temp_dirs` clears them). `durable`: the file is fsynced before the rename
    and the parent dir after it.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / checkpoint_name(epoch)
    tmp = directory / f".tmp-{checkpoint_name(epoch)}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _write(tmp / STATE_FILE, state, pause_key=directory.parent.name,
               point=f"checkpoint-write-{epoch}", durable=durable)
        if final.exists():  # left by an earlier attempt that got this far
            shutil.rmtree(final)
        os.rename(tmp, final)
        if durable:
            _fsync_dir(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for _, old in list_checkpoints(directory)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _write(path: Path, state: dict, pause_key: str, point: str, durable: bool) -> None:
    """torch.save into `path`, fsynced when `durable`. The fault point sits mid-write (half
    the bytes written) so crash tests can kill a writer there (`trainserve.core.faults`)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getbuffer()
    half = len(data) // 2
    with open(path, "wb") as f:
        f.write(data[:half])
        f.flush()
        pause_point(point, pause_key)
        f.write(data[half:])
        f.flush()
        if durable:
            os.fsync(f.fileno())


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_checkpoint(path: Path) -> dict:
    """A checkpoint's state (tensors on CPU)."""
    return torch.load(Path(path) / STATE_FILE, map_location="cpu", weights_only=True)


def newest_readable(directory: Path) -> tuple[int, dict | None, list[tuple[int, str]]]:
    """`(epoch, state)` of the newest checkpoint that loads, `(0, None)` if none does, and
    the newer ones that did not load, as `(epoch, error)`; those are removed (written
    without an fsync, they did not reach the disk before the machine went down)."""
    unreadable = []
    for epoch, path in reversed(list_checkpoints(directory)):
        try:
            return epoch, load_checkpoint(path), unreadable
        except Exception as exc:  # noqa: BLE001 - any unreadable file: a torn write
            unreadable.append((epoch, f"{type(exc).__name__}: {exc}"))
            shutil.rmtree(path, ignore_errors=True)
    return 0, None, unreadable


def remove_temp_dirs(directory: Path) -> None:
    """Remove temp dirs left by a writer that died mid-save (call before training starts)."""
    if Path(directory).is_dir():
        for entry in Path(directory).glob(".tmp-*"):
            shutil.rmtree(entry, ignore_errors=True)
