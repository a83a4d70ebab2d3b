"""The stack's MLflow credentials, without a real MLflow: a tiny HTTP server in the test
speaking the part of MLflow's REST API a job uses, and checking the Authorization header the
way an authenticating MLflow server does. The header is sent (bearer token, or basic auth),
only to the stack's own server, and the secret appears nowhere a user can read: not in the
job's log lines, the Python logs, the run info put on the job's record, its tracking.json,
nor the `JobContext` shipped to the workers."""
from __future__ import annotations

import base64
import json
import logging
import pickle
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from google.protobuf import json_format

from trainserve.core.pb import spec_pb2
from trainserve.core.ports import free_port
from trainserve.core.tracking import StackTracking
from trainserve.runtime.context import JobContext
from trainserve.runtime.mlflow_rest import MlflowError, credentials
from trainserve.runtime.tracking import STATE_FILE, tracked
from trainserve.training.loop import train
from trainserve.training.reporting import ListReporter
from trainserve.training.validate import check_spec

SECRET = "s3cret-" + uuid.uuid4().hex


class TinyMlflow:
    """An HTTP server on a free loopback port answering MLflow's tracking calls from memory;
    `expected`: the Authorization value it requires (None: any). `headers` holds every
    request's Authorization value, `runs` the runs by id, `artifacts` the uploaded files."""

    def __init__(self, expected: str | None = None):
        self.expected = expected
        self.headers: list[str | None] = []
        self.experiments: dict[str, str] = {}
        self.runs: dict[str, dict] = {}
        self.artifacts: dict[str, bytes] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), self._handler())
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        tiny = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

            def do_PUT(self):
                self._serve("PUT")

            def _serve(self, method):
                auth = self.headers.get("Authorization")
                tiny.headers.append(auth)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if tiny.expected is not None and auth != tiny.expected:
                    return self._answer(401, {"error_code": "UNAUTHENTICATED",
                                              "message": "credentials required"})
                self._answer(*tiny.answer(method, urlsplit(self.path), body))

            def _answer(self, code, doc):
                data = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
        return Handler

    def answer(self, method: str, url, body: bytes) -> tuple[int, dict]:
        prefix = "/api/2.0/mlflow-artifacts/artifacts/"
        if url.path.startswith(prefix):
            self.artifacts[url.path.removeprefix(prefix)] = body
            return 200, {}
        call = url.path.removeprefix("/api/2.0/mlflow/")
        doc = json.loads(body or b"{}") if method != "GET" else \
            {k: v[0] for k, v in parse_qs(url.query).items()}
        return getattr(self, "_" + call.replace("/", "_").replace("-", "_"))(doc)

    def _experiments_get_by_name(self, doc):
        name = doc["experiment_name"]
        if name not in self.experiments:
            return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such"}
        return 200, {"experiment": {"experiment_id": self.experiments[name]}}

    def _experiments_create(self, doc):
        self.experiments[doc["name"]] = str(len(self.experiments) + 1)
        return 200, {"experiment_id": self.experiments[doc["name"]]}

    def _runs_create(self, doc):
        run_id = uuid.uuid4().hex
        self.runs[run_id] = {"name": doc["run_name"], "params": {}, "metrics": [],
                             "tags": {t["key"]: t["value"] for t in doc["tags"]},
                             "status": "RUNNING"}
        uri = f"mlflow-artifacts:/{doc['experiment_id']}/{run_id}/artifacts"
        return 200, {"run": {"info": {"run_id": run_id, "artifact_uri": uri}}}

    def _runs_log_batch(self, doc):
        run = self.runs[doc["run_id"]]
        run["params"].update({p["key"]: p["value"] for p in doc.get("params", [])})
        run["metrics"] += [(m["key"], m["value"], m["step"]) for m in doc.get("metrics", [])]
        return 200, {}

    def _runs_update(self, doc):
        self.runs[doc["run_id"]]["status"] = doc["status"]
        return 200, {}


@pytest.fixture
def mlflow_server():
    server = TinyMlflow(expected=f"Bearer {SECRET}")
    yield server
    server.close()


def credentials_file(tmp_path, text: str):
    path = tmp_path / "mlflow-credentials"
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def job_spec(tracking: dict | None, epochs: int = 2) -> spec_pb2.JobSpec:
    doc = {"name": "xor-auth", "dataset": {"name": "xor", "num_samples": 64},
           "model": {"mlp": {"hidden": [8]}}, "training": {"epochs": epochs}}
    if tracking is not None:
        doc["tracking"] = tracking
    return check_spec(json_format.ParseDict(doc, spec_pb2.JobSpec()))


def run(tmp_path, spec, stack: StackTracking):
    ctx = JobContext(job_id="j-auth", spec=spec, redis_url=None, storage_dir=tmp_path,
                     tracking=stack)
    inner = ListReporter()
    with tracked(ctx, inner) as reporter:
        result = reporter.finished(train(spec, ctx.paths.root, reporter))
    return ctx, inner, result


# --- the credentials file ------------------------------------------------------------------

def test_a_token_is_a_bearer_and_a_user_and_password_basic_auth(tmp_path):
    assert credentials(credentials_file(tmp_path, f"MLFLOW_TRACKING_TOKEN={SECRET}\n")) == \
        f"Bearer {SECRET}"
    both = credentials(credentials_file(
        tmp_path, f"# the course server\nMLFLOW_TRACKING_USERNAME=alice\n"
                  f"export MLFLOW_TRACKING_PASSWORD='{SECRET}'\n"))
    assert both == "Basic " + base64.b64encode(f"alice:{SECRET}".encode()).decode()
    assert credentials("") == ""


@pytest.mark.parametrize("text", [f"TOKEN={SECRET}", f"MLFLOW_TRACKING_TOKEN {SECRET}",
                                  "MLFLOW_TRACKING_USERNAME=alice"])
def test_a_bad_credentials_file_is_refused_without_showing_its_values(tmp_path, text):
    with pytest.raises(MlflowError) as info:
        credentials(credentials_file(tmp_path, text + "\n"))
    assert SECRET not in str(info.value) and "mlflow-credentials" in str(info.value)


def test_a_missing_credentials_file_names_the_file(tmp_path):
    with pytest.raises(MlflowError, match="credentials file .*nothing-here"):
        credentials(str(tmp_path / "nothing-here"))


# --- a job on the stack's server -------------------------------------------------------------

def test_a_job_without_tracking_is_logged_to_the_stacks_server_with_its_credentials(
        tmp_path, mlflow_server, caplog):
    caplog.set_level(logging.DEBUG)
    stack = StackTracking(mlflow_uri=mlflow_server.uri, credentials_file=credentials_file(
        tmp_path, f"MLFLOW_TRACKING_TOKEN={SECRET}\n"))
    ctx, inner, result = run(tmp_path, job_spec(None), stack)
    assert result.status == "succeeded", inner.logs
    assert mlflow_server.headers and set(mlflow_server.headers) == {f"Bearer {SECRET}"}
    [run_doc] = mlflow_server.runs.values()
    assert run_doc["status"] == "FINISHED" and run_doc["name"] == "j-auth"
    assert {k for k, _, _ in run_doc["metrics"]} >= {"train_loss", "final/test_accuracy"}
    # Nowhere a user reads: the job's lines, the worker's logs, what goes to the record.
    readable = [text for _, text in inner.logs] + [caplog.text,
                                                   (ctx.paths.root / STATE_FILE).read_text()]
    assert any("MLflow: run" in text for text in readable)
    assert not any(SECRET in text for text in readable)
    assert SECRET.encode() not in pickle.dumps(ctx)  # the workers get the file's path only


def test_a_user_password_pair_is_sent_as_basic_auth(tmp_path):
    expected = "Basic " + base64.b64encode(f"alice:{SECRET}".encode()).decode()
    server = TinyMlflow(expected=expected)
    try:
        stack = StackTracking(mlflow_uri=server.uri, credentials_file=credentials_file(
            tmp_path, f"MLFLOW_TRACKING_USERNAME=alice\nMLFLOW_TRACKING_PASSWORD={SECRET}\n"))
        _, inner, result = run(tmp_path, job_spec({"mlflow": {"uri": server.uri}}), stack)
    finally:
        server.close()
    assert result.status == "succeeded" and not [t for lv, t in inner.logs if lv == "warning"]
    assert set(server.headers) == {expected}


def test_a_server_the_job_names_itself_never_gets_the_stacks_credentials(tmp_path,
                                                                        mlflow_server):
    other = TinyMlflow()
    try:
        stack = StackTracking(mlflow_uri=mlflow_server.uri, credentials_file=credentials_file(
            tmp_path, f"MLFLOW_TRACKING_TOKEN={SECRET}\n"))
        _, _, result = run(tmp_path, job_spec({"mlflow": {"uri": other.uri}}), stack)
    finally:
        other.close()
    assert result.status == "succeeded"
    assert other.headers and set(other.headers) == {None}
    assert not mlflow_server.headers


def test_refused_credentials_are_a_warning_that_does_not_show_them(tmp_path, mlflow_server,
                                                                   caplog):
    stack = StackTracking(mlflow_uri=mlflow_server.uri, credentials_file=credentials_file(
        tmp_path, "MLFLOW_TRACKING_TOKEN=wrong-" + SECRET + "\n"))
    _, inner, result = run(tmp_path, job_spec(None), stack)
    assert result.status == "succeeded"
    [warning] = [text for level, text in inner.logs if level == "warning"]
    assert "MLflow: not tracking this job" in warning and "401" in warning
    assert SECRET not in warning and SECRET not in caplog.text


def test_tracking_opted_out_sends_nothing(tmp_path, mlflow_server):
    stack = StackTracking(mlflow_uri=mlflow_server.uri, tensorboard=True)
    ctx, _, result = run(tmp_path, job_spec({}), stack)  # `tracking: {}`
    assert result.status == "succeeded" and not mlflow_server.headers
    assert not (ctx.paths.root / "tensorboard").exists()


# --- a search: a parent run, a nested run per trial; the plots as artifacts ----------------------

def test_a_searchs_trials_are_runs_nested_under_the_searchs_run(tmp_path, mlflow_server):
    from trainserve.runtime.tracking import search_target, tracking_target, trial_target
    from trainserve.training.results import TrainResult
    stack = StackTracking(mlflow_uri=mlflow_server.uri, tensorboard=True,
                          credentials_file=credentials_file(
                              tmp_path, f"MLFLOW_TRACKING_TOKEN={SECRET}\n"))
    spec = job_spec(None)
    spec.search.space["optimizer.lr"] = "grid([0.01, 0.1])"
    ctx = JobContext(job_id="j-search", spec=spec, redis_url=None, storage_dir=tmp_path,
                     tracking=stack)
    parent = search_target(ctx)
    assert not parent.tracking.tensorboard  # the trials have the event files
    with tracking_target(parent, ListReporter()) as search:
        for trial, lr in (("t1", 0.01), ("t2", 0.1)):
            trial_spec = job_spec(None)
            trial_spec.optimizer.lr = lr
            target = trial_target(ctx.paths.root, ctx.paths.root / "trials" / trial, trial,
                                  trial_spec, stack)
            with tracking_target(target, ListReporter()) as reporter:
                reporter.finished(train(trial_spec, target.folder, reporter))
        search.finished(TrainResult("succeeded", {"best_val_loss": 0.5}))
    runs = {r["name"]: (run_id, r) for run_id, r in mlflow_server.runs.items()}
    parent_id, parent_run = runs["j-search"]
    assert parent_run["status"] == "FINISHED"
    assert parent_run["params"]["search.space.optimizer.lr"] == "grid([0.01, 0.1])"
    assert ("final/best_val_loss", 0.5, 0) in parent_run["metrics"]
    for trial, lr in (("t1", "0.01"), ("t2", "0.1")):
        _, run_doc = runs[trial]
        assert run_doc["tags"]["mlflow.parentRunId"] == parent_id
        assert run_doc["tags"]["trainserve.trial_id"] == trial
        assert run_doc["params"]["optimizer.lr"] == lr and run_doc["status"] == "FINISHED"
        assert not any(k.startswith("search.") for k in run_doc["params"])
        assert (ctx.paths.root / "tensorboard" / trial).is_dir()
    assert set(mlflow_server.headers) == {f"Bearer {SECRET}"}


def test_the_plots_become_artifacts_of_the_run(tmp_path, mlflow_server):
    from trainserve.runtime.tracking import job_target, log_plots
    stack = StackTracking(mlflow_uri=mlflow_server.uri, credentials_file=credentials_file(
        tmp_path, f"MLFLOW_TRACKING_TOKEN={SECRET}\n"))
    run(tmp_path, job_spec(None), stack)
    [run_id] = mlflow_server.runs
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
    target = job_target("j-auth", job_spec(None), str(tmp_path), stack)
    assert log_plots(target, {"curves.png": png}, 2) == []
    assert mlflow_server.artifacts == {f"1/{run_id}/artifacts/plots/curves.png": png}


def test_a_trial_tune_stops_early_ends_killed_not_failed(tmp_path):
    from trainserve.runtime.tracking import tracking_target, trial_target
    server = TinyMlflow()
    try:
        spec = job_spec({"mlflow": {"uri": server.uri}})
        target = trial_target(tmp_path, tmp_path / "trials" / "t1", "t1", spec, None)
        with pytest.raises(SystemExit):
            with tracking_target(target, ListReporter()):
                raise SystemExit(0)  # what Tune's report() does in a trial it stops
    finally:
        server.close()
    [run_doc] = server.runs.values()
    assert run_doc["status"] == "KILLED"
