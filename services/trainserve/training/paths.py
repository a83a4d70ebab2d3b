"""Where a job's files live under the shared storage directory (see docs/architecture.md)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class JobPaths:
    """`<storage>/jobs/<job_id>/` and the files in it."""
    root: Path

    @classmethod
    def of(cls, storage_dir: str | Path, job_id: str) -> "JobPaths":
        if not job_id or "/" in job_id or job_id in (".", ".."):
            raise ValueError(f"job id {job_id!r} cannot name a directory")
        return cls(Path(storage_dir) / "jobs" / job_id)

    @property
    def checkpoints(self) -> Path:
        """`epoch-NNNNNN/` directories, the latest two kept."""
        return self.root / "checkpoints"

    @property
    def artifact(self) -> Path:
        """The final model written by rank 0 (`model.safetensors` + `meta.json`)."""
        return self.root / "artifact"

    @property
    def result(self) -> Path:
        """`result.json`: the outcome rank 0 leaves for the launcher (Ray Train returns none)."""
        return self.root / "result.json"

    @property
    def failure(self) -> Path:
        """`failure.json`: a `TrainingError` message rank 0 leaves when Ray Train must not retry."""
        return self.root / "failure.json"

    @property
    def cancel_flag(self) -> Path:
        """Created by `run_job` to tell the workers to stop (besides the reporter's own flag)."""
        return self.root / "cancel"
