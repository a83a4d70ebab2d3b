"""The Python SDK's client: `trainserve.Client`, one typed method per call of the job API
(jobs, models, deployments, datasets, tokens) and of the inference endpoints (`predict`,
`infer`, `model_metadata`). The connection, TLS, tokens and retries are `client.transport`'s;
the error mapping `client.errors`'; the OIP encoding `client.inference`'s."""
from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import grpc
import numpy as np

from trainserve.client import inference
from trainserve.client.errors import DeploymentFailed, rpc_error
from trainserve.client.events import WatchEvent
from trainserve.client.frames import Curves, JobList, TrialList
from trainserve.client.inference import (INFERENCE_TOKEN_ENV, infer_request, outputs_to_numpy,
                                         rest_base)
from trainserve.client.messages import (TERMINAL_STATES, SpecLike, job_state, job_state_name,
                                        load_spec)
from trainserve.client.transport import (CONNECT_RETRY_S, TlsFiles, api_channel, backoff,
                                         call_with_retry, check_token_transport)
from trainserve.core.locations import api_address
from trainserve.core import errors
from trainserve.core.modelrefs import ModelRef, parse_ref
from trainserve.core.tracking import EVENTS_PREFIX
from trainserve.core.pb import (auth_pb2, auth_pb2_grpc, dataset_pb2, dataset_pb2_grpc,
                                deployment_pb2, deployment_pb2_grpc, job_pb2, job_pb2_grpc,
                                model_pb2, model_pb2_grpc)

T = TypeVar("T")


LabelsLike = Mapping[str, str] | Iterable[str] | str | None
# Where inference goes when neither the caller nor the job API says (Serve's default port).
DEFAULT_INFERENCE_HTTP = "127.0.0.1:8000"


def label_selectors(labels: LabelsLike) -> list[str]:
    """ListJobsRequest.labels of `labels`: a mapping's items as "key=value", one "key=value"
    string, or such strings as they are (the API checks them)."""
    if labels is None:
        return []
    if isinstance(labels, str):
        return [labels]
    if isinstance(labels, Mapping):
        return [f"{key}={value}" for key, value in labels.items()]
    return list(labels)


def model_ref(name: str, version: int = 0, alias: str = "") -> ModelRef:
    """The version a call names: `name` with `version` (0: the latest) or `alias`, or `name`
    itself a reference, "digits:3" or "digits@production" (model names hold neither ':' nor
    '@')."""
    if "@" in name or ":" in name:
        if version or alias:
            raise errors.InvalidArgument(f"{name!r} names its version already: leave version "
                                         "and alias out", field="version")
        return parse_ref(name, "name")
    return ModelRef(name, version, alias)


def curves_data(curves: job_pb2.JobCurves) -> dict[str, Any]:
    """The plain Python form of a JobCurves (what `Client.curves` returns)."""
    def pairs(by_name) -> dict[str, list[tuple[int, float]]]:
        return {name: list(zip(c.epochs, c.values)) for name, c in sorted(by_name.items())}
    return {"job_id": curves.job_id, "metrics": pairs(curves.metrics),
            "trials": {tid: pairs(t.metrics) for tid, t in sorted(curves.trials.items())},
            "best_trial": curves.best_trial, "stride": curves.stride or 1}


class Client:
    """A connection to the trainserve job API.

    `address` defaults to `$TRAINSERVE_API`, then the API of the local stack recorded by
    `trainserve up`, then 127.0.0.1:50051. `timeout` bounds each unary call (seconds).
    Calls that fail with UNAVAILABLE (the API restarting, Redis briefly gone) are retried
    with backoff for up to `retry_for` seconds; `submit` retries with the same request id,
    so a retried submission never creates a second job. Until the API has answered once,
    for at most `connect_for` seconds (default 1.5 s): an address where nothing listens fails
    quickly (a script that starts the API and then waits for it passes a longer one).
    `inference_token` (default `$TRAINSERVE_INFERENCE_TOKEN`) is sent as a bearer token to
    the inference endpoints (`predict`, `infer`, `model_metadata`) when set.
    `token` (default `$TRAINSERVE_TOKEN`, else the admin token of the local stack when
    `address` is its API) is the job API's bearer token. `tls` (default from
    `$TRAINSERVE_TLS_CA`, `$TRAINSERVE_TLS_CERT`, `$TRAINSERVE_TLS_KEY`) makes the channel TLS:
    a CA bundle to trust, and a client certificate and key for mutual TLS. Without TLS the
    token goes to loopback addresses only, unless `insecure=True` (or
    `$TRAINSERVE_ALLOW_INSECURE_TOKEN=1`).
    """

    def __init__(self, address: str | None = None, timeout: float = 30.0,
                 retry_for: float = 15.0, channel: grpc.Channel | None = None,
                 inference_token: str | None = None, token: str | None = None,
                 tls: TlsFiles | None = None, insecure: bool | None = None,
                 connect_for: float = CONNECT_RETRY_S):
        self.address = api_address(address)
        self.inference_token = (inference_token if inference_token is not None
                                else os.environ.get(INFERENCE_TOKEN_ENV) or None)
        self.timeout = timeout
        self.retry_for = retry_for
        self.connect_for = connect_for
        self._insecure = insecure
        self._answered = False  # whether the API has answered a call of this client yet
        self._rest_bases: dict[str, str] = {}  # endpoint -> its REST base, as looked up
        self._channel = channel or api_channel(self.address, token, tls, insecure)
        self._jobs = job_pb2_grpc.JobServiceStub(self._channel)
        self._models = model_pb2_grpc.ModelServiceStub(self._channel)
        self._deployments = deployment_pb2_grpc.DeploymentServiceStub(self._channel)
        self._datasets = dataset_pb2_grpc.DatasetServiceStub(self._channel)
        self._auth = auth_pb2_grpc.AuthServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def whoami(self) -> "auth_pb2.Principal":
        """The user and role the API sees for this client's token."""
        return self.call_auth("WhoAmI", auth_pb2.WhoAmIRequest())

    def call_auth(self, method: str, request):
        """One `AuthService` call (`WhoAmI`, `CreateToken`, `ListTokens`, `RevokeToken`)."""
        return self._call(getattr(self._auth, method), request, retry=method != "CreateToken")

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- jobs -----------------------------------------------------------------------------------
    def submit(self, spec: SpecLike, request_id: str | None = None) -> job_pb2.Job:
        """Submit a job: `spec` is a JobSpec, a dict, or a path to a YAML/JSON spec file.

        `request_id` is the idempotency key (generated if not given): submitting again with
        the same id returns the job created the first time."""
        request = job_pb2.SubmitJobRequest(spec=load_spec(spec),
                                           request_id=request_id or uuid.uuid4().hex)
        return self._call(self._jobs.SubmitJob, request)

    def get_job(self, job_id: str) -> job_pb2.Job:
        return self._call(self._jobs.GetJob, job_pb2.GetJobRequest(job_id=job_id))

    def list_jobs(self, state: str | int | None = None, page_size: int = 50,
                  page_token: str = "", labels: LabelsLike = None) -> job_pb2.ListJobsResponse:
        """One page of jobs, newest first; `state` is e.g. "running" or JOB_STATE_RUNNING;
        `labels` ({"course": "week3"}, or "key=value" strings) keeps only the jobs whose
        spec.labels hold every one of them."""
        request = job_pb2.ListJobsRequest(state=job_state(state), page_size=page_size,
                                          page_token=page_token, labels=label_selectors(labels))
        return self._call(self._jobs.ListJobs, request)

    def iter_jobs(self, state: str | int | None = None, page_size: int = 100,
                  labels: LabelsLike = None) -> Iterator[job_pb2.Job]:
        """Every job (newest first; `labels` as in `list_jobs`), fetching pages as needed."""
        token = ""
        while True:
            page = self.list_jobs(state, page_size, token, labels)
            yield from page.jobs
            token = page.next_page_token
            if not token:
                return

    def jobs(self, state: str | int | None = None, labels: LabelsLike = None,
             limit: int | None = None) -> JobList:
        """Every job (newest first), or the first `limit`, as a `JobList`: a list of `Job`
        messages with `to_pandas()` (one row per job, a column per final metric)."""
        found = JobList()
        for job in self.iter_jobs(state, page_size=min(limit or 1000, 1000), labels=labels):
            if limit is not None and len(found) >= limit:
                break
            found.append(job)
        return found

    def trials(self, job_id: str) -> TrialList:
        """A search's trials as a `TrialList` (`to_pandas()`: a row per trial, a column per
        sampled value and metric)."""
        return TrialList(self.get_job(job_id).trials)

    def cancel(self, job_id: str) -> job_pb2.Job:
        return self._call(self._jobs.CancelJob, job_pb2.CancelJobRequest(job_id=job_id))

    def delete_job(self, job_id: str) -> job_pb2.Job:
        """Remove a finished job and everything kept for it (record, events, curves, worker
        logs, trials, files); returns the job as it was. `FailedPrecondition` while it is
        queued or running (cancel it first) or while the model version it registered is still
        there (the message names it: `delete_model_version` first); `NotFound` for an unknown
        job, another user's, or one already deleted. Not retried."""
        return self._call(self._jobs.DeleteJob, job_pb2.DeleteJobRequest(job_id=job_id),
                          retry=False)

    def curves(self, job_id: str) -> Curves:
        """Every metric the job reported, epoch by epoch, as plain Python data:
        {"job_id", "metrics": {name: [(epoch, value), ...]}, "trials": {trial id: {name:
        [(epoch, value), ...]}} (a search's; its own "metrics" are then empty), "best_trial",
        "stride"} — stride 1 when every epoch is there, k when a very long job's curves keep
        every k-th point (and the last). A `Curves` dict: `.to_pandas()` gives a row per epoch
        and a column per metric, `.plot()` a matplotlib Figure (a search's: its best trial's)."""
        return Curves(curves_data(self.curves_message(job_id)))

    def curves_message(self, job_id: str) -> job_pb2.JobCurves:
        """`curves` as the API answers it (`JobCurves`)."""
        return self._call(self._jobs.GetJobCurves, job_pb2.GetJobCurvesRequest(job_id=job_id))

    def compare(self, job_ids: Sequence[str]) -> job_pb2.CompareJobsResponse:
        """2 to 20 jobs side by side: per job its final metrics and each per-epoch metric's
        best value and epoch (`jobs`, in the order given), and the spec fields whose values
        differ (`differences`: a path such as "optimizer.lr" and one JSON value per job, ""
        where its spec has no such field). A search among them stands for its best trial;
        "SEARCH_ID/TRIAL_ID" names one trial; one search's id alone compares its trials (each
        row's `trial_id` and `trial_state` say which)."""
        return self._call(self._jobs.CompareJobs,
                          job_pb2.CompareJobsRequest(job_ids=list(job_ids)))

    def watch(self, job_id: str, after_event_id: str = "",
              reconnect_for: float | None = None) -> Iterator[WatchEvent]:
        """The job's events: its history first, then live ones; ends once the job is terminal.
        Each is a `WatchEvent`: `print(event)` shows one line ("epoch 3/20  train_loss 0.31
        val_loss 0.35 ..."), `event.kind`, `event.metrics`, `event.state_name` are plain
        values, `event.raw` the `JobEvent` message.

        If the connection drops (the API restarts), the watch resumes after the last event
        it yielded, for up to `reconnect_for` seconds (default `retry_for`) of failed
        reconnects."""
        last = after_event_id
        reconnect_for = self._retry_window() if reconnect_for is None else reconnect_for
        failing_since: float | None = None
        attempt = 0
        while True:
            stream = self._jobs.WatchJob(job_pb2.WatchJobRequest(job_id=job_id,
                                                                 after_event_id=last))
            try:
                for event in stream:
                    failing_since, attempt, self._answered = None, 0, True
                    last = event.event_id or last
                    yield WatchEvent(event)
                return
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise rpc_error(exc, self.address) from None
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > reconnect_for:
                    raise rpc_error(exc, self.address) from None
                attempt += 1
                time.sleep(backoff(attempt))
            finally:
                stream.cancel()

    def wait(self, job_id: str, timeout: float | None = None,
             on_event: Callable[[WatchEvent], None] | None = None) -> job_pb2.Job:
        """Block until the job is terminal and return it; `TimeoutError` after `timeout` s.

        `on_event` sees every event on the way, as `watch` yields them (the CLI's progress
        bar uses it)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last = ""
        while True:
            for event in self._watch_until(job_id, last, deadline):
                last = event.event_id or last
                if on_event is not None:
                    on_event(event)
            job = self.get_job(job_id)
            if job.state in TERMINAL_STATES:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {job_state_name(job.state)} after "
                                   f"{timeout:g}s")
            time.sleep(0.2)  # the stream ended early (server restart): do not spin

    def _watch_until(self, job_id: str, last: str, deadline: float | None
                     ) -> Iterator[WatchEvent]:
        """Events until the job is terminal or `deadline` passes (then the stream's gRPC
        deadline ends it with DEADLINE_EXCEEDED and `wait` re-checks the job)."""
        if deadline is None:
            yield from self.watch(job_id, last)
            return
        remaining = max(0.0, deadline - time.monotonic())
        stream = self._jobs.WatchJob(job_pb2.WatchJobRequest(job_id=job_id, after_event_id=last),
                                     timeout=remaining)
        try:
            yield from (WatchEvent(event) for event in stream)
        except grpc.RpcError as exc:
            if exc.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
                raise rpc_error(exc, self.address) from None
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                time.sleep(backoff(1))
        finally:
            stream.cancel()

    def logs(self, job_id: str, follow: bool = False,
             after_id: str = "") -> Iterator[job_pb2.JobLogLine]:
        """The job's worker output (every rank's lines, oldest kept first); with `follow`,
        live lines until the job is terminal. Not retried: a stream."""
        stream = self._jobs.StreamLogs(job_pb2.StreamLogsRequest(
            job_id=job_id, follow=follow, after_id=after_id))
        try:
            yield from stream
        except grpc.RpcError as exc:
            raise rpc_error(exc, self.address) from None
        finally:
            stream.cancel()

    def list_artifacts(self, job_id: str) -> list[job_pb2.ArtifactInfo]:
        """The job's plots and files, rendered by the server on demand."""
        request = job_pb2.ListArtifactsRequest(job_id=job_id)
        return list(self._call(self._jobs.ListArtifacts, request).artifacts)

    def download_artifact(self, job_id: str, name: str, directory: str | Path = ".") -> Path:
        """Write the job's artifact `name` (from `list_artifacts`) to `directory`/`name`."""
        request = job_pb2.GetArtifactRequest(job_id=job_id, name=name)
        try:
            data = b"".join(c.data for c in self._jobs.GetArtifact(
                request, timeout=max(self.timeout, 120.0)))
        except grpc.RpcError as exc:
            raise rpc_error(exc, self.address) from None
        path = Path(directory) / Path(name).name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def download_tensorboard(self, job_id: str, directory: str | Path = "runs") -> list[Path]:
        """The job's TensorBoard event files (`spec.tracking.tensorboard`, docs/tracking.md)
        written under `directory`/<job id>/, a search's trials each in a folder of its own
        named after the trial, ready for `tensorboard --logdir <directory>`; `job_id` may be
        any unique start of the id. `FailedPrecondition` when the job wrote none."""
        job = self.get_job(job_id)
        job_id, trials = job.id, {t.id for t in job.trials}
        names = [a.name for a in self.list_artifacts(job_id)
                 if a.name.startswith(EVENTS_PREFIX)]
        if not names:
            raise errors.FailedPrecondition(
                f"job {job_id} wrote no TensorBoard event files: its spec needs "
                "tracking: {tensorboard: true} (or the stack's --tracking-tensorboard)")
        root = Path(directory) / job_id
        out = []
        for name in names:
            trial = name.rsplit(".", 2)[-2]  # ...<trial id>.tfevents for a search's trials
            out.append(self.download_artifact(job_id, name,
                                              root / trial if trial in trials else root))
        return out

    # -- models ---------------------------------------------------------------------------------
    def list_models(self, name: str | None = None) -> list[model_pb2.ModelVersion]:
        """Every registered model version, or those of model `name`."""
        models, token = [], ""
        while True:
            page = self._call(self._models.ListModels, model_pb2.ListModelsRequest(
                name=name or "", page_token=token))
            models.extend(page.models)
            token = page.next_page_token
            if not token:
                return models

    def get_model(self, name: str, version: int = 0, alias: str = "") -> model_pb2.ModelVersion:
        """One model version: `name` with `version` (0: the latest) or `alias` (the version it
        points at now); `name` may also be a reference, "digits:3" or "digits@production".
        The answer carries the version's `aliases` and `tags`."""
        ref = model_ref(name, version, alias)
        return self._call(self._models.GetModel, model_pb2.GetModelRequest(
            name=ref.name, version=ref.version, alias=ref.alias))

    def set_model_alias(self, name: str, alias: str, version: int = 0
                        ) -> model_pb2.ModelVersion:
        """Point `alias` (e.g. "production") of model `name` at `version` (0: the latest now;
        `name` may be "digits:3" or "digits@staging" instead), moving it off the version it
        named; returns the version it now names. An alias is a lowercase letter then
        lowercase letters, digits, '-' or '_' (at most 63), never "latest"; a model has at
        most 32. Only the model's owner (or an admin) may; another user's model is
        `NotFound`."""
        ref = model_ref(name, version)
        if ref.alias:  # "digits@staging": the version that alias names now
            ref = ModelRef(ref.name, self.get_model(ref.name, alias=ref.alias).version)
        return self._call(self._models.SetModelAlias, model_pb2.SetModelAliasRequest(
            name=ref.name, alias=alias, version=ref.version))

    def delete_model_alias(self, name: str, alias: str = "") -> model_pb2.ModelVersion:
        """Remove `alias` of model `name` (or `name` as "digits@production"); returns the
        version it named. `NotFound` if the model has no such alias. Not retried."""
        ref = model_ref(name, 0, alias)
        if not ref.alias:
            raise errors.InvalidArgument("name the alias to remove", field="alias")
        return self._call(self._models.DeleteModelAlias, model_pb2.DeleteModelAliasRequest(
            name=ref.name, alias=ref.alias), retry=False)

    def update_model_tags(self, name: str, version: int = 0,
                          set: Mapping[str, str] | None = None, remove: Iterable[str] = (),
                          alias: str = "") -> model_pb2.ModelVersion:
        """Set the tags `set` ({"reviewed": "yes"}) and remove the keys `remove` of one
        version (`name`/`version`/`alias` as in `get_model`); returns the version with its
        tags. At most 32 tags per version, keys of letters, digits and . _ / - (at most 63),
        values of at most 256 characters."""
        ref = model_ref(name, version, alias)
        return self._call(self._models.UpdateModelTags, model_pb2.UpdateModelTagsRequest(
            name=ref.name, version=ref.version, alias=ref.alias, set=dict(set or {}),
            remove=list(remove)))

    def delete_model_version(self, name: str, version: int = 0) -> model_pb2.ModelVersion:
        """Remove one version (`version`, or `name` as "digits:3"; a number is required) with
        its aliases, tags and files; returns it as it was. `FailedPrecondition` while an
        endpoint serves it (as its version or a rollout's canary; the message names the
        endpoint) or a queued or running job starts from its weights. Not retried."""
        ref = model_ref(name, version)
        if ref.alias or not ref.version:
            raise errors.InvalidArgument("give the version to delete by its number, e.g. "
                                         "digits:3", field="version")
        return self._call(self._models.DeleteModelVersion, model_pb2.DeleteModelVersionRequest(
            name=ref.name, version=ref.version), retry=False)

    def export_model(self, name: str, version: int = 0, format: str = "onnx",
                     alias: str = "") -> bytes:
        """A model version (0 = the latest; or `alias`, or `name` as "digits@production") as
        a TorchScript (`format="torchscript"`) or ONNX file's bytes. The exported graph takes
        the endpoint's raw inputs (the preprocessing is inside) and returns its outputs under
        the same names. Not retried: a stream."""
        return self.export_model_file(name, version, format, alias)[1]

    def export_model_file(self, name: str, version: int = 0, format: str = "onnx",
                          alias: str = "") -> tuple[str, bytes]:
        """`export_model`, with the server's file name for it (`<name>-v<version>.onnx`)."""
        ref = model_ref(name, version, alias)
        request = model_pb2.ExportModelRequest(name=ref.name, version=ref.version,
                                               format=format, alias=ref.alias)
        filename, parts = "", []
        try:
            for chunk in self._models.ExportModel(request, timeout=max(self.timeout, 300.0)):
                filename = filename or chunk.filename
                parts.append(chunk.data)
        except grpc.RpcError as exc:
            raise rpc_error(exc, self.address) from None
        return filename, b"".join(parts)

    # -- deployments ----------------------------------------------------------------------------
    def deploy(self, model: str, version: int = 0, name: str | None = None, wait: bool = True,
               timeout: float = 300.0, max_batch_size: int = 0,
               batch_wait_ms: float | None = None, alias: str = ""
               ) -> deployment_pb2.Deployment:
        """Serve `model` (version 0 = latest; or `alias`, the version it names now; or `model`
        as "digits:3" or "digits@production") at endpoint `name` (default: the model's name).
        The endpoint keeps that version when the alias moves later.

        `max_batch_size` > 1 turns on dynamic batching: concurrent requests arriving within
        `batch_wait_ms` (default 2) run as one forward pass of up to that many instances.
        With `wait`, poll until the endpoint is READY; raise `DeploymentFailed` if it fails
        and `TimeoutError` after `timeout` seconds."""
        options = deployment_pb2.ServingOptions(max_batch_size=max_batch_size)
        if batch_wait_ms is not None:
            options.batch_wait_ms = batch_wait_ms
        ref = model_ref(model, version, alias)
        dep = self._call(self._deployments.Deploy, deployment_pb2.DeployRequest(
            name=name or "", model_name=ref.name, model_version=ref.version, options=options,
            model_alias=ref.alias))
        if not wait:
            return dep
        return self.wait_deployment(dep.name, timeout)

    def wait_deployment(self, name: str, timeout: float = 300.0,
                        canary: bool = False) -> deployment_pb2.Deployment:
        """Poll until endpoint `name` (with `canary`: the version it is rolling out) is READY;
        `DeploymentFailed` if it fails, `TimeoutError` after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        delay = 0.2
        while True:
            dep = self.get_deployment(name)
            state = dep.canary_state if canary else dep.state
            if state == deployment_pb2.DEPLOYMENT_STATE_FAILED:
                raise DeploymentFailed(dep)
            if state == deployment_pb2.DEPLOYMENT_STATE_READY:
                return dep
            if time.monotonic() > deadline:
                what = "its new version" if canary else "it"
                raise TimeoutError(f"deployment {name!r}: {what} is not ready after "
                                   f"{timeout:g}s ({dep.message or 'pending'})")
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)

    def undeploy(self, name: str) -> deployment_pb2.Deployment:
        # Not retried: if the first attempt went through, a retry would answer NOT_FOUND.
        return self._call(self._deployments.Undeploy,
                          deployment_pb2.UndeployRequest(name=name), retry=False)

    def list_deployments(self) -> list[deployment_pb2.Deployment]:
        return list(self._call(self._deployments.ListDeployments,
                               deployment_pb2.ListDeploymentsRequest()).deployments)

    def get_deployment(self, name: str) -> deployment_pb2.Deployment:
        return self._call(self._deployments.GetDeployment,
                          deployment_pb2.GetDeploymentRequest(name=name))

    def rollout(self, name: str, version: int = 0, percent: int | None = None,
                model: str = "", wait: bool = False,
                timeout: float = 300.0, alias: str = "") -> deployment_pb2.Deployment:
        """Send `percent` (default 10) of endpoint `name`'s requests to another version of its
        model (0 = latest; or `alias`, the version it names now) once that version is loaded;
        again with another percent re-weights the rollout. With `wait`, poll until the new
        version is loaded (as `wait_deployment`)."""
        request = deployment_pb2.RolloutRequest(name=name, model_name=model,
                                                model_version=version, model_alias=alias)
        if percent is not None:
            request.canary_percent = percent
        dep = self._call(self._deployments.Rollout, request)
        return self.wait_deployment(name, timeout, canary=True) if wait else dep

    def promote(self, name: str) -> deployment_pb2.Deployment:
        """Make the canary of endpoint `name` its version."""
        return self._call(self._deployments.Promote,
                          deployment_pb2.FinishRolloutRequest(name=name))

    def rollback(self, name: str) -> deployment_pb2.Deployment:
        """Drop the canary of endpoint `name`."""
        return self._call(self._deployments.Rollback,
                          deployment_pb2.FinishRolloutRequest(name=name))

    # -- datasets -------------------------------------------------------------------------------
    def upload_dataset(self, path: str | Path, name: str, fmt: str | None = None,
                       description: str = "", chunk_size: int = 1 << 20) -> dataset_pb2.Dataset:
        """Upload a CSV or NPZ file (format from the extension unless `fmt` is given); jobs
        then name it in `dataset.name`. Not retried: an upload is a stream of its own."""
        path = Path(path)
        fmt = fmt or path.suffix.lstrip(".").lower()
        header = dataset_pb2.DatasetUploadHeader(name=name, format=fmt, description=description)

        def parts():
            yield dataset_pb2.UploadDatasetRequest(header=header)
            with open(path, "rb") as f:
                while chunk := f.read(chunk_size):
                    yield dataset_pb2.UploadDatasetRequest(chunk=chunk)
        if not path.is_file():
            raise errors.InvalidArgument(f"no such file: {path}", field="path")
        return self._call(self._datasets.UploadDataset, parts(), retry=False)

    def get_dataset(self, name: str) -> dataset_pb2.Dataset:
        return self._call(self._datasets.GetDataset, dataset_pb2.GetDatasetRequest(name=name))

    def list_datasets(self) -> list[dataset_pb2.Dataset]:
        return list(self._call(self._datasets.ListDatasets,
                               dataset_pb2.ListDatasetsRequest()).datasets)

    def delete_dataset(self, name: str) -> dataset_pb2.Dataset:
        return self._call(self._datasets.DeleteDataset,
                          dataset_pb2.DeleteDatasetRequest(name=name), retry=False)

    # -- inference (OIP v2 REST) ------------------------------------------------------------
    def predict(self, name: str, instances: Any, http: str | None = None, *,
                input_name: str = "input", datatype: str = "FP32") -> dict[str, np.ndarray]:
        """Run endpoint `name` on a batch of `instances` (array-like, first axis = batch).

        Sends `POST /v2/models/{name}/infer` to `http` (host:port or URL; default: the
        endpoint's own REST address, asked of the job API, else 127.0.0.1:8000) and returns
        the outputs by name as numpy arrays, e.g. {"probabilities": (N, C), "label": (N,)}."""
        request = infer_request(instances, input_name, datatype)
        return outputs_to_numpy(self.infer(name, request, http))

    def infer(self, name: str, request: Mapping[str, Any], http: str | None = None
              ) -> dict[str, Any]:
        """Send a ready-made OIP v2 inference request (a dict) and return the JSON response."""
        base = self._rest_base(name, http)
        return inference.http_json("POST", inference.model_url(base, name, "infer"), request,
                                   self.timeout, self._inference_headers(base))

    def model_metadata(self, name: str, http: str | None = None) -> dict[str, Any]:
        """`GET /v2/models/{name}`: the endpoint's inputs and outputs (name, datatype, shape)."""
        base = self._rest_base(name, http)
        return inference.http_json("GET", inference.model_url(base, name), None, self.timeout,
                                   self._inference_headers(base))

    def _rest_base(self, name: str, http: str | None) -> str:
        """http[s]://host:port of `http`, else of endpoint `name`'s REST address as the job
        API knows it, else of DEFAULT_INFERENCE_HTTP (a caller holding only an inference
        token may not ask the job API). Looked up once per endpoint and client."""
        if http:
            return rest_base(http)
        if name not in self._rest_bases:
            try:
                found = self.get_deployment(name).rest_url
            except errors.TrainserveError:
                found = DEFAULT_INFERENCE_HTTP
            self._rest_bases[name] = rest_base(found)
        return self._rest_bases[name]

    def _inference_headers(self, base: str) -> dict[str, str]:
        """The inference token's header for requests to `base` (http[s]://host:port)."""
        if not self.inference_token:
            return {}
        scheme, _, netloc = base.partition("://")
        check_token_transport("inference token", netloc, scheme == "https", self._insecure)
        return {"Authorization": f"Bearer {self.inference_token}"}

    # -- plumbing -------------------------------------------------------------------------------
    def _call(self, method: Callable[..., T], request, retry: bool = True) -> T:
        """One unary call; UNAVAILABLE is retried with backoff for `retry_for` seconds,
        while the API has never answered and cannot be connected to for `connect_for`."""
        connect_for = None if self._answered else self.connect_for
        try:
            reply = call_with_retry(method, request, timeout=self.timeout,
                                    retry_for=self.retry_for, address=self.address,
                                    retry=retry, connect_for=connect_for)
        except errors.Unavailable:
            raise
        except errors.TrainserveError:
            self._answered = True  # refused, but by the API
            raise
        self._answered = True
        return reply

    def _retry_window(self) -> float:
        """How long a watch reconnects: `retry_for` once the API has answered this client
        (it may be restarting); before that at most `connect_for`, so that an address
        where nothing listens fails within about 2 s instead of `retry_for`."""
        return self.retry_for if self._answered else min(self.retry_for, self.connect_for)

    # -- evaluation (external validation, docs/evaluation.md) -----------------------------------
    def evaluate(self, model: str, dataset: str, *, wait: bool = False,
                 timeout: float | None = None, description: str = "",
                 labels: Mapping[str, str] | None = None,
                 request_id: str | None = None) -> job_pb2.Job:
        """Evaluate a registered model version on a dataset, as a job: `model` is NAME (the
        latest), NAME:VERSION or NAME@ALIAS; `dataset` an uploaded (or built-in) dataset with
        the model's signature. The job's metrics are the training job's final ones (`test_*`)
        on every sample of `dataset`, its plots the same (confusion matrix, ROC, reliability).
        Returns the job as submitted, or with `wait`, as it ended."""
        from trainserve.core.pb import spec_pb2
        spec = spec_pb2.JobSpec(evaluate=spec_pb2.EvaluateSpec(model=model, dataset=dataset),
                                description=description, labels=dict(labels or {}))
        job = self.submit(spec, request_id)
        return self.wait(job.id, timeout) if wait else job

    def evaluations(self, model: str, version: int = 0) -> list[job_pb2.Job]:
        """The caller's evaluation jobs of a model version (`model` as `get_model` takes it),
        newest first: those labelled `evaluates=NAME:VERSION`."""
        mv = self.get_model(model, version)
        return list(self.iter_jobs(labels={"evaluates": f"{mv.name}:{mv.version}"}))
