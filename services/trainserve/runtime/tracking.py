"""Copies of a job's params and metrics in the trackers users already keep (`spec.tracking`,
else the stack's trackers; docs/tracking.md): TensorBoard event files in `<job>/tensorboard/`
and a run on an MLflow tracking server.

`tracked(ctx, reporter)` wraps the worker's reporter (rank 0's): every epoch's metrics go to
the trackers as they are reported, the final metrics and the outcome when the training
returns (`TrackingReporter.finished`). A search is one MLflow run (`search_tracked`) with a
nested run per trial, and one TensorBoard folder per trial (`trial_tracked`). `log_plots` adds
the job's plots once they are drawn. A tracker is opt-in and never fails the job: one that
cannot be opened or written is dropped, with one warning in the job's events and logs.
"""
from __future__ import annotations

import contextlib
import json
import logging
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Protocol

from google.protobuf.json_format import MessageToDict

from trainserve.core.pb import spec_pb2
from trainserve.core.tracking import StackTracking, effective_tracking
from trainserve.runtime.context import JobContext
from trainserve.runtime.mlflow_rest import PARENT_TAG, MlflowRest, credentials
from trainserve.training.reporting import Reporter
from trainserve.training.results import TrainResult, write_json_atomic

log = logging.getLogger(__name__)

TENSORBOARD_DIR = "tensorboard"
EVENTS_SUFFIX = ".tfevents"  # the event files' names end so (artifacts are listed by suffix)
STATE_FILE = "tracking.json"  # the MLflow run of the job, reused by a resumed attempt
FINAL_PREFIX = "final/"
MLFLOW_FLUSH_S = 1.0  # per-epoch metrics reach MLflow in batches at most this often
PLOTS_TAG = "plots/"  # the plots' image tags in TensorBoard and folder among MLflow artifacts
# Spec fields that are no hyperparameters: the trackers themselves, and what the server pins.
NOT_PARAMS = ("tracking", "dataset.uploaded", "model.transfer.artifact_path")
# How each run status reads in MLflow.
MLFLOW_STATUS = {"succeeded": "FINISHED", "cancelled": "KILLED", "failed": "FAILED"}


class Tracker(Protocol):
    """One tracker of a job: `epoch` per epoch, `finish` once with the outcome ("succeeded",
    "cancelled", "failed") and the final metrics, `close` last. Any may raise: the caller
    drops the tracker with a warning."""
    name: str  # as the warnings call it

    def epoch(self, epoch: int, metrics: Mapping[str, float]) -> None: ...

    def finish(self, status: str, metrics: Mapping[str, float], last_epoch: int) -> None: ...

    def close(self) -> None: ...


@dataclass
class Target:
    """One tracked run: a job, a search (its MLflow run only) or a search's trial."""
    tracking: spec_pb2.TrackingSpec  # the trackers, `effective_tracking`'s answer
    spec: spec_pb2.JobSpec           # what the params and the spec text are of
    run_name: str                    # the MLflow run's name: the job's or the trial's id
    folder: Path                     # the job's (or trial's) folder: its tracking.json
    tensorboard_dir: Path
    tags: dict[str, str]
    stack: StackTracking             # whose credentials go to the stack's own server only
    events_suffix: str = EVENTS_SUFFIX
    record: Callable[[dict], None] | None = None  # puts the run on the job's record
    leave_out: tuple[str, ...] = ()  # spec fields that are no params of this run

    @property
    def experiment(self) -> str:
        return self.tracking.mlflow.experiment or self.spec.name or "trainserve"

    def rest(self) -> MlflowRest:
        uri = self.tracking.mlflow.uri
        return MlflowRest(uri, auth=credentials(self.stack.credentials_for(uri)))


def job_target(job_id: str, spec: spec_pb2.JobSpec, storage_dir: str,
               stack: StackTracking | None, redis_url: str | None = None) -> Target | None:
    """The tracked run of job `job_id`, None when it tracks nothing."""
    tracking = effective_tracking(spec, stack)
    if tracking is None:
        return None
    from trainserve.training.paths import JobPaths
    root = JobPaths.of(storage_dir, job_id).root
    return Target(tracking, spec, job_id, root, root / TENSORBOARD_DIR,
                  {"trainserve.job_id": job_id, "trainserve.model_name": spec.name},
                  stack or StackTracking(), record=_recorder(redis_url, job_id))


@contextlib.contextmanager
def tracked(ctx: JobContext, reporter: Reporter, enabled: bool = True
            ) -> Iterator[Reporter]:
    """`reporter`, wrapped so that the trackers the job uses (its spec's, else the stack's:
    `ctx.tracking`) see it (only when `enabled`: rank 0). Call `finished(result)` on it with
    the training's result; a block left without (the training raised) ends the trackers' run
    as failed."""
    target = job_target(ctx.job_id, ctx.job_spec(), ctx.storage_dir, ctx.tracking,
                        ctx.redis_url) if enabled else None
    with tracking_target(target, reporter) as wrapped:
        yield wrapped


@contextlib.contextmanager
def tracking_target(target: Target | None, reporter: Reporter) -> Iterator[Reporter]:
    """`reporter` wrapped with the trackers of `target` (None: passed through)."""
    if target is None:
        yield _Untracked(reporter)
        return
    wrapped = TrackingReporter(reporter, open_trackers(target, reporter))
    try:
        yield wrapped
    except SystemExit:  # how Tune stops a trial its scheduler ends early (ASHA, median, ...)
        wrapped.end("cancelled", {})
        raise
    finally:
        wrapped.close()


class _Untracked:
    """A reporter without trackers; `finished` passes the result through."""

    def __init__(self, inner: Reporter):
        self.inner = inner

    def epoch(self, *args, **kwargs) -> None:
        self.inner.epoch(*args, **kwargs)

    def log(self, text: str, level: str = "info") -> None:
        self.inner.log(text, level=level)

    def cancel_requested(self) -> bool:
        return self.inner.cancel_requested()

    def finished(self, result: TrainResult) -> TrainResult:
        return result


class TrackingReporter:
    """The training loop's `Reporter`, copying each epoch to the trackers."""

    def __init__(self, inner: Reporter, trackers: list[Tracker]):
        self.inner, self.trackers = inner, trackers
        self.last_epoch, self.ended = 0, False

    def epoch(self, epoch, total_epochs, metrics, samples_per_second, elapsed_seconds) -> None:
        self.inner.epoch(epoch, total_epochs, metrics, samples_per_second, elapsed_seconds)
        self.last_epoch = epoch
        self._each("epoch", epoch, {k: float(v) for k, v in metrics.items()})

    def log(self, text: str, level: str = "info") -> None:
        self.inner.log(text, level=level)

    def cancel_requested(self) -> bool:
        return self.inner.cancel_requested()

    def finished(self, result: TrainResult) -> TrainResult:
        """Give the trackers the final metrics and the outcome; returns `result`."""
        self.end(result.status, result.metrics)
        return result

    def end(self, status: str, metrics: Mapping[str, float]) -> None:
        if not self.ended:
            self.ended = True
            self._each("finish", status, dict(metrics), self.last_epoch)

    def close(self) -> None:
        """End the trackers' run (as failed unless `finished` came first) and close them."""
        self.end("failed", {})
        for tracker in list(self.trackers):
            self._safely(tracker, "close")

    def _each(self, method: str, *args) -> None:
        for tracker in list(self.trackers):
            self._safely(tracker, method, *args)

    def _safely(self, tracker: Tracker, method: str, *args) -> None:
        """Call `tracker.method`; on any error drop the tracker with one warning."""
        try:
            getattr(tracker, method)(*args)
        except Exception as exc:  # noqa: BLE001 - a tracker never fails the job
            if tracker in self.trackers:
                self.trackers.remove(tracker)
                _warn(self.inner, f"{tracker.name}: stopped writing: {exc}")


def open_trackers(target: Target, reporter: Reporter) -> list[Tracker]:
    """The trackers `target` asks for that could be opened; a warning for each other."""
    params = flat_params(target.spec, target.leave_out)
    trackers: list[Tracker] = []
    if target.tracking.tensorboard:
        _open(trackers, reporter, "TensorBoard",
              lambda: TensorBoardTracker(target, params))
    if target.tracking.HasField("mlflow"):
        _open(trackers, reporter, "MLflow",
              lambda: MlflowTracker.open(target, params, reporter))
    return trackers


def _open(trackers: list, reporter: Reporter, name: str, make) -> None:
    try:
        trackers.append(make())
    except Exception as exc:  # noqa: BLE001 - a tracker never fails the job
        _warn(reporter, f"{name}: not tracking this job: {exc}")


def _warn(reporter: Reporter, text: str) -> None:
    log.warning("%s", text)
    try:
        reporter.log(text, level="warning")
    except Exception:  # noqa: BLE001 - the warning is best effort too
        log.warning("could not report the tracker warning", exc_info=True)


# --- params ------------------------------------------------------------------------------

def flat_params(spec: spec_pb2.JobSpec, leave_out: tuple[str, ...] = ()
                ) -> dict[str, str | int | float | bool]:
    """The resolved spec as "path": value pairs ("optimizer.lr": 0.01); lists and maps as
    JSON text; the tracking settings, what the server pins and `leave_out` left out."""
    doc = MessageToDict(spec, preserving_proto_field_name=True)
    out: dict = {}
    _flatten(doc, "", out)
    skip = NOT_PARAMS + tuple(leave_out)
    return {k: v for k, v in out.items()
            if not any(k == p or k.startswith(p + ".") for p in skip)}


def _flatten(value, prefix: str, out: dict) -> None:
    if isinstance(value, dict) and value:
        for key, inner in value.items():
            _flatten(inner, f"{prefix}.{key}" if prefix else key, out)
    elif isinstance(value, (list, dict)):  # a list, or a message present with no fields
        out[prefix] = json.dumps(value, sort_keys=True)
    else:
        out[prefix] = value


# --- TensorBoard -------------------------------------------------------------------------

class TensorBoardTracker:
    """Event files in `folder` (torch.utils.tensorboard's writer): each per-epoch metric at
    step = epoch, flushed every epoch so a TensorBoard pointed at the folder follows along;
    the spec as text at the start; the final metrics (`final/<name>`) and the hparams at the
    end."""
    name = "TensorBoard"

    def __init__(self, target: Target, params: dict):
        self.params = params
        self.writer = _writer(target)
        text = json.dumps(MessageToDict(target.spec, preserving_proto_field_name=True),
                          indent=2)
        self.writer.add_text("spec", "    " + text.replace("\n", "\n    "), 0)
        self.writer.flush()

    def epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        for key, value in sorted(metrics.items()):
            self.writer.add_scalar(key, value, epoch)
        self.writer.flush()

    def finish(self, status: str, metrics: Mapping[str, float], last_epoch: int) -> None:
        from torch.utils.tensorboard.summary import hparams
        finals = {FINAL_PREFIX + k: float(v) for k, v in sorted(metrics.items())}
        for key, value in finals.items():
            self.writer.add_scalar(key, value, last_epoch)
        values = {k: v for k, v in self.params.items() if isinstance(v, (int, float, str))}
        for summary in hparams(values | {"status": status}, finals):
            self.writer.file_writer.add_summary(summary)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


# --- MLflow ------------------------------------------------------------------------------

class MlflowTracker:
    """The job as one MLflow run: params at the start, per-epoch metrics (step = epoch) in
    batches, the final metrics (`final/<name>`) and the status at the end. A resumed attempt
    reopens the run it started (`<job>/tracking.json`)."""
    name = "MLflow"

    def __init__(self, rest: MlflowRest, run_id: str):
        self.rest, self.run_id = rest, run_id
        self.pending: list[tuple[str, float, int]] = []
        self.flushed_at = time.monotonic()

    @classmethod
    def open(cls, target: Target, params: dict, reporter: Reporter) -> "MlflowTracker":
        rest = target.rest()
        info = _run_of(target)
        if info is None:
            info = _new_run(rest, target)
            rest.log_params(info["mlflow_run_id"], params)
        else:
            rest.set_status(info["mlflow_run_id"], "RUNNING")
        if target.record is not None:
            target.record(info)
        reporter.log(f"MLflow: run {info['mlflow_run_id']} in experiment "
                     f"{target.experiment!r} at {target.tracking.mlflow.uri}")
        return cls(rest, info["mlflow_run_id"])

    def epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        self.pending += [(k, v, epoch) for k, v in sorted(metrics.items())]
        if time.monotonic() - self.flushed_at >= MLFLOW_FLUSH_S:
            self._flush()

    def finish(self, status: str, metrics: Mapping[str, float], last_epoch: int) -> None:
        self.pending += [(FINAL_PREFIX + k, float(v), last_epoch)
                         for k, v in sorted(metrics.items())]
        self._flush()
        self.rest.set_status(self.run_id, MLFLOW_STATUS.get(status, "FAILED"), end=True)

    def close(self) -> None:
        self._flush()

    def _flush(self) -> None:
        points, self.pending = self.pending, []
        self.flushed_at = time.monotonic()
        if points:
            self.rest.log_metrics(self.run_id, points)


def _new_run(rest: MlflowRest, target: Target) -> dict[str, str]:
    experiment_id = rest.experiment_id(target.experiment)
    run_id, artifact_uri = rest.create_run(experiment_id, target.run_name, target.tags)
    info = {"mlflow_uri": target.tracking.mlflow.uri, "mlflow_experiment_id": experiment_id,
            "mlflow_run_id": run_id}
    write_json_atomic(target.folder / STATE_FILE,
                      info | {"experiment": target.experiment, "artifact_uri": artifact_uri})
    return info


def _run_of(target: Target) -> dict[str, str] | None:
    """The run an earlier attempt of this job (or trial) started on the same server."""
    doc = _state(target.folder)
    if doc.get("mlflow_uri") != target.tracking.mlflow.uri \
            or doc.get("experiment") != target.experiment:
        return None
    return {k: doc[k] for k in ("mlflow_uri", "mlflow_experiment_id", "mlflow_run_id")}


def _state(folder: Path) -> dict:
    try:
        return json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _recorder(redis_url: str | None, job_id: str) -> Callable[[dict], None] | None:
    """Puts the run on the job's record (`Job.tracking`), where users find it."""
    if redis_url is None:
        return None

    def record(info: dict) -> None:
        from trainserve.store.jobs import JobStore
        from trainserve.store.redis import connect
        JobStore(connect(redis_url)).update(job_id, tracking=info)
    return record


def _writer(target: Target):
    from torch.utils.tensorboard import SummaryWriter
    target.tensorboard_dir.mkdir(parents=True, exist_ok=True)
    return SummaryWriter(str(target.tensorboard_dir), filename_suffix=target.events_suffix)


# --- searches ----------------------------------------------------------------------------

def search_target(ctx: JobContext) -> Target | None:
    """A search's own run: MLflow only (its trials each have a TensorBoard folder), the
    parent of its trials' runs; its final metrics are the best trial's."""
    target = job_target(ctx.job_id, ctx.job_spec(), ctx.storage_dir, ctx.tracking,
                        ctx.redis_url)
    if target is None or not target.tracking.HasField("mlflow"):
        return None
    target.tracking = spec_pb2.TrackingSpec(mlflow=target.tracking.mlflow)
    return target


def trial_target(job_root: Path, trial_root: Path, trial_id: str,
                 trial_spec: spec_pb2.JobSpec, stack: StackTracking | None) -> Target | None:
    """A search trial's run: event files in `<job>/tensorboard/<trial id>/` (TensorBoard
    shows each trial as a run of its own), an MLflow run nested under the search's, with
    the trial's spec (its sampled values applied) as params."""
    tracking = effective_tracking(trial_spec, stack)
    if tracking is None:
        return None
    parent = _state(job_root).get("mlflow_run_id")
    tags = {"trainserve.job_id": job_root.name, "trainserve.trial_id": trial_id,
            "trainserve.model_name": trial_spec.name} | ({PARENT_TAG: parent} if parent else {})
    return Target(tracking, trial_spec, trial_id, trial_root,
                  job_root / TENSORBOARD_DIR / trial_id, tags, stack or StackTracking(),
                  events_suffix=f".{trial_id}{EVENTS_SUFFIX}", leave_out=("search",))


# --- plots -------------------------------------------------------------------------------

def log_plots(target: Target, plots: Mapping[str, bytes], step: int) -> list[str]:
    """The job's plots (PNG bytes by file name) as TensorBoard images (`plots/<name>` at
    `step`) and MLflow artifacts (`plots/<file name>`); returns a warning per tracker that
    could not take them."""
    warnings = []
    if not plots:
        return warnings
    if target.tracking.tensorboard:
        try:
            _tensorboard_images(target, plots, step)
        except Exception as exc:  # noqa: BLE001 - a tracker never fails the job
            warnings.append(f"TensorBoard: could not add the plots: {exc}")
    info = _state(target.folder)
    if target.tracking.HasField("mlflow") and _run_of(target) is not None:
        try:
            rest = target.rest()
            for name, data in sorted(plots.items()):
                rest.log_artifact(info.get("artifact_uri", ""), PLOTS_TAG + name, data,
                                  "image/png")
        except Exception as exc:  # noqa: BLE001 - a tracker never fails the job
            warnings.append(f"MLflow: could not add the plots: {exc}")
    return warnings


def _tensorboard_images(target: Target, plots: Mapping[str, bytes], step: int) -> None:
    from tensorboard.compat.proto.summary_pb2 import Summary
    writer = _writer(target)
    try:
        for name, png in sorted(plots.items()):
            width, height, colorspace = png_size(png)
            image = Summary.Image(height=height, width=width, colorspace=colorspace,
                                  encoded_image_string=png)
            tag = PLOTS_TAG + Path(name).stem
            writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]),
                                           step)
    finally:
        writer.close()


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # a PNG's colour type: its channels (3: palette)


def png_size(png: bytes) -> tuple[int, int, int]:
    """(width, height, channels) from a PNG's header, without decoding it."""
    if png[:8] != PNG_MAGIC or png[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    width, height = struct.unpack(">II", png[16:24])
    return width, height, PNG_CHANNELS.get(png[25], 3)
