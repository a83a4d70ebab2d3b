"""Model registry: turns a finished job's artifact into a registered, immutable model version.

The artifact is copied to `<storage>/models/<name>/<version>/` and described by a
`ModelVersion` record; both steps are idempotent, so a job re-run after a crash registers
the same version once.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from google.protobuf import json_format

from trainserve.core.pb import job_pb2, model_pb2, spec_pb2
from trainserve.serve.signature import version_record
from trainserve.store import files
from trainserve.store.models import ModelStore
from trainserve.store.names import MODEL, NameClaims
from trainserve.core.tenancy import Principal, check_visible, claim


def model_dir(storage_dir: str | Path, name: str, version: int) -> Path:
    return Path(storage_dir) / "models" / name / str(version)


def register(models: ModelStore, storage_dir: str | Path, job: job_pb2.Job,
             artifact_dir: str | Path, caller: Principal) -> model_pb2.ModelVersion:
    """Register the artifact a job produced under the job's model name, for the job's owner,
    acting as `caller` (the dispatcher acts as the owner). The name is claimed for the owner
    (again: the job claimed it at submission); ALREADY_EXISTS, and nothing registered, if
    another user holds it."""
    name = job.spec.name
    check_visible(job.user, caller, f"job {job.id!r} not found")
    claim(NameClaims(models.r), [(MODEL, name, "spec.name")], job.user)
    version = models.allocate_version(name, job.id)
    target = model_dir(storage_dir, name, version)
    _copy_once(Path(artifact_dir), target)
    meta = json.loads((target / "meta.json").read_text())
    search = meta.get("search") or {}  # set by a search on its best trial's artifact
    spec = job.spec
    if search:
        spec = json_format.ParseDict(meta["spec"], spec_pb2.JobSpec(), ignore_unknown_fields=True)
        spec.name = job.spec.name
    mv = version_record(name, version, meta, str(target))
    mv.MergeFrom(model_pb2.ModelVersion(
        job_id=job.id, user=job.user, dataset_hash=meta.get("dataset_hash", ""),
        seed=job.spec.training.seed, spec=spec, trial_id=search.get("trial_id", ""),
        search_config=search.get("config", {}),
        metrics={k: float(v) for k, v in (meta.get("metrics") or {}).items()}))
    mv.created_at.FromNanoseconds(int(time.time() * 1e9))
    models.put(mv)
    return mv


def _copy_once(src: Path, target: Path) -> None:
    """Copy the artifact `src` to the version's folder `target`, durably, unless an identical
    copy is there already. A folder there is trusted only when every file matches `src` by
    hash: one torn by a crash mid-copy (its meta.json present or not) is replaced. The copy
    goes to a uuid-named temp folder (the storage is shared: process ids repeat across
    nodes), is fsynced, then renamed into place, before the version's record is written."""
    if _same_tree(src, target) or (not src.is_dir() and (target / "meta.json").is_file()):
        return  # (a source already cleaned up leaves nothing to compare: keep the copy)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = files.temp_path(target)
    try:
        shutil.copytree(src, tmp)
        files.fsync_tree(tmp)
        if _same_tree(src, target):  # another registrar of this job got there first
            return
        shutil.rmtree(target, ignore_errors=True)
        os.rename(tmp, target)
        files.fsync_dir(target.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _same_tree(src: Path, target: Path) -> bool:
    """Whether `target` holds exactly `src`'s files with the same bytes."""
    if not (target / "meta.json").is_file():
        return False
    names = sorted(p.relative_to(src) for p in src.rglob("*") if p.is_file())
    if names != sorted(p.relative_to(target) for p in target.rglob("*") if p.is_file()):
        return False
    return all(files.sha256_of(src / n) == files.sha256_of(target / n) for n in names)
