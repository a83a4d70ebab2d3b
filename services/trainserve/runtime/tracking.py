"""Copies of a job's params and metrics in the trackers users already keep (`spec.tracking`,
docs/tracking.md): TensorBoard event files in `<job>/tensorboard/` and a run on an MLflow
tracking server.

`tracked(ctx, reporter)` wraps the worker's reporter (rank 0's): every epoch's metrics go to
the trackers as they are reported, the final metrics and the outcome when the training
returns (`TrackingReporter.finished`). A tracker is opt-in and never fails the job: one that
cannot be opened or written is dropped, with one warning in the job's events and logs.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Iterator, Mapping, Protocol

from google.protobuf.json_format import MessageToDict

from trainserve.core.pb import spec_pb2
from trainserve.runtime.context import JobContext
from trainserve.runtime.mlflow_rest import MlflowRest
from trainserve.training.reporting import Reporter
from trainserve.training.results import TrainResult, write_json_atomic

log = logging.getLogger(__name__)

TENSORBOARD_DIR = "tensorboard"
EVENTS_SUFFIX = ".tfevents"  # the event files' names end so (artifacts are listed by suffix)
STATE_FILE = "tracking.json"  # the MLflow run of the job, reused by a resumed attempt
FINAL_PREFIX = "final/"
MLFLOW_FLUSH_S = 1.0  # per-epoch metrics reach MLflow in batches at most this often
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


@contextlib.contextmanager
def tracked(ctx: JobContext, reporter: Reporter, enabled: bool = True
            ) -> Iterator[Reporter]:
    """`reporter`, wrapped so that the trackers `ctx`'s spec asks for see the job (only when
    `enabled`: rank 0). Call `finished(result)` on it with the training's result; a block
    left without (the training raised) ends the trackers' run as failed."""
    spec = ctx.job_spec()
    if not enabled or not spec.HasField("tracking"):
        yield _Untracked(reporter)
        return
    wrapped = TrackingReporter(reporter, open_trackers(ctx, spec, reporter))
    try:
        yield wrapped
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


def open_trackers(ctx: JobContext, spec: spec_pb2.JobSpec, reporter: Reporter
                  ) -> list[Tracker]:
    """The trackers `spec.tracking` asks for that could be opened; a warning for each other."""
    params = flat_params(spec)
    trackers: list[Tracker] = []
    if spec.tracking.tensorboard:
        _open(trackers, reporter, "TensorBoard",
              lambda: TensorBoardTracker(ctx.paths.root / TENSORBOARD_DIR, spec, params))
    if spec.tracking.HasField("mlflow"):
        _open(trackers, reporter, "MLflow",
              lambda: MlflowTracker.open(ctx, spec, params, reporter))
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

def flat_params(spec: spec_pb2.JobSpec) -> dict[str, str | int | float | bool]:
    """The resolved spec as "path": value pairs ("optimizer.lr": 0.01); lists and maps as
    JSON text; the tracking settings and what the server pins left out."""
    doc = MessageToDict(spec, preserving_proto_field_name=True)
    out: dict = {}
    _flatten(doc, "", out)
    return {k: v for k, v in out.items()
            if not any(k == p or k.startswith(p + ".") for p in NOT_PARAMS)}


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

    def __init__(self, folder: Path, spec: spec_pb2.JobSpec, params: dict):
        from torch.utils.tensorboard import SummaryWriter
        folder.mkdir(parents=True, exist_ok=True)
        self.params = params
        self.writer = SummaryWriter(str(folder), filename_suffix=EVENTS_SUFFIX)
        text = json.dumps(MessageToDict(spec, preserving_proto_field_name=True), indent=2)
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
    def open(cls, ctx: JobContext, spec: spec_pb2.JobSpec, params: dict,
             reporter: Reporter) -> "MlflowTracker":
        uri = spec.tracking.mlflow.uri
        rest = MlflowRest(uri)
        experiment = spec.tracking.mlflow.experiment or spec.name or "trainserve"
        info = _run_of(ctx, uri, experiment)
        if info is None:
            info = _new_run(rest, ctx, spec, uri, experiment)
            rest.log_params(info["mlflow_run_id"], params)
        else:
            rest.set_status(info["mlflow_run_id"], "RUNNING")
        _record(ctx, info)
        reporter.log(f"MLflow: run {info['mlflow_run_id']} in experiment {experiment!r} "
                     f"at {uri}")
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


def _new_run(rest: MlflowRest, ctx: JobContext, spec: spec_pb2.JobSpec, uri: str,
             experiment: str) -> dict[str, str]:
    experiment_id = rest.experiment_id(experiment)
    tags = {"trainserve.job_id": ctx.job_id, "trainserve.model_name": spec.name}
    run_id = rest.create_run(experiment_id, ctx.job_id, tags)
    info = {"mlflow_uri": uri, "mlflow_experiment_id": experiment_id,
            "mlflow_run_id": run_id}
    write_json_atomic(ctx.paths.root / STATE_FILE, info | {"experiment": experiment})
    return info


def _run_of(ctx: JobContext, uri: str, experiment: str) -> dict[str, str] | None:
    """The run an earlier attempt of this job started on the same server, if any."""
    try:
        doc = json.loads((ctx.paths.root / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if doc.get("mlflow_uri") != uri or doc.get("experiment") != experiment:
        return None
    return {k: doc[k] for k in ("mlflow_uri", "mlflow_experiment_id", "mlflow_run_id")}


def _record(ctx: JobContext, info: dict[str, str]) -> None:
    """Put the run on the job's record (`Job.tracking`), where users find it."""
    if ctx.redis_url is None:
        return
    from trainserve.store.jobs import JobStore
    from trainserve.store.redis import connect
    JobStore(connect(ctx.redis_url)).update(ctx.job_id, tracking=info)

