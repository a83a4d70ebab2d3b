"""The SDK against an in-process fake of the job API (real gRPC on port 0) and a fake OIP
REST endpoint. The fake is the thing the client talks to, not the thing under test; the CLI
tests (test_cli_commands.py) reuse it."""
from __future__ import annotations

import json
import tempfile
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import numpy as np
import pytest

from trainserve.core import errors
from trainserve.client import Client, DeploymentFailed, infer_request, rest_base
from trainserve.core.pb import (deployment_pb2, deployment_pb2_grpc, job_pb2, job_pb2_grpc, model_pb2,
                           model_pb2_grpc, spec_pb2)

XOR_SPEC = {"name": "xor-mlp", "dataset": {"name": "xor"}, "model": {"mlp": {"hidden": [8]}},
            "training": {"epochs": 3}}


class FakeApi(job_pb2_grpc.JobServiceServicer, model_pb2_grpc.ModelServiceServicer,
              deployment_pb2_grpc.DeploymentServiceServicer):
    """An in-memory job API with knobs for failures."""

    def __init__(self):
        self.jobs: dict[str, job_pb2.Job] = {}
        self.events: dict[str, list[job_pb2.JobEvent]] = {}
        self.models: list[model_pb2.ModelVersion] = []
        self.deployments: dict[str, deployment_pb2.Deployment] = {}
        self.requests: list = []          # (method, request) of every call
        self.unavailable = 0              # fail this many next unary calls with UNAVAILABLE
        self.watch_drop_after = None      # abort the first watch after this many events
        self.deploy_states = []           # states GetDeployment walks through
        self.on_submit = None             # called with each new job (to script its run)
        self.lock = threading.Lock()

    # -- helpers for tests
    def add_job(self, job_id: str, state=job_pb2.JOB_STATE_QUEUED, **fields) -> job_pb2.Job:
        job = job_pb2.Job(id=job_id, state=state, spec=spec_pb2.JobSpec(name="xor-mlp"),
                          **fields)
        job.created_at.FromSeconds(int(time.time()) - 60)
        self.jobs[job_id] = job
        self.events.setdefault(job_id, [])
        return job

    def add_event(self, job_id: str, **oneof) -> None:
        events = self.events.setdefault(job_id, [])
        event = job_pb2.JobEvent(job_id=job_id, event_id=f"{len(events) + 1}-0", **oneof)
        event.time.FromSeconds(1_700_000_000 + len(events))
        events.append(event)

    def _unary(self, name, request, context):
        with self.lock:
            self.requests.append((name, request))
            if self.unavailable > 0:
                self.unavailable -= 1
                context.abort(grpc.StatusCode.UNAVAILABLE, "try again")

    # -- JobService
    def SubmitJob(self, request, context):
        self._unary("SubmitJob", request, context)
        if not request.spec.dataset.name:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "spec.dataset.name: required")
        for job in self.jobs.values():
            if job.request_id == request.request_id:
                return job
        job = self.add_job(f"j-{len(self.jobs) + 1}", request_id=request.request_id)
        job.spec.CopyFrom(request.spec)
        reply = job_pb2.Job()
        reply.CopyFrom(job)
        if self.on_submit:
            self.on_submit(job)
        return reply

    def GetJob(self, request, context):
        self._unary("GetJob", request, context)
        if request.job_id not in self.jobs:
            context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.job_id!r} not found")
        return self.jobs[request.job_id]

    def ListJobs(self, request, context):
        from trainserve.jobs.labels import matches, parse_selector
        self._unary("ListJobs", request, context)
        try:
            pairs = parse_selector(request.labels)
        except errors.InvalidArgument as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        jobs = [j for j in self.jobs.values() if (not request.state or j.state == request.state)
                and matches(j, pairs)]
        start = int(request.page_token or 0)
        size = request.page_size or 50
        page = jobs[start:start + size]
        token = str(start + size) if start + size < len(jobs) else ""
        return job_pb2.ListJobsResponse(jobs=page, next_page_token=token)

    def CancelJob(self, request, context):
        self._unary("CancelJob", request, context)
        job = self.jobs[request.job_id]
        if job.state in (job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED):
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"job {job.id} is already done")
        job.state = job_pb2.JOB_STATE_CANCELLED
        return job

    def WatchJob(self, request, context):
        self.requests.append(("WatchJob", request))
        if request.job_id not in self.jobs:
            context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.job_id!r} not found")
        events = self.events[request.job_id]
        ids = [e.event_id for e in events]
        start = ids.index(request.after_event_id) + 1 if request.after_event_id else 0
        for n, event in enumerate(events[start:], 1):
            yield event
            if self.watch_drop_after is not None and n >= self.watch_drop_after:
                self.watch_drop_after = None
                context.abort(grpc.StatusCode.UNAVAILABLE, "api restarting")

    def ListArtifacts(self, request, context):
        self._unary("ListArtifacts", request, context)
        return job_pb2.ListArtifactsResponse(artifacts=[
            info for info, _ in self._artifacts(request.job_id, context)])

    def GetArtifact(self, request, context):
        self.requests.append(("GetArtifact", request))
        files = {info.name: data for info, data in self._artifacts(request.job_id, context)}
        if request.name not in files:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no artifact {request.name!r}")
        yield job_pb2.ArtifactChunk(data=files[request.name])

    def GetJobCurves(self, request, context):
        """The job's curves as the server reads them (`jobs.curves`), from its events."""
        from trainserve.jobs.curves import job_curves
        self._unary("GetJobCurves", request, context)
        if request.job_id not in self.jobs:
            context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.job_id!r} not found")
        job = self.jobs[request.job_id]
        return job_curves(job, self.events[job.id], job.trials, job.best_trial)

    def CompareJobs(self, request, context):
        """The server's comparison (`jobs.compare`) of the jobs' epoch events."""
        from trainserve.jobs.compare import check_ids, comparison
        from trainserve.jobs.curves import epoch_points
        self._unary("CompareJobs", request, context)
        try:
            ids = check_ids(request.job_ids)
        except errors.InvalidArgument as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        missing = [i for i in ids if i not in self.jobs]
        if missing:
            context.abort(grpc.StatusCode.NOT_FOUND, f"job {missing[0]!r} not found")
        jobs = [self.jobs[i] for i in ids]
        return comparison(jobs, [epoch_points(self.events[j.id]) for j in jobs])

    def _artifacts(self, job_id, context) -> list[tuple[job_pb2.ArtifactInfo, bytes]]:
        """The job's files as the server renders them (`jobs.artifacts`), from its events."""
        from trainserve.jobs.artifacts import CONTENT_TYPES, write_files
        if job_id not in self.jobs:
            context.abort(grpc.StatusCode.NOT_FOUND, f"job {job_id!r} not found")
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "plots"
            out.mkdir()
            write_files(self.jobs[job_id], self.events[job_id], Path(tmp), out)
            return [(job_pb2.ArtifactInfo(name=p.name, content_type=CONTENT_TYPES[p.suffix],
                                          size_bytes=p.stat().st_size), p.read_bytes())
                    for p in sorted(out.iterdir())]

    # -- ModelService
    def ListModels(self, request, context):
        self._unary("ListModels", request, context)
        found = [m for m in self.models if not request.name or m.name == request.name]
        return model_pb2.ListModelsResponse(models=found)

    def GetModel(self, request, context):
        self._unary("GetModel", request, context)
        found = [m for m in self.models if m.name == request.name
                 and (not request.version or m.version == request.version)]
        if not found:
            context.abort(grpc.StatusCode.NOT_FOUND, f"model {request.name!r} not found")
        return max(found, key=lambda m: m.version)

    # -- DeploymentService
    def Deploy(self, request, context):
        self._unary("Deploy", request, context)
        name = request.name or request.model_name
        dep = deployment_pb2.Deployment(
            name=name, model_name=request.model_name, model_version=request.model_version or 1,
            state=deployment_pb2.DEPLOYMENT_STATE_PENDING,
            rest_url=f"http://127.0.0.1:8000/v2/models/{name}", grpc_target="127.0.0.1:9000")
        self.deployments[name] = dep
        return dep

    def Undeploy(self, request, context):
        self._unary("Undeploy", request, context)
        if request.name not in self.deployments:
            context.abort(grpc.StatusCode.NOT_FOUND, f"deployment {request.name!r} not found")
        return self.deployments.pop(request.name)

    def GetDeployment(self, request, context):
        self._unary("GetDeployment", request, context)
        if request.name not in self.deployments:
            context.abort(grpc.StatusCode.NOT_FOUND, f"deployment {request.name!r} not found")
        dep = self.deployments[request.name]
        if self.deploy_states:
            state, message = self.deploy_states.pop(0)
            dep.state, dep.message = state, message
        return dep

    def ListDeployments(self, request, context):
        self._unary("ListDeployments", request, context)
        return deployment_pb2.ListDeploymentsResponse(deployments=list(self.deployments.values()))

    def Rollout(self, request, context):
        self._unary("Rollout", request, context)
        dep = self.deployments[request.name]
        dep.canary_version = request.model_version or dep.model_version + 1
        dep.canary_percent = request.canary_percent if request.HasField("canary_percent") \
            else 10
        dep.canary_state = deployment_pb2.DEPLOYMENT_STATE_READY
        return dep

    def Promote(self, request, context):
        self._unary("Promote", request, context)
        dep = self.deployments[request.name]
        dep.model_version, dep.canary_version, dep.canary_percent = dep.canary_version, 0, 0
        return dep

    def Rollback(self, request, context):
        self._unary("Rollback", request, context)
        dep = self.deployments[request.name]
        if not dep.canary_version:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no rollout in progress")
        dep.canary_version, dep.canary_percent = 0, 0
        return dep


@pytest.fixture
def fake_api():
    """(FakeApi, "127.0.0.1:port") served by a real gRPC server on a free port."""
    api = FakeApi()
    server = grpc.server(futures.ThreadPoolExecutor(8))
    job_pb2_grpc.add_JobServiceServicer_to_server(api, server)
    model_pb2_grpc.add_ModelServiceServicer_to_server(api, server)
    deployment_pb2_grpc.add_DeploymentServiceServicer_to_server(api, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield api, f"127.0.0.1:{port}"
    server.stop(None)


class FakeOip(BaseHTTPRequestHandler):
    """OIP v2 REST: endpoint "adder" takes FP32 [-1, 1, 2, 2] and returns each instance's sum
    and a label; "broken" answers every inference with 400; others are 404."""
    requests: list = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        name = self.path.rsplit("/", 1)[-1]
        if name in ("adder", "broken"):
            self._send(200, {"name": name, "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [-1, 1, 2, 2]}],
                "outputs": [{"name": "sum", "datatype": "FP32", "shape": [-1]}]})
        else:
            self._send(404, {"error": f"endpoint {name!r} not found"})

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append((self.path, body))
        if "broken" in self.path:
            return self._send(400, {"error": "input 'x': shape [1, 3] does not match"})
        tensor = body["inputs"][0]
        arr = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        sums = arr.reshape(arr.shape[0], -1).sum(axis=1)
        self._send(200, {"model_name": "adder", "outputs": [
            {"name": "sum", "datatype": "FP32", "shape": [len(sums)], "data": sums.tolist()},
            {"name": "label", "datatype": "INT64", "shape": [len(sums)],
             "data": [int(s > 1) for s in sums]}]})

    def _send(self, status: int, doc) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def fake_oip():
    """"127.0.0.1:port" of a fake OIP REST endpoint."""
    FakeOip.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOip)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def client(fake_api):
    api, address = fake_api
    with Client(address, timeout=5, retry_for=5) as c:
        yield c


# -- submit ---------------------------------------------------------------------------------

def test_submit_dict_yaml_and_proto(client, fake_api, tmp_path):
    api, _ = fake_api
    path = tmp_path / "xor.yaml"
    path.write_text("name: xor-mlp\ndataset: {name: xor}\nmodel: {mlp: {hidden: [8]}}\n")
    for spec in (XOR_SPEC, path, str(path), spec_pb2.JobSpec(name="x", dataset={"name": "xor"})):
        job = client.submit(spec)
        assert job.state == job_pb2.JOB_STATE_QUEUED
        assert job.spec.dataset.name == "xor"
    ids = [r.request_id for name, r in api.requests if name == "SubmitJob"]
    assert len(set(ids)) == 4 and all(ids), "each submission gets its own request id"


def test_submit_retries_unavailable_with_the_same_request_id(client, fake_api):
    api, _ = fake_api
    api.unavailable = 2
    job = client.submit(XOR_SPEC, request_id="req-1")
    assert job.request_id == "req-1"
    ids = [r.request_id for name, r in api.requests if name == "SubmitJob"]
    assert ids == ["req-1"] * 3


def test_unavailable_for_longer_than_retry_for_names_the_address(fake_api):
    api, address = fake_api
    api.unavailable = 1000
    with Client(address, timeout=2, retry_for=0.3) as c:
        with pytest.raises(errors.Unavailable, match=address):
            c.get_job("j-1")


def test_invalid_argument_keeps_the_field_path(client):
    with pytest.raises(errors.InvalidArgument) as info:
        client.submit({"name": "x", "dataset": {}})
    assert info.value.field == "spec.dataset.name"
    assert info.value.reason == "required"
    assert str(info.value) == "spec.dataset.name: required"


def test_bad_spec_file_fails_before_any_call(client, fake_api, tmp_path):
    api, _ = fake_api
    path = tmp_path / "bad.yaml"
    path.write_text("dataset: {name: xor}\ntraining: {epochz: 3}\n")
    with pytest.raises(errors.InvalidArgument) as info:
        client.submit(path)
    assert info.value.field == "spec.training.epochz"
    assert not api.requests


def test_errors_map_to_domain_exceptions(client, fake_api):
    api, _ = fake_api
    api.add_job("done", state=job_pb2.JOB_STATE_SUCCEEDED)
    with pytest.raises(errors.NotFound, match="job 'nope' not found"):
        client.get_job("nope")
    with pytest.raises(errors.FailedPrecondition, match="already done"):
        client.cancel("done")


# -- listing ----------------------------------------------------------------------------------

def test_list_jobs_pages_and_iterates(client, fake_api):
    api, _ = fake_api
    for i in range(7):
        api.add_job(f"j{i}", state=job_pb2.JOB_STATE_RUNNING if i % 2 else
                    job_pb2.JOB_STATE_QUEUED)
    page = client.list_jobs(page_size=3)
    assert [j.id for j in page.jobs] == ["j0", "j1", "j2"] and page.next_page_token
    assert [j.id for j in client.iter_jobs(page_size=3)] == [f"j{i}" for i in range(7)]
    assert [j.id for j in client.iter_jobs("running")] == ["j1", "j3", "j5"]
    assert [j.id for j in client.iter_jobs("JOB_STATE_QUEUED")] == ["j0", "j2", "j4", "j6"]
    with pytest.raises(errors.InvalidArgument, match="unknown job state"):
        client.list_jobs("sleeping")


# -- watch and wait -------------------------------------------------------------------------

def _finish(api, job_id, state=job_pb2.JOB_STATE_SUCCEEDED):
    api.add_event(job_id, state=job_pb2.StateChanged(state=job_pb2.JOB_STATE_RUNNING))
    for epoch in (1, 2, 3):
        api.add_event(job_id, epoch=job_pb2.EpochMetrics(
            epoch=epoch, total_epochs=3, metrics={"train_loss": 1.0 / epoch}))
    api.add_event(job_id, state=job_pb2.StateChanged(state=state))
    api.jobs[job_id].state = state


def test_watch_resumes_after_the_last_event_when_the_stream_drops(client, fake_api):
    api, _ = fake_api
    api.add_job("j1")
    _finish(api, "j1")
    api.watch_drop_after = 2
    events = list(client.watch("j1"))
    assert [e.event_id for e in events] == ["1-0", "2-0", "3-0", "4-0", "5-0"]
    watches = [r for name, r in api.requests if name == "WatchJob"]
    assert [w.after_event_id for w in watches] == ["", "2-0"]


def test_wait_returns_the_terminal_job_and_reports_events(client, fake_api):
    api, _ = fake_api
    api.add_job("j1")
    _finish(api, "j1", job_pb2.JOB_STATE_FAILED)
    seen = []
    job = client.wait("j1", timeout=5, on_event=seen.append)
    assert job.state == job_pb2.JOB_STATE_FAILED
    assert len(seen) == 5


def test_wait_times_out(client, fake_api):
    api, _ = fake_api
    api.add_job("j1", state=job_pb2.JOB_STATE_RUNNING)
    # The fake's stream ends without a terminal event; the job stays RUNNING.
    with pytest.raises(TimeoutError, match="still running"):
        client.wait("j1", timeout=0.5)


def test_watch_of_unknown_job_is_not_found(client):
    with pytest.raises(errors.NotFound):
        list(client.watch("nope"))


# -- deployments ----------------------------------------------------------------------------

def test_deploy_waits_until_ready(client, fake_api):
    api, _ = fake_api
    pending, ready = deployment_pb2.DEPLOYMENT_STATE_PENDING, deployment_pb2.DEPLOYMENT_STATE_READY
    api.deploy_states = [(pending, "loading"), (pending, "loading"), (ready, "")]
    dep = client.deploy("xor-mlp", 2, name="xor", timeout=10)
    assert dep.state == ready and dep.name == "xor"
    deploy = next(r for name, r in api.requests if name == "Deploy")
    assert (deploy.name, deploy.model_name, deploy.model_version) == ("xor", "xor-mlp", 2)


def test_deploy_failure_and_timeout(client, fake_api):
    api, _ = fake_api
    api.deploy_states = [(deployment_pb2.DEPLOYMENT_STATE_FAILED, "weights missing")]
    with pytest.raises(DeploymentFailed, match="weights missing") as info:
        client.deploy("xor-mlp")
    assert info.value.deployment.name == "xor-mlp"
    with pytest.raises(TimeoutError, match="not ready"):
        client.deploy("xor-mlp", timeout=0.3)
    assert client.deploy("xor-mlp", wait=False).state == deployment_pb2.DEPLOYMENT_STATE_PENDING


def test_undeploy_is_not_retried(client, fake_api):
    api, _ = fake_api
    api.unavailable = 1
    with pytest.raises(errors.Unavailable):
        client.undeploy("xor")
    assert [name for name, _ in api.requests] == ["Undeploy"]


# -- inference --------------------------------------------------------------------------------

def test_predict_builds_an_oip_request_and_returns_numpy(client, fake_oip):
    out = client.predict("adder", np.ones((2, 1, 2, 2)), http=fake_oip, input_name="x")
    assert out["sum"].dtype == np.float32 and out["sum"].tolist() == [4.0, 4.0]
    assert out["label"].dtype == np.int64 and out["label"].tolist() == [1, 1]
    path, body = FakeOip.requests[0]
    assert path == "/v2/models/adder/infer"
    assert body["inputs"][0] == {"name": "x", "datatype": "FP32", "shape": [2, 1, 2, 2],
                                 "data": [1.0] * 8}


def test_predict_errors_carry_the_server_message(client, fake_oip):
    with pytest.raises(errors.InvalidArgument, match="does not match"):
        client.predict("broken", [[1, 2, 3]], http=fake_oip)
    with pytest.raises(errors.NotFound, match="not found"):
        client.model_metadata("nope", http=fake_oip)
    with pytest.raises(errors.Unavailable, match="cannot reach"):
        client.predict("adder", [[1]], http="127.0.0.1:1")


def test_infer_request_shapes():
    assert infer_request([0, 1])["inputs"][0]["shape"] == [1, 2]  # one instance
    assert infer_request([[0, 1], [1, 1]])["inputs"][0]["shape"] == [2, 2]
    with pytest.raises(errors.InvalidArgument):
        infer_request(3.0)


@pytest.mark.parametrize("given", ["127.0.0.1:8000", "http://127.0.0.1:8000",
                                   "http://127.0.0.1:8000/v2/models/xor"])
def test_rest_base(given):
    assert rest_base(given) == "http://127.0.0.1:8000"


def test_default_address_comes_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TRAINSERVE_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("TRAINSERVE_API", raising=False)
    monkeypatch.delenv("TRAINSERVE_TOKEN", raising=False)  # set by a test stack in the session
    assert Client().address == "127.0.0.1:50051"
    monkeypatch.setenv("TRAINSERVE_API", "10.0.0.1:7000")
    assert Client().address == "10.0.0.1:7000"
    assert Client("h:1").address == "h:1"


def test_default_address_follows_the_recorded_local_stack(monkeypatch, tmp_path):
    from trainserve.local import Config, stack_file
    monkeypatch.setenv("TRAINSERVE_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("TRAINSERVE_API", raising=False)
    stack_file(tmp_path).parent.mkdir(parents=True)
    stack_file(tmp_path).write_text(json.dumps(Config(state_dir=tmp_path,
                                                      api_port=6123).to_dict()))
    assert Client().address == "127.0.0.1:6123"


def test_top_level_import():
    import trainserve
    assert trainserve.Client is Client
    assert Path(trainserve.__file__).exists()


# -- tokens in clear ------------------------------------------------------------------------

REMOTE = "10.255.255.1:50051"  # not this machine; nothing is sent: the refusal comes first


def test_a_token_is_not_sent_in_clear_to_another_machine(monkeypatch):
    monkeypatch.delenv("TRAINSERVE_ALLOW_INSECURE_TOKEN", raising=False)
    for var in ("TRAINSERVE_TLS", "TRAINSERVE_TLS_CA", "TRAINSERVE_TLS_CERT",
                "TRAINSERVE_TLS_KEY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(errors.FailedPrecondition) as refused:
        Client(REMOTE, token="tsk_secret")
    assert "in clear" in refused.value.message and "TRAINSERVE_TLS_CA" in refused.value.message
    assert "tsk_secret" not in refused.value.message
    Client(REMOTE, token="tsk_secret", insecure=True).close()   # told: the network is trusted
    Client(REMOTE, token="").close()                             # no token, nothing to leak
    monkeypatch.setenv("TRAINSERVE_ALLOW_INSECURE_TOKEN", "1")
    Client(REMOTE, token="tsk_secret").close()
    monkeypatch.delenv("TRAINSERVE_ALLOW_INSECURE_TOKEN")
    monkeypatch.setenv("TRAINSERVE_TLS", "1")                    # TLS with the system's CAs
    Client(REMOTE, token="tsk_secret").close()


@pytest.mark.parametrize("address", ["127.0.0.1:1", "localhost:1", "[::1]:1", "127.0.0.9:1"])
def test_a_token_goes_in_clear_to_loopback(monkeypatch, address):
    monkeypatch.delenv("TRAINSERVE_ALLOW_INSECURE_TOKEN", raising=False)
    monkeypatch.delenv("TRAINSERVE_TLS_CA", raising=False)
    Client(address, token="tsk_secret").close()


def test_an_inference_token_is_not_sent_in_clear_to_another_machine(monkeypatch):
    monkeypatch.delenv("TRAINSERVE_ALLOW_INSECURE_TOKEN", raising=False)
    client = Client("127.0.0.1:1", token="", inference_token="inf_secret")
    remote = f"http://{REMOTE}"
    with pytest.raises(errors.FailedPrecondition) as refused:  # refused before any connection
        client.infer("clf", {"inputs": []}, http=remote)
    assert "inference token in clear" in refused.value.message
    assert "https://" in refused.value.message and "inf_secret" not in refused.value.message
    assert client._inference_headers(f"https://{REMOTE}") == {
        "Authorization": "Bearer inf_secret"}
    assert client._inference_headers("http://127.0.0.1:8000")["Authorization"].endswith("secret")
    monkeypatch.setenv("TRAINSERVE_ALLOW_INSECURE_TOKEN", "1")
    assert client._inference_headers(remote)
    client.close()
