"""Small helpers of the integration tests (raw gRPC, as any client would speak it)."""
from __future__ import annotations

import time
import uuid

import grpc

from trainserve.core.spec import load_spec_file, parse_spec
from trainserve.core.state import JobState
from trainserve.core.pb import deployment_pb2, job_pb2, model_pb2

EXAMPLES = __import__("pathlib").Path(__file__).resolve().parents[2] / "examples"


def admin_token(cfg) -> str:
    """The local admin's job API token of the stack with config `cfg` ("" when its API does
    not check tokens)."""
    return cfg.admin_token_path.read_text().strip() if cfg.api_auth else ""


def example(example_name: str, **overrides):
    """An example spec with top-level sections replaced/merged from `overrides`."""
    spec = load_spec_file(EXAMPLES / f"{example_name}.yaml")
    if overrides:
        spec.MergeFrom(parse_spec(overrides))
    return spec


def submit(stubs, spec, request_id: str | None = None) -> job_pb2.Job:
    return stubs.jobs.SubmitJob(job_pb2.SubmitJobRequest(
        spec=spec, request_id=request_id or uuid.uuid4().hex), timeout=30)


def wait_job(stubs, job_id: str, timeout: float = 300) -> job_pb2.Job:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = stubs.jobs.GetJob(job_pb2.GetJobRequest(job_id=job_id), timeout=10)
        if JobState(job.state).is_terminal:
            return job
        time.sleep(0.25)
    raise TimeoutError(f"job {job_id} not done after {timeout}s: {job}")


def watch(stubs, job_id: str, timeout: float = 300) -> list[job_pb2.JobEvent]:
    return list(stubs.jobs.WatchJob(job_pb2.WatchJobRequest(job_id=job_id), timeout=timeout))


def deploy(stubs, model: str, name: str, version: int = 0, timeout: float = 120):
    stubs.deployments.Deploy(deployment_pb2.DeployRequest(name=name, model_name=model,
                                                          model_version=version), timeout=30)
    deadline = time.time() + timeout
    while time.time() < deadline:
        dep = stubs.deployments.GetDeployment(
            deployment_pb2.GetDeploymentRequest(name=name), timeout=10)
        if dep.state != deployment_pb2.DEPLOYMENT_STATE_PENDING:
            return dep
        time.sleep(0.25)
    raise TimeoutError(f"deployment {name} still pending")


def get_model(stubs, name: str, version: int = 0) -> model_pb2.ModelVersion:
    return stubs.models.GetModel(model_pb2.GetModelRequest(name=name, version=version), timeout=10)


def rpc_error(fn, *args, **kwargs) -> grpc.RpcError:
    try:
        fn(*args, **kwargs)
    except grpc.RpcError as err:
        return err
    raise AssertionError("the call succeeded")


class Load:
    """`clients` threads posting `body` to `url` until stopped, each request recorded as
    (time, ok, why, model version). `check(response)` decides ok beyond HTTP 200."""

    def __init__(self, url: str, body: dict, clients: int = 4, check=None):
        import threading
        self.url, self.body, self.check = url, body, check or (lambda r: True)
        self.stop = threading.Event()
        self.results: list[tuple[float, bool, str, str]] = []
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)

    @property
    def versions(self):
        """Successful requests by the model version that answered."""
        import collections
        return collections.Counter(v for _, ok, _, v in list(self.results) if ok)

    @property
    def failures(self) -> list[str]:
        return [why for _, ok, why, _ in list(self.results) if not ok]

    def _run(self):
        import httpx
        with httpx.Client(timeout=30) as h:
            while not self.stop.is_set():
                version = ""
                try:
                    r = h.post(self.url, json=self.body)
                    why = f"{r.status_code} {r.text[:200]}"
                    ok = r.status_code == 200 and bool(self.check(r))
                    version = r.json().get("model_version", "") if ok else ""
                except Exception as exc:  # noqa: BLE001 - every failure counts
                    ok, why = False, repr(exc)[:200]
                with self._lock:
                    self.results.append((time.monotonic(), ok, why, version))


def wait_paused(paused, timeout: float = 120) -> int:
    """The pid a `trainserve.core.faults` pause point wrote to the file `paused` (a Path) once it
    holds there; TimeoutError if nothing pauses within `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if paused.exists() and paused.read_text().strip():
            return int(paused.read_text())
        time.sleep(0.05)
    raise TimeoutError(f"nothing paused at {paused.name}")
