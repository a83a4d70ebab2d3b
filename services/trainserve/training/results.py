"""`TrainResult`: what a finished (or cancelled) training run hands back. torch-free."""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

Status = Literal["succeeded", "cancelled"]


@dataclass(frozen=True)
class TrainResult:
    """`metrics` are the final test metrics (succeeded) or the last epoch's (cancelled);
    `artifact_dir` is None unless the run succeeded. `confusion_matrix` (classification,
    succeeded): counts of true class i (row) predicted as class j (column) on the test split."""
    status: Status
    metrics: dict[str, float] = field(default_factory=dict)
    artifact_dir: str | None = None
    dataset_hash: str | None = None
    confusion_matrix: list[list[int]] | None = None

    def write(self, path: Path) -> None:
        """Write as JSON, atomically (temp file + rename in the same directory)."""
        write_json_atomic(path, asdict(self))

    @classmethod
    def read(cls, path: Path) -> "TrainResult":
        return cls(**json.loads(Path(path).read_text()))


def write_json_atomic(path: Path, obj) -> None:
    """Write `obj` as JSON to `path` so readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
