"""Per-epoch checkpoints under `<job>/checkpoints/epoch-NNNNNN/state.pt`, written atomically.

A checkpoint holds `{"epoch", "model", "optimizer", "dataset_hash"}`. It is loaded with
`weights_only=True` (no arbitrary unpickling). No RNG state is stored: the loop derives every
epoch's RNG from (seed, epoch, rank), so a resumed run matches an uninterrupted one exactly.
"""
from __future__ import annotations

import io
import os
import re
import shutil
import uuid
from pathlib import Path

import torch

from trainserve.faults import pause_point

STATE_FILE = "state.pt"
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


def save_checkpoint(directory: Path, epoch: int, state: dict, keep: int = 2) -> Path:
    """Write `state` as epoch `epoch`'s checkpoint, then delete all but the newest `keep`.

    Written into a temp dir (the file fsynced), renamed into place, then the parent dir
    fsynced: a crash mid-write leaves either no checkpoint for this epoch or a complete one,
    never a torn one (the loader ignores temp dirs; `remove_temp_dirs` clears them).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / checkpoint_name(epoch)
    tmp = directory / f".tmp-{checkpoint_name(epoch)}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _write_synced(tmp / STATE_FILE, state, pause_key=directory.parent.name,
                      point=f"checkpoint-write-{epoch}")
        if final.exists():  # left by an earlier attempt that got this far
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for _, old in list_checkpoints(directory)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _write_synced(path: Path, state: dict, pause_key: str, point: str) -> None:
    """torch.save into `path`, flushed to disk. The fault point sits mid-write (half the
    bytes written) so crash tests can kill a writer there (`trainserve.faults`)."""
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


def remove_temp_dirs(directory: Path) -> None:
    """Remove temp dirs left by a writer that died mid-save (call before training starts)."""
    if Path(directory).is_dir():
        for entry in Path(directory).glob(".tmp-*"):
            shutil.rmtree(entry, ignore_errors=True)
