"""The Python SDK: `trainserve.Client` over the job API (gRPC) and the inference endpoints
(Open Inference Protocol v2, REST)::

    from trainserve import Client

    with Client() as ts:                              # $TRAINSERVE_API or 127.0.0.1:50051
        job = ts.submit("examples/xor_mlp.yaml")
        job = ts.wait(job.id)
        ts.deploy(job.model_name, name="xor")
        ts.predict("xor", [[0, 1], [1, 1]])           # {"probabilities": ..., "label": ...}

Every error the server reports is raised as the matching `trainserve.core.errors` exception
(`InvalidArgument` with its `field`, `NotFound`, ...) carrying the server's message.
"""
from __future__ import annotations

import collections
import ipaddress
import json
import os
import random
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TypeVar

import grpc
import numpy as np
from google.protobuf import json_format

from trainserve.core import errors
from trainserve.core.oip import numpy_dtype
from trainserve.config import LOOPBACK, api_address, api_token
from trainserve.core.pb import (auth_pb2, auth_pb2_grpc, dataset_pb2, dataset_pb2_grpc, deployment_pb2, deployment_pb2_grpc,
                           job_pb2, job_pb2_grpc, model_pb2, model_pb2_grpc, spec_pb2)

T = TypeVar("T")
TERMINAL_STATES = frozenset({job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED,
                             job_pb2.JOB_STATE_CANCELLED})
DEPLOYMENT_DONE = frozenset({deployment_pb2.DEPLOYMENT_STATE_READY,
                             deployment_pb2.DEPLOYMENT_STATE_FAILED})
SpecLike = spec_pb2.JobSpec | Mapping[str, Any] | str | Path
# The inference bearer token (serve.auth.TOKEN_ENV; not imported: the SDK imports no server
# module).
INFERENCE_TOKEN_ENV = "TRAINSERVE_INFERENCE_TOKEN"
# Set to 1 to let the SDK and the CLI send the job API token without TLS to another machine.
ALLOW_INSECURE_TOKEN_ENV = "TRAINSERVE_ALLOW_INSECURE_TOKEN"


class NotSupported(errors.TrainserveError):
    """The API does not offer the call (UNIMPLEMENTED): a server older than this client."""


_ERRORS: dict[grpc.StatusCode, type[errors.TrainserveError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.ABORTED: errors.TrainingError,
    grpc.StatusCode.CANCELLED: errors.Cancelled,
    grpc.StatusCode.UNIMPLEMENTED: NotSupported,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
}
_HTTP_ERRORS: dict[int, type[errors.TrainserveError]] = {
    400: errors.InvalidArgument, 401: errors.Unauthenticated, 404: errors.NotFound,
    409: errors.FailedPrecondition,
    429: errors.ResourceExhausted, 503: errors.Unavailable,
}
# "spec.training.epochs: must be >= 1" -> field path, reason (errors.InvalidArgument's format).
_FIELD_MESSAGE = re.compile(r"^([A-Za-z_][\w]*(?:\[\d+\])?(?:\.[A-Za-z_]\w*(?:\[\d+\])?)*): (.+)$",
                            re.S)


class DeploymentFailed(errors.TrainserveError):
    """`Client.deploy(wait=True)` saw the deployment reach FAILED; `.deployment` is the record."""
    grpc_code = "FAILED_PRECONDITION"

    def __init__(self, deployment: deployment_pb2.Deployment):
        super().__init__(f"deployment {deployment.name!r} failed: "
                         f"{deployment.message or 'no reason given'}")
        self.deployment = deployment


class Client:
    """A connection to the trainserve job API.

    `address` defaults to `$TRAINSERVE_API`, then the API of the local stack recorded by
    `trainserve up`, then 127.0.0.1:50051. `timeout` bounds each unary call (seconds).
    Calls that fail with UNAVAILABLE (the API restarting, Redis briefly gone) are retried
    with backoff for up to `retry_for` seconds; `submit` retries with the same request id,
    so a retried submission never creates a second job.
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
                 tls: TlsFiles | None = None, insecure: bool | None = None):
        self.address = api_address(address)
        self.inference_token = (inference_token if inference_token is not None
                                else os.environ.get(INFERENCE_TOKEN_ENV) or None)
        self.timeout = timeout
        self.retry_for = retry_for
        self._insecure = insecure
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
                  page_token: str = "") -> job_pb2.ListJobsResponse:
        """One page of jobs, newest first; `state` is e.g. "running" or JOB_STATE_RUNNING."""
        request = job_pb2.ListJobsRequest(state=job_state(state), page_size=page_size,
                                          page_token=page_token)
        return self._call(self._jobs.ListJobs, request)

    def iter_jobs(self, state: str | int | None = None, page_size: int = 100
                  ) -> Iterator[job_pb2.Job]:
        """Every job (newest first), fetching pages as needed."""
        token = ""
        while True:
            page = self.list_jobs(state, page_size, token)
            yield from page.jobs
            token = page.next_page_token
            if not token:
                return

    def cancel(self, job_id: str) -> job_pb2.Job:
        return self._call(self._jobs.CancelJob, job_pb2.CancelJobRequest(job_id=job_id))

    def watch(self, job_id: str, after_event_id: str = "",
              reconnect_for: float | None = None) -> Iterator[job_pb2.JobEvent]:
        """The job's events: its history first, then live ones; ends once the job is terminal.

        If the connection drops (the API restarts), the watch resumes after the last event
        it yielded, for up to `reconnect_for` seconds (default `retry_for`) of failed
        reconnects."""
        last = after_event_id
        reconnect_for = self.retry_for if reconnect_for is None else reconnect_for
        failing_since: float | None = None
        attempt = 0
        while True:
            stream = self._jobs.WatchJob(job_pb2.WatchJobRequest(job_id=job_id,
                                                                 after_event_id=last))
            try:
                for event in stream:
                    failing_since, attempt = None, 0
                    last = event.event_id or last
                    yield event
                return
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise _error(exc, self.address) from None
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > reconnect_for:
                    raise _error(exc, self.address) from None
                attempt += 1
                time.sleep(_backoff(attempt))
            finally:
                stream.cancel()

    def wait(self, job_id: str, timeout: float | None = None,
             on_event: Callable[[job_pb2.JobEvent], None] | None = None) -> job_pb2.Job:
        """Block until the job is terminal and return it; `TimeoutError` after `timeout` s.

        `on_event` sees every event on the way (the CLI's progress bar uses it)."""
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
                raise TimeoutError(f"job {job_id} is still {_state_name(job.state)} after "
                                   f"{timeout:g}s")
            time.sleep(0.2)  # the stream ended early (server restart): do not spin

    def _watch_until(self, job_id: str, last: str, deadline: float | None
                     ) -> Iterator[job_pb2.JobEvent]:
        """Events until the job is terminal or `deadline` passes (then the stream's gRPC
        deadline ends it with DEADLINE_EXCEEDED and `wait` re-checks the job)."""
        if deadline is None:
            yield from self.watch(job_id, last)
            return
        remaining = max(0.0, deadline - time.monotonic())
        stream = self._jobs.WatchJob(job_pb2.WatchJobRequest(job_id=job_id, after_event_id=last),
                                     timeout=remaining)
        try:
            yield from stream
        except grpc.RpcError as exc:
            if exc.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
                raise _error(exc, self.address) from None
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                time.sleep(_backoff(1))
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
            raise _error(exc, self.address) from None
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
            raise _error(exc, self.address) from None
        path = Path(directory) / Path(name).name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

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

    def get_model(self, name: str, version: int = 0) -> model_pb2.ModelVersion:
        """One model version; version 0 is the latest."""
        return self._call(self._models.GetModel, model_pb2.GetModelRequest(name=name,
                                                                          version=version))

    def export_model(self, name: str, version: int = 0, format: str = "onnx") -> bytes:
        """A model version (0 = the latest) as a TorchScript (`format="torchscript"`) or ONNX
        file's bytes. The exported graph takes the endpoint's raw inputs (the preprocessing is
        inside) and returns its outputs under the same names. Not retried: a stream."""
        return self.export_model_file(name, version, format)[1]

    def export_model_file(self, name: str, version: int = 0, format: str = "onnx"
                          ) -> tuple[str, bytes]:
        """`export_model`, with the server's file name for it (`<name>-v<version>.onnx`)."""
        request = model_pb2.ExportModelRequest(name=name, version=version, format=format)
        filename, parts = "", []
        try:
            for chunk in self._models.ExportModel(request, timeout=max(self.timeout, 300.0)):
                filename = filename or chunk.filename
                parts.append(chunk.data)
        except grpc.RpcError as exc:
            raise _error(exc, self.address) from None
        return filename, b"".join(parts)

    # -- deployments ----------------------------------------------------------------------------
    def deploy(self, model: str, version: int = 0, name: str | None = None, wait: bool = True,
               timeout: float = 300.0, max_batch_size: int = 0,
               batch_wait_ms: float | None = None) -> deployment_pb2.Deployment:
        """Serve `model` (version 0 = latest) at endpoint `name` (default: the model's name).

        `max_batch_size` > 1 turns on dynamic batching: concurrent requests arriving within
        `batch_wait_ms` (default 2) run as one forward pass of up to that many instances.
        With `wait`, poll until the endpoint is READY; raise `DeploymentFailed` if it fails
        and `TimeoutError` after `timeout` seconds."""
        options = deployment_pb2.ServingOptions(max_batch_size=max_batch_size)
        if batch_wait_ms is not None:
            options.batch_wait_ms = batch_wait_ms
        dep = self._call(self._deployments.Deploy, deployment_pb2.DeployRequest(
            name=name or "", model_name=model, model_version=version, options=options))
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
                timeout: float = 300.0) -> deployment_pb2.Deployment:
        """Send `percent` (default 10) of endpoint `name`'s requests to another version of its
        model (0 = latest) once that version is loaded; again with another percent
        re-weights the rollout. With `wait`, poll until the new version is loaded (as
        `wait_deployment`)."""
        request = deployment_pb2.RolloutRequest(name=name, model_name=model,
                                                model_version=version)
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

    # -- inference (OIP v2 REST) ------------------------------------------------------------
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

    def predict(self, name: str, instances: Any, http: str = "127.0.0.1:8000", *,
                input_name: str = "input", datatype: str = "FP32") -> dict[str, np.ndarray]:
        """Run endpoint `name` on a batch of `instances` (array-like, first axis = batch).

        Sends `POST /v2/models/{name}/infer` to `http` (host:port or URL) and returns the
        outputs by name as numpy arrays, e.g. {"probabilities": (N, C), "label": (N,)}."""
        request = infer_request(instances, input_name, datatype)
        return outputs_to_numpy(self.infer(name, request, http))

    def infer(self, name: str, request: Mapping[str, Any], http: str = "127.0.0.1:8000"
              ) -> dict[str, Any]:
        """Send a ready-made OIP v2 inference request (a dict) and return the JSON response."""
        base = rest_base(http)
        url = f"{base}/v2/models/{urllib.parse.quote(name, safe='')}/infer"
        return _http_json("POST", url, request, self.timeout, self._inference_headers(base))

    def model_metadata(self, name: str, http: str = "127.0.0.1:8000") -> dict[str, Any]:
        """`GET /v2/models/{name}`: the endpoint's inputs and outputs (name, datatype, shape)."""
        base = rest_base(http)
        url = f"{base}/v2/models/{urllib.parse.quote(name, safe='')}"
        return _http_json("GET", url, None, self.timeout, self._inference_headers(base))

    def _inference_headers(self, base: str) -> dict[str, str]:
        """The inference token's header for requests to `base` (http[s]://host:port)."""
        if not self.inference_token:
            return {}
        scheme, _, netloc = base.partition("://")
        check_token_transport("inference token", netloc, scheme == "https", self._insecure)
        return {"Authorization": f"Bearer {self.inference_token}"}

    # -- plumbing -------------------------------------------------------------------------------
    def _call(self, method: Callable[..., T], request, retry: bool = True) -> T:
        """One unary call; UNAVAILABLE is retried with backoff for `retry_for` seconds."""
        start = time.monotonic()
        attempt = 0
        while True:
            try:
                return method(request, timeout=self.timeout)
            except grpc.RpcError as exc:
                attempt += 1
                transient = exc.code() == grpc.StatusCode.UNAVAILABLE
                if not (retry and transient) or time.monotonic() - start > self.retry_for:
                    raise _error(exc, self.address) from None
                time.sleep(_backoff(attempt))


# -- helpers, public for the CLI --------------------------------------------------------------

def load_spec(spec: SpecLike) -> spec_pb2.JobSpec:
    """A JobSpec from a JobSpec, a dict (proto3 JSON field names), or a YAML/JSON file path."""
    from trainserve.core.spec import load_spec_file, parse_spec
    if isinstance(spec, spec_pb2.JobSpec):
        return spec
    if isinstance(spec, Mapping):
        return parse_spec(dict(spec), "spec")
    if isinstance(spec, (str, Path)):
        return load_spec_file(spec)
    raise TypeError(f"expected a JobSpec, a dict or a path, got {type(spec).__name__}")


def job_state(state: str | int | None) -> int:
    """JobState number of "running" / "RUNNING" / "JOB_STATE_RUNNING" / 2; None -> 0 (all)."""
    if state is None or state == "":
        return job_pb2.JOB_STATE_UNSPECIFIED
    if isinstance(state, int):
        return state
    from trainserve.core.state import JobState
    try:
        return int(JobState.parse(state))
    except ValueError as exc:
        raise errors.InvalidArgument(str(exc), field="state") from None


def _state_name(state: int) -> str:
    return job_pb2.JobState.Name(state).removeprefix("JOB_STATE_").lower()


def infer_request(instances: Any, input_name: str = "input", datatype: str = "FP32"
                  ) -> dict[str, Any]:
    """The OIP v2 JSON request for a batch of `instances` (one input tensor)."""
    arr = np.asarray(instances, dtype=numpy_dtype(datatype))
    if arr.ndim == 0:
        raise errors.InvalidArgument("instances must be a batch (a list or an array), "
                                     "not a single number")
    if arr.ndim == 1:
        arr = arr[None, :]  # one instance
    return {"inputs": [{"name": input_name, "datatype": datatype, "shape": list(arr.shape),
                        "data": arr.reshape(-1).tolist()}]}


def outputs_to_numpy(response: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The outputs of an OIP v2 JSON response as numpy arrays of their shape and datatype."""
    out = {}
    for item in response.get("outputs", []):
        dtype = numpy_dtype(item["datatype"])
        out[item["name"]] = np.asarray(item["data"], dtype=dtype).reshape(item["shape"])
    return out


def rest_base(http: str) -> str:
    """`host:port`, `http://host:port` or a deployment's rest_url -> `http://host:port`."""
    if "://" not in http:
        http = f"http://{http}"
    parts = urllib.parse.urlsplit(http)
    return f"{parts.scheme}://{parts.netloc}"


def to_json(message, **kwargs) -> dict[str, Any]:
    """proto3 JSON of a message with the .proto field names (so a job's spec can be fed back
    to `submit`) and every field, set or not."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True, **kwargs)


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a TLS connection to the job API: the CA to trust (empty: the system's),
    and for mutual TLS the client's certificate and key."""
    ca: str = ""
    cert: str = ""
    key: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "TlsFiles | None":
        env = os.environ if env is None else env
        files = cls(*(env.get(f"TRAINSERVE_TLS_{k}", "") for k in ("CA", "CERT", "KEY")))
        # TRAINSERVE_TLS=1 alone: TLS trusting the system's CAs.
        on = env.get("TRAINSERVE_TLS", "").lower() in ("1", "true", "yes")
        return files if on or any((files.ca, files.cert, files.key)) else None

    def credentials(self) -> grpc.ChannelCredentials:
        def read(path: str) -> bytes | None:
            return Path(path).read_bytes() if path else None
        return grpc.ssl_channel_credentials(read(self.ca), read(self.key), read(self.cert))


def api_channel(address: str, token: str | None = None,
                tls: TlsFiles | None = None, insecure: bool | None = None) -> grpc.Channel:
    """A channel to the job API at `address` that sends the bearer token with every call
    (`token`, else `$TRAINSERVE_TOKEN`, else the local stack's admin token when `address`
    is its API), over TLS when `tls` (or the environment's TRAINSERVE_TLS_*) says so.

    A token is never sent in clear to another machine: without TLS and with a host that is
    not loopback this raises FailedPrecondition, unless `insecure` (default
    `$TRAINSERVE_ALLOW_INSECURE_TOKEN=1`) says the network is trusted."""
    tls = tls or TlsFiles.from_env()
    token = token if token is not None else api_token(address)
    if token:
        check_token_transport("API token", address, bool(tls), insecure)
    channel = (grpc.secure_channel(address, tls.credentials(), options=_options(address))
               if tls else grpc.insecure_channel(address, options=_options(address)))
    return grpc.intercept_channel(channel, _Bearer(token)) if token else channel


def check_token_transport(what: str, address: str, encrypted: bool,
                          insecure: bool | None = None) -> None:
    """FailedPrecondition unless a token may go to `address` (HOST:PORT): over TLS, to this
    machine, or where `insecure` (default `$TRAINSERVE_ALLOW_INSECURE_TOKEN=1`) says the
    network is trusted. A token sent in clear to another machine is anyone's on the way."""
    if encrypted or _loopback(address) or _allow_insecure(insecure):
        return
    fix = ("set TRAINSERVE_TLS_CA (the server's CA) to use TLS" if what == "API token"
           else "use an https:// address")
    raise errors.FailedPrecondition(
        f"refusing to send the {what} in clear to {address} (no TLS, not this machine): "
        f"{fix}, or {ALLOW_INSECURE_TOKEN_ENV}=1 (Client(insecure=True)) on a network you "
        "trust")


def _allow_insecure(insecure: bool | None) -> bool:
    if insecure is not None:
        return insecure
    return os.environ.get(ALLOW_INSECURE_TOKEN_ENV, "").lower() in ("1", "true", "yes")


def _loopback(address: str) -> bool:
    """Whether `address` (HOST:PORT, [v6]:PORT, unix:PATH) is on this machine."""
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    host = address.rsplit(":", 1)[0].strip("[]") if ":" in address else address
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
              grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call's metadata."""

    def __init__(self, token: str):
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details):
        metadata = [*(details.metadata or ()), self._header]
        return _CallDetails(details.method, details.timeout, metadata, details.credentials,
                            details.wait_for_ready, details.compression)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, requests):
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation, details, requests):
        return continuation(self._details(details), requests)


class _CallDetails(collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready",
                         "compression")), grpc.ClientCallDetails):
    pass


def _options(address: str) -> list[tuple[str, Any]]:
    host = address.rsplit(":", 1)[0].strip("[]")
    # A local API must not be reached through an http_proxy from the environment.
    return [("grpc.enable_http_proxy", 0)] if host in LOOPBACK else []


def _backoff(attempt: int) -> float:
    return min(0.1 * 2 ** attempt, 2.0) * (0.5 + random.random() / 2)


def _error(exc: grpc.RpcError, address: str) -> errors.TrainserveError:
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE and not details.startswith("state store"):
        return errors.Unavailable(f"cannot reach the trainserve API at {address} "
                                  f"({details or 'unavailable'}); is it running "
                                  "(`trainserve up`)?")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return errors.Unavailable(f"the trainserve API at {address} did not answer in time")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        match = _FIELD_MESSAGE.match(details)
        return (errors.InvalidArgument(match.group(2), field=match.group(1)) if match
                else errors.InvalidArgument(details))
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return errors.Unauthenticated(f"{details} (the SDK and the CLI send $TRAINSERVE_TOKEN "
                                      "or --token; on the machine that ran `trainserve up`, "
                                      "its admin token)")
    cls = _ERRORS.get(code, errors.TrainserveError)
    return cls(details or code.name.lower())


def _http_json(method: str, url: str, body: Any, timeout: float,
               headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    host = urllib.parse.urlsplit(url).hostname or ""
    handlers = [urllib.request.ProxyHandler({})] if host in LOOPBACK else []
    try:
        with urllib.request.build_opener(*handlers).open(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise _http_error(exc) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise errors.Unavailable(f"cannot reach the inference endpoint {url}: {reason}") from None


def _http_error(exc: urllib.error.HTTPError) -> errors.TrainserveError:
    try:
        message = json.loads(exc.read()).get("error") or exc.reason
    except (ValueError, AttributeError, OSError):
        message = exc.reason
    if exc.code == 401:
        return errors.Unauthenticated(f"{message} (the SDK and the CLI send "
                                      f"${INFERENCE_TOKEN_ENV})")
    if exc.code == 400:
        match = _FIELD_MESSAGE.match(str(message))
        if match:
            return errors.InvalidArgument(match.group(2), field=match.group(1))
    return _HTTP_ERRORS.get(exc.code, errors.TrainserveError)(str(message))
