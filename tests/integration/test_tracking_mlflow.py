"""spec.tracking through the real stack: a job's params, per-epoch metrics and final metrics in
a real `mlflow server` (read back with MLflow's own `MlflowClient`) and in TensorBoard event
files downloaded as the job's artifacts (read back with TensorBoard's own reader), holding the
numbers `trainserve job` and `client.curves` show; the job's plots as MLflow artifacts and
TensorBoard images; a search as a parent run with a nested run per trial, and a TensorBoard
run per trial.

MLflow pins versions of much of the scientific stack, so the server and the reading client run
from a virtualenv of their own, `.venv-mlflow/` (created here on first use); the workers need
no MLflow package (they speak its REST API)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from trainserve.client import Client
from trainserve.core.errors import InvalidArgument
from trainserve.core.pb import job_pb2
from trainserve.core.ports import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("MLFLOW_VENV") or ROOT / ".venv-mlflow")
MLFLOW_REQUIREMENT = "mlflow>=2.10"
EPOCHS = 5

READ_RUN = """
import json, sys
from mlflow.tracking import MlflowClient
client = MlflowClient(tracking_uri=sys.argv[1])
run = client.get_run(sys.argv[2])


def read(run):
    history = {k: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)]
               for k in run.data.metrics}
    return {"params": run.data.params, "metrics": run.data.metrics, "history": history,
            "status": run.info.status, "name": run.info.run_name,
            "experiment": client.get_experiment(run.info.experiment_id).name,
            "tags": run.data.tags,
            "plots": [a.path for a in client.list_artifacts(run.info.run_id, "plots")]}


children = client.search_runs(
    [run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
print(json.dumps(read(run) | {"children": [read(child) for child in children]}))
"""


def ensure_mlflow() -> Path:
    """`.venv-mlflow/bin/python`, the virtualenv made (Python's own venv, pip) if missing."""
    python = VENV / "bin" / "python"
    if not (VENV / "bin" / "mlflow").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", MLFLOW_REQUIREMENT],
                       check=True, timeout=1200)
    return python


@pytest.fixture(scope="module")
def mlflow_server():
    """A real MLflow tracking server (sqlite backend, artifacts in a temporary folder) on a
    free loopback port; yields its address."""
    python = ensure_mlflow()
    root = Path(tempfile.mkdtemp(prefix="ts-mlflow-"))
    port = free_port()
    log = open(root / "server.log", "wb")
    proc = subprocess.Popen(
        [str(VENV / "bin" / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
         "--artifacts-destination", str(root / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(uri, proc, root / "server.log")
        _warm(python, uri)
        yield uri, python
    finally:  # the server's own session: its web workers go with it
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def _wait_healthy(uri: str, proc, log: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"mlflow server not healthy after {timeout} s: "
                       + log.read_text()[-3000:])


def _warm(python: Path, uri: str) -> None:
    """One query with MLflow's client, so the server's first (slow) requests are not the
    job's on a loaded test machine."""
    subprocess.run([str(python), "-c", "import sys; from mlflow.tracking import MlflowClient; "
                    "MlflowClient(sys.argv[1]).search_experiments()", uri],
                   check=True, capture_output=True, timeout=120)


def read_run(python: Path, uri: str, run_id: str) -> dict:
    out = subprocess.run([str(python), "-c", READ_RUN, uri, run_id], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def png_artifacts(client, job_id: str) -> set[str]:
    return {a.name for a in client.list_artifacts(job_id) if a.name.endswith(".png")}


def log_lines(client, job_id: str) -> list[str]:
    return [str(e) for e in client.watch(job_id) if e.kind == "log"]


def spec(tracking: dict, name: str) -> dict:
    return {"name": name, "dataset": {"name": "xor", "num_samples": 128},
            "model": {"mlp": {"hidden": [8]}}, "optimizer": {"lr": 0.05},
            "training": {"epochs": EPOCHS}, "tracking": tracking}


@pytest.fixture(scope="module")
def client(stack):
    with Client(stack.config.api_address) as c:
        yield c


@pytest.fixture(scope="module")
def tracked_job(client, mlflow_server):
    uri, _ = mlflow_server
    job = client.submit(spec({"tensorboard": True,
                              "mlflow": {"uri": uri, "experiment": "xor week 1"}},
                             "xor-tracked"))
    job = client.wait(job.id, timeout=300)
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.message
    return job


def test_the_mlflow_run_holds_the_jobs_params_curves_final_metrics_and_plots(
        client, tracked_job, mlflow_server):
    uri, python = mlflow_server
    job = client.get_job(tracked_job.id)
    assert job.tracking["mlflow_uri"] == uri, log_lines(client, job.id)
    run = read_run(python, uri, job.tracking["mlflow_run_id"])
    assert run["status"] == "FINISHED" and run["name"] == job.id
    assert run["experiment"] == "xor week 1"
    assert run["tags"]["trainserve.job_id"] == job.id
    assert run["params"]["optimizer.lr"] == "0.05"
    assert run["params"]["training.epochs"] == str(EPOCHS)
    assert run["params"]["model.mlp.hidden"] == "[8]"
    curves = client.curves(job.id)["metrics"]
    assert {"train_loss", "val_loss", "val_accuracy", "lr"} <= set(curves)
    for name, points in curves.items():
        assert [(s, pytest.approx(v, rel=1e-9)) for s, v in run["history"][name]] == points
    for name, value in job.metrics.items():  # what `trainserve job` shows
        assert run["history"][f"final/{name}"] == [[EPOCHS, pytest.approx(value, rel=1e-9)]]
    plots = png_artifacts(client, job.id)  # the job's plots, among the run's artifacts
    assert {"curves.png", "confusion_matrix.png"} <= plots
    assert {p.removeprefix("plots/") for p in run["plots"]} == plots


def test_the_tensorboard_event_files_are_artifacts_holding_the_curves(
        client, tracked_job, tmp_path):
    names = [a.name for a in client.list_artifacts(tracked_job.id)]
    events = [n for n in names if n.startswith("events.out.tfevents.")]
    assert events, names
    for name in events:
        client.download_artifact(tracked_job.id, name, tmp_path)
    acc = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0})
    acc.Reload()
    for name, points in client.curves(tracked_job.id)["metrics"].items():
        assert [(e.step, pytest.approx(e.value, rel=1e-6)) for e in acc.Scalars(name)] == points
    job = client.get_job(tracked_job.id)
    for name, value in job.metrics.items():
        [point] = acc.Scalars(f"final/{name}")
        assert (point.step, point.value) == (EPOCHS, pytest.approx(value, rel=1e-6))
    # The job's plots, as images at the last epoch.
    images = {tag.removeprefix("plots/") + ".png" for tag in acc.Tags()["images"]}
    assert images == png_artifacts(client, tracked_job.id)
    assert all(e.step == EPOCHS for tag in acc.Tags()["images"] for e in acc.Images(tag))


LRS = (0.01, 0.1)


@pytest.fixture(scope="module")
def tracked_search(client, mlflow_server):
    uri, _ = mlflow_server
    doc = spec({"tensorboard": True, "mlflow": {"uri": uri, "experiment": "xor search"}},
               "xor-tracked-search")
    doc["training"]["epochs"] = 2
    doc["search"] = {"space": {"optimizer.lr": f"grid({list(LRS)})"}, "num_samples": 1,
                     "metric": "val_loss", "mode": "min", "trial_resources": {"cpus": 0.5}}
    job = client.wait(client.submit(doc).id, timeout=300)
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.message
    return job


def test_a_searchs_trials_are_mlflow_runs_nested_under_the_searchs(
        client, tracked_search, mlflow_server):
    uri, python = mlflow_server
    job = client.get_job(tracked_search.id)
    search = read_run(python, uri, job.tracking["mlflow_run_id"])
    assert search["status"] == "FINISHED" and search["name"] == job.id
    assert search["params"]["search.space.optimizer.lr"] == f"grid({list(LRS)})"
    assert "plots/trials_curves.png" in search["plots"]  # the search's own plots
    trials = {t.id: t for t in client.get_job(job.id).trials}
    children = {child["tags"]["trainserve.trial_id"]: child for child in search["children"]}
    assert set(children) == set(trials)
    assert sorted(float(c["params"]["optimizer.lr"]) for c in children.values()) == list(LRS)
    for trial_id, child in children.items():
        assert child["status"] == "FINISHED" and child["name"] == trial_id
        curve = [(p.epoch, p.metrics["val_loss"]) for p in trials[trial_id].curve]
        assert [(s, pytest.approx(v, rel=1e-9)) for s, v in child["history"]["val_loss"]] \
            == curve


def test_a_searchs_trials_are_tensorboard_runs_of_their_own(client, tracked_search, tmp_path):
    trials = {t.id: t for t in client.get_job(tracked_search.id).trials}
    for artifact in client.list_artifacts(tracked_search.id):
        name = artifact.name
        if name.startswith("events.out.tfevents.") and name.rsplit(".", 2)[-2] in trials:
            # one folder per trial, as TensorBoard's --logdir wants runs
            client.download_artifact(tracked_search.id, name, tmp_path / name.rsplit(".", 2)[-2])
    assert {p.name for p in tmp_path.iterdir()} == set(trials)
    for trial_id, trial in trials.items():
        acc = EventAccumulator(str(tmp_path / trial_id), size_guidance={"scalars": 0})
        acc.Reload()
        assert [(e.step, pytest.approx(e.value, rel=1e-6)) for e in acc.Scalars("val_loss")] \
            == [(p.epoch, p.metrics["val_loss"]) for p in trial.curve]


def test_an_unreachable_tracker_is_a_warning_not_a_failure(client):
    dead = f"http://127.0.0.1:{free_port()}"
    job = client.wait(client.submit(spec({"mlflow": {"uri": dead}}, "xor-untracked")).id,
                      timeout=300)
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.message
    assert not job.tracking
    warnings = [e for e in client.watch(job.id)
                if e.kind == "log" and e.raw.log.level == "warning"]
    assert any("MLflow: not tracking this job" in e.text for e in warnings), warnings


@pytest.mark.parametrize("uri", ["file:///tmp/mlruns", "/srv/mlruns", "http://u:p@h:5000"])
def test_the_api_refuses_an_address_the_worker_must_not_use(client, uri):
    with pytest.raises(InvalidArgument) as info:
        client.submit(spec({"mlflow": {"uri": uri}}, "xor-refused"))
    assert "spec.tracking.mlflow.uri" in str(info.value)
