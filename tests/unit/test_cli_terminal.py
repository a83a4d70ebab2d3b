"""The terminal as a user meets it: list tables that never cut an identifier or a state at 60,
80 or 100 columns (less important columns are dropped instead), the validation metrics in
`watch` and `job`, the labels of `model`, spec type errors with their field path, and output
piped into `head` (a real pipe, a real process)."""
from __future__ import annotations

import os
import subprocess
import sys
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from tests.unit.test_cli_commands import cli, finish, spec_file  # noqa: F401 - fixtures
from tests.unit.test_cli_search import search_job
from tests.unit.test_client_sdk import FakeApi, fake_api  # noqa: F401 - fixtures
from trainserve.core.pb import deployment_pb2, job_pb2, job_pb2_grpc, model_pb2, spec_pb2

# Ids as the server makes them (`j-` + 11 hex digits of ms + 8 of a sequence): 21 characters.
JOB_IDS = ["j-19af3c2b1d40000002a", "j-19af3c2b1d40000002b", "j-19af3c2b1e9000000c1"]
TRAINSERVE = Path(sys.executable).with_name("trainserve")


def add_listed_jobs(api) -> None:
    states = [job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_CANCELLED,
              job_pb2.JOB_STATE_QUEUED]
    for job_id, state in zip(JOB_IDS, states):
        job = api.add_job(job_id, state=state, epoch=20, total_epochs=20,
                          model_name="regularization-dropout", model_version=3,
                          message="waiting for resources: needs 2 CPUs, 1 free")
        job.spec.name = "regularization-dropout"
        job.metrics["test_accuracy"] = 0.9731


def lines_of(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("columns", [60, 80, 100])
def test_jobs_never_cut_an_id_a_name_or_a_state(cli, monkeypatch, columns):  # noqa: F811
    add_listed_jobs(cli.api)
    monkeypatch.setenv("COLUMNS", str(columns))
    result = cli("jobs")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for job_id in JOB_IDS:
        assert job_id in out
    for state in ("SUCCEEDED", "CANCELLED", "QUEUED"):
        assert state in out
    assert out.count("regularization-dropout ") >= 3
    assert "…" not in out.split("MESSAGE")[0]  # no header cut either
    assert max(len(line) for line in lines_of(out)) <= columns


def test_narrow_terminals_drop_the_less_important_columns_first(cli, monkeypatch):  # noqa: F811
    add_listed_jobs(cli.api)
    headers = {}
    for columns in (60, 100, 200):
        monkeypatch.setenv("COLUMNS", str(columns))
        headers[columns] = set(lines_of(cli("jobs").stdout)[0].split()) - {"┃"}
    assert {"JOB", "NAME", "STATE"} <= headers[60]
    assert "CREATED" not in headers[60] and "MODEL" not in headers[60]
    assert {"JOB", "NAME", "STATE", "MESSAGE"} <= headers[100]  # why it waits or failed
    assert headers[60] < headers[100] < headers[200]
    assert "CREATED" in headers[200] and "MESSAGE" in headers[200]


def test_a_pipe_gets_every_column(cli, monkeypatch):  # noqa: F811
    """Without $COLUMNS and not on a terminal (`trainserve jobs | grep`): nothing dropped."""
    add_listed_jobs(cli.api)
    monkeypatch.delenv("COLUMNS")
    header = [w for w in lines_of(cli("jobs").stdout)[0].split() if w != "┃"]
    assert header == ["JOB", "NAME", "STATE", "EPOCH", "METRIC", "MODEL", "CREATED", "MESSAGE"]


@pytest.mark.parametrize("columns", [60, 80, 100])
def test_deployments_and_models_never_cut_names(cli, monkeypatch, columns):  # noqa: F811
    name = "barsdi-regularization-endpoint"
    cli.api.deployments[name] = deployment_pb2.Deployment(
        name=name, model_name="regularization-dropout", model_version=12,
        state=deployment_pb2.DEPLOYMENT_STATE_READY,
        rest_url=f"http://127.0.0.1:8000/v2/models/{name}", grpc_target="127.0.0.1:9000")
    cli.api.models.append(model_pb2.ModelVersion(
        name="regularization-dropout", version=12, task="classification",
        job_id=JOB_IDS[0], metrics={"test_accuracy": 0.97}))
    monkeypatch.setenv("COLUMNS", str(columns))
    deployments, models = cli("deployments").stdout, cli("models").stdout
    assert name in deployments and "regularization-dropout:12" in deployments
    assert "READY" in deployments
    assert "regularization-dropout" in models and " 12 " in models
    for out in (deployments, models):
        assert "…" not in out
        # At 60 the endpoint, model and state alone need 68 columns: printed whole, wider.
        assert max(len(line) for line in lines_of(out)) <= max(columns, 68)


def test_ids_wider_than_the_terminal_are_printed_whole(cli, monkeypatch):  # noqa: F811
    add_listed_jobs(cli.api)
    monkeypatch.setenv("COLUMNS", "30")
    out = cli("jobs").stdout
    for job_id in JOB_IDS:
        assert job_id in out
    assert "SUCCEEDED" in out and "…" not in out


# -- validation metrics -------------------------------------------------------------------------

def _finish_with_val_loss(api, job):
    finish(api, job)
    for event in api.events[job.id]:
        if event.HasField("epoch"):
            event.epoch.metrics["val_loss"] = 0.5 / event.epoch.epoch


def test_watch_shows_val_loss_and_every_validation_metric(cli):  # noqa: F811
    job = cli.api.add_job("j-1")
    _finish_with_val_loss(cli.api, job)
    out = cli("watch", "j-1").stdout
    assert "epoch 3/3  loss 0.3333  val_loss 0.1667  val_accuracy 0.8" in out


def test_job_shows_validation_and_test_metrics(cli):  # noqa: F811
    job = cli.api.add_job("j-1")
    _finish_with_val_loss(cli.api, job)
    result = cli("job", "j-1")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "final metrics" in out and "test_accuracy" in out
    assert "last epoch (3)" in out
    assert "val_loss" in out and "0.1667" in out and "val_accuracy" in out


def test_a_finished_search_shows_no_epoch_count(cli):  # noqa: F811
    job = cli.api.add_job("j-1", state=job_pb2.JOB_STATE_SUCCEEDED)
    job.CopyFrom(search_job())
    job.epoch, job.total_epochs = 0, 20
    out = cli("job", "j-1").stdout
    assert "0/20" not in out
    assert "last epoch (2)" in out  # the best trial's
    jobs = cli("jobs").stdout
    assert "0/20" not in jobs


# -- model lineage labels -----------------------------------------------------------------------

def test_model_labels_the_arrays_hash_apart_from_the_files_sha256(cli):  # noqa: F811
    spec = spec_pb2.JobSpec(name="mine")
    spec.dataset.name = "my-csv"
    spec.dataset.uploaded.sha256 = "ab" * 32
    cli.api.models.append(model_pb2.ModelVersion(name="mine", version=1, spec=spec,
                                                 dataset_hash="cd" * 32))
    out = cli("model", "mine").stdout
    assert "dataset hash" not in out
    file_line = next(line for line in out.splitlines() if "ab" * 32 in line)
    arrays_line = next(line for line in out.splitlines() if "cd" * 32 in line)
    assert "dataset file sha256" in file_line
    assert "training arrays sha256" in arrays_line and "not a file" in arrays_line


# -- spec type errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("line, message", [
    ("model: {mlp: {hidden: 8}}", "spec.model.mlp.hidden: expected a list of integers, got 8"),
    ("model: {mlp: {hidden: [8, x]}}", "spec.model.mlp.hidden[1]: expected an integer, got 'x'"),
    ("training: {epochs: ten}", "spec.training.epochs: expected an integer, got 'ten'"),
    ("optimizer: {name: adam, lr: fast}", "spec.optimizer.lr: expected a number, got 'fast'"),
    ("scaling: {use_gpu: maybe}", "spec.scaling.use_gpu: expected true or false, got 'maybe'"),
    ("labels: [a, b]", "spec.labels: expected a mapping, got ['a', 'b']"),
    ("labels: {week: [3]}", 'spec.labels["week"]: expected a string, got [3]'),
    ("training: 5", "spec.training: expected a mapping, got 5"),
])
def test_wrong_types_name_their_field_path(cli, tmp_path, line, message):  # noqa: F811
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: bad\ndataset: {{name: xor}}\n{line}\n")
    result = cli("submit", path)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split())
    assert "Failed to parse" not in result.stderr
    assert cli.api.requests == []  # refused before any call


# -- output piped into head ---------------------------------------------------------------------

class ManyLines(FakeApi):
    def StreamLogs(self, request, context):
        for i in range(20_000):
            yield job_pb2.JobLogLine(id=f"{i}-0", rank=0, level="info", text=f"line {i}")


@pytest.fixture
def many_lines_api():
    api = ManyLines()
    api.add_job("j-1")
    for i in range(3000):
        api.add_job(f"j-{i + 2}")
    server = grpc.server(futures.ThreadPoolExecutor(4))
    job_pb2_grpc.add_JobServiceServicer_to_server(api, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


@pytest.mark.parametrize("command", ["logs j-1", "logs j-1 -o json", "jobs -n 3000",
                                     "jobs -n 3000 -o json"])
def test_piping_into_head_ends_quietly(many_lines_api, tmp_path, command):
    env = {**os.environ, "TRAINSERVE_API": many_lines_api,
           "TRAINSERVE_STATE_DIR": str(tmp_path)}
    env.pop("COLUMNS", None)
    run = subprocess.run(["bash", "-c", f"set -o pipefail; {TRAINSERVE} {command} | head -2"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    assert len(run.stdout.splitlines()) == 2


@pytest.mark.parametrize("columns", [60, 80])
def test_datasets_never_cut_names(monkeypatch, capsys, columns):
    from trainserve.cli import render
    from trainserve.cli.datasets import _table
    from trainserve.core.pb import dataset_pb2
    monkeypatch.setenv("COLUMNS", str(columns))
    ds = dataset_pb2.Dataset(name="icu-patients-2026-cohort", format="csv", num_rows=1200,
                             columns=["age", "sex", "lactate", "outcome"], size_bytes=48_213,
                             sha256="ab" * 32)
    render.emit(_table([ds]))
    out = capsys.readouterr().out
    assert "icu-patients-2026-cohort" in out and "…" not in out
    assert max(len(line) for line in lines_of(out)) <= columns



class NoCurves(FakeApi):
    """A server from before GetJobCurves."""

    def GetJobCurves(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")


def test_job_shows_the_final_metrics_from_a_server_without_curves(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from trainserve.cli.main import app
    api = NoCurves()
    finish(api, api.add_job("j-1"))
    server = grpc.server(futures.ThreadPoolExecutor(2))
    job_pb2_grpc.add_JobServiceServicer_to_server(api, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        monkeypatch.setenv("TRAINSERVE_STATE_DIR", str(tmp_path))
        result = CliRunner().invoke(app, ["--api", f"127.0.0.1:{port}", "job", "j-1"])
    finally:
        server.stop(None)
    assert result.exit_code == 0, result.output
    assert "final metrics" in result.stdout and "last epoch" not in result.stdout
