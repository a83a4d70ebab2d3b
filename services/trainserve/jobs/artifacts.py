"""A job's downloadable files (JobService.ListArtifacts / GetArtifact), transport-neutral.

What a job offers:
- its plots (`trainserve.jobs.plots`): the training curves (from its epoch events,
  `jobs.curves`), what its training run saved for plots (`<job>/evaluation.npz`: confusion
  matrix, ROC curve, predictions, reconstructions, samples), or a search's trial plots;
- `metrics.json` (state, epoch, final metrics; a search: each trial's metrics) and
  `curves.csv` (one row per epoch, one column per metric).

They are rendered on the first request into `<job>/plots/` and served from there until the
job changes (a new event: the stamp file records the job's state and last event id), so a
finished job is drawn once. Names are bare file names from the listing, never paths; the
server reads only files it wrote itself and nothing is ever unpickled.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

from trainserve.core import errors
from trainserve.core.state import JobState
from trainserve.core.pb import job_pb2
from trainserve.core.tenancy import Principal
from trainserve.core.tracking import EVENTS_PREFIX
from trainserve.jobs.curves import epoch_points
from trainserve.runtime.tracking import EVENTS_SUFFIX, TENSORBOARD_DIR
from trainserve.training.evaluation import EVALUATION_FILE
from trainserve.training.paths import JobPaths

CACHE_DIR = "plots"
STAMP = ".stamp"
MAX_NAME = 255
CONTENT_TYPES = {".png": "image/png", ".json": "application/json", ".csv": "text/csv",
                 EVENTS_SUFFIX: "application/octet-stream"}  # TensorBoard event files
_RENDER_LOCK = threading.Lock()  # pyplot keeps global state: one rendering at a time


def check_name(name: str) -> str:
    """`name` if it is a bare file name; `InvalidArgument` (field `name`) for anything that
    could address another file: a path, `..`, a hidden name, a NUL."""
    if not name:
        raise errors.InvalidArgument("required", field="name")
    if (len(name) > MAX_NAME or "\x00" in name or "/" in name or "\\" in name
            or name.startswith(".") or os.path.isabs(name)):
        raise errors.InvalidArgument(f"{name!r} is not an artifact name: use a bare file "
                                     "name from ListArtifacts", field="name")
    return name


class JobArtifacts:
    """The files of jobs, over the job API's core (`jobs.service.JobsCore`)."""

    def __init__(self, core):
        self.core = core

    def list(self, job_id: str, caller: Principal) -> list[job_pb2.ArtifactInfo]:
        return [_info(path) for path in self._files(self.core.get(job_id, caller))]

    def read(self, job_id: str, name: str, caller: Principal
             ) -> tuple[job_pb2.ArtifactInfo, bytes]:
        """The info and bytes of artifact `name` of the job; NOT_FOUND if it has none such
        (or the job is another user's: `caller`, a `tenancy.Principal`)."""
        check_name(name)
        files = {p.name: p for p in self._files(self.core.get(job_id, caller))}
        if name not in files:
            raise errors.NotFound(f"job {job_id} has no artifact {name!r}; it has: "
                                  f"{', '.join(sorted(files)) or 'none yet'}")
        return _info(files[name]), files[name].read_bytes()

    def _files(self, job: job_pb2.Job) -> list[Path]:
        """The job's artifact files, rendered now unless the cache is current."""
        if not self.core.storage_dir:
            raise errors.FailedPrecondition("the job API has no storage directory configured")
        root = JobPaths.of(self.core.storage_dir, job.id).root
        cache, stamp = root / CACHE_DIR, _stamp(job, self._last_event(job.id))
        with _RENDER_LOCK:
            if _read(cache / STAMP) != stamp:
                self._render(job, root, cache, stamp)
            return sorted(p for p in cache.iterdir() if p.is_file() and p.suffix in CONTENT_TYPES)

    def _last_event(self, job_id: str) -> str:
        last = self.core.store.events.r.xrevrange(self.core.store.events.key(job_id), count=1)
        return last[0][0].decode() if last else ""

    def _render(self, job: job_pb2.Job, root: Path, cache: Path, stamp: str) -> None:
        """Write every file into a fresh directory, then swap it in for the cache."""
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{CACHE_DIR}.tmp-"))
        try:
            write_files(job, self.core.store.events.history(job.id), root, tmp)
            (tmp / STAMP).write_text(stamp)
            old = root / f".{CACHE_DIR}.old-{os.getpid()}-{threading.get_ident()}"
            if cache.exists():
                os.rename(cache, old)
            os.rename(tmp, cache)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def write_files(job: job_pb2.Job, events: list[job_pb2.JobEvent], root: Path,
                out: Path) -> None:
    """Every artifact file of `job` into `out` (its storage directory is `root`)."""
    from trainserve.jobs import plots
    title = job.spec.name or job.id
    evaluation = root / EVALUATION_FILE
    if job.spec.HasField("search"):
        try:
            plots.search_plots(job, out)
        except plots.NoEpochs:
            pass
        # The registered model is the best trial's: its plots are the search's.
        best = job.best_trial
        evaluation = root / "trials" / best / EVALUATION_FILE if _is_plain(best) else None
    else:
        epochs = epoch_points(events)
        if epochs:
            plots.training_plots(job, epochs, out)
            (out / "curves.csv").write_text(curves_csv(epochs))
    if evaluation is not None and evaluation.is_file() \
            and job.state == job_pb2.JOB_STATE_SUCCEEDED:
        plots.evaluation_plots(plots.load_evaluation(evaluation), out, title)
    (out / "metrics.json").write_text(json.dumps(metrics_doc(job), indent=2, sort_keys=True))
    copy_event_files(root, out)


def copy_event_files(root: Path, out: Path) -> None:
    """The TensorBoard event files the job's worker wrote (`spec.tracking.tensorboard`); a
    search's trials write theirs in sub-folders, each file's name ending in its trial's id."""
    for events in sorted((root / TENSORBOARD_DIR).rglob(f"{EVENTS_PREFIX}*{EVENTS_SUFFIX}")):
        if events.is_file() and not events.is_symlink():
            shutil.copyfile(events, out / events.name)


def curves_csv(epochs: list[job_pb2.EpochMetrics]) -> str:
    """One row per epoch: `epoch`, then every metric reported (sorted), empty where missing."""
    names = sorted({name for point in epochs for name in point.metrics})
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["epoch", *names])
    for point in epochs:
        writer.writerow([point.epoch, *(repr(point.metrics[n]) if n in point.metrics else ""
                                        for n in names)])
    return buf.getvalue()


def metrics_doc(job: job_pb2.Job) -> dict:
    doc = {"job_id": job.id, "state": JobState(job.state).name.lower(),
           "epoch": job.epoch, "total_epochs": job.total_epochs, "metrics": dict(job.metrics)}
    if job.spec.HasField("search"):
        doc["best_trial"] = job.best_trial
        doc["trials"] = {t.id: {"state": t.state, "metrics": dict(t.metrics),
                                "config": dict(t.config)}  # path -> JSON text
                         for t in job.trials}
    return doc


def _is_plain(name: str) -> bool:
    """A non-empty name that is no path (a trial id from the store, say)."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\x00" not in name


def _stamp(job: job_pb2.Job, last_event: str) -> str:
    return f"{job.state}:{last_event}"


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _info(path: Path) -> job_pb2.ArtifactInfo:
    return job_pb2.ArtifactInfo(name=path.name, content_type=CONTENT_TYPES[path.suffix],
                                size_bytes=path.stat().st_size)
