"""The `trainserve` command against the fake job API and fake OIP endpoint of
test_client_sdk.py: arguments, output (tables and JSON), exit codes, error lines."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.unit.test_client_sdk import FakeOip, fake_api, fake_oip  # noqa: F401 - fixtures
from trainserve.cli.main import app
from trainserve.core.pb import deployment_pb2, job_pb2, model_pb2, spec_pb2

XOR_YAML = """\
name: xor-mlp
dataset: {name: xor}
model: {mlp: {hidden: [8]}}
training: {epochs: 3}
"""


@pytest.fixture
def cli(fake_api, monkeypatch, tmp_path):  # noqa: F811
    """run(*args) -> result, against the fake API (via $TRAINSERVE_API)."""
    api, address = fake_api
    monkeypatch.setenv("TRAINSERVE_API", address)
    monkeypatch.setenv("TRAINSERVE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()

    def run(*args, input=None):
        return runner.invoke(app, [str(a) for a in args], input=input)
    run.api = api
    return run


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "xor.yaml"
    path.write_text(XOR_YAML)
    return path


def finish(api, job, state=job_pb2.JOB_STATE_SUCCEEDED, message=""):
    """Script a whole run for `job`: RUNNING, three epochs, then `state`."""
    api.add_event(job.id, state=job_pb2.StateChanged(state=job_pb2.JOB_STATE_RUNNING))
    for epoch in (1, 2, 3):
        api.add_event(job.id, epoch=job_pb2.EpochMetrics(
            epoch=epoch, total_epochs=3, elapsed_seconds=2.0 * epoch,
            metrics={"train_loss": 1.0 / epoch, "val_accuracy": 0.5 + epoch / 10}))
    api.add_event(job.id, log=job_pb2.LogLine(level="INFO", text="saved artifact"))
    api.add_event(job.id, state=job_pb2.StateChanged(state=state, message=message))
    job.state, job.message, job.epoch, job.total_epochs = state, message, 3, 3
    if state == job_pb2.JOB_STATE_SUCCEEDED:
        job.metrics.update({"test_accuracy": 1.0, "test_loss": 0.01})
        job.model_name, job.model_version = "xor-mlp", 1


def assert_error(result, code: int, text: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error:"), result.stderr
    assert text in result.stderr


# -- submit, watch --------------------------------------------------------------------------

def test_submit_prints_the_job(cli, spec_file):
    result = cli("submit", spec_file)
    assert result.exit_code == 0, result.output
    assert "submitted job j-1 (xor-mlp), queued" in result.stdout


def test_submit_json_and_request_id(cli, spec_file):
    result = cli("submit", spec_file, "--request-id", "abc", "-o", "json")
    doc = json.loads(result.stdout)
    assert doc["id"] == "j-1" and doc["request_id"] == "abc"
    assert doc["spec"]["model"]["mlp"]["hidden"] == [8]
    assert doc["state"] == "JOB_STATE_QUEUED"


def test_submit_from_stdin(cli):
    result = cli("submit", "-", input=XOR_YAML)
    assert result.exit_code == 0, result.output
    assert cli.api.jobs["j-1"].spec.training.epochs == 3


def test_submit_invalid_spec_exits_2_with_the_field_path(cli, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("dataset: {name: xor}\ntraining: {epochz: 3}\n")
    assert_error(cli("submit", path), 2, "spec.training.epochz")
    assert_error(cli("submit", tmp_path / "missing.yaml"), 2, "no such file")


def test_server_side_invalid_argument_exits_2(cli, tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("name: x\n")
    assert_error(cli("submit", path), 2, "spec.dataset.name: required")


def test_submit_wait_follows_the_job_and_reports_test_metrics(cli, spec_file):
    cli.api.on_submit = lambda job: finish(cli.api, job)
    result = cli("submit", spec_file, "--wait")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "epoch 1/3" in out and "epoch 3/3" in out
    assert "loss 0.3333" in out and "val_accuracy 0.8" in out and "ETA 4s" in out
    assert "saved artifact" in out
    assert "SUCCEEDED" in out and "test_accuracy" in out and "model xor-mlp:1" in out


@pytest.mark.parametrize("state", [job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELLED])
def test_submit_wait_exits_1_unless_the_job_succeeds(cli, spec_file, state):
    cli.api.on_submit = lambda job: finish(cli.api, job, state, "loss diverged")
    result = cli("submit", spec_file, "--wait")
    assert result.exit_code == 1
    assert "loss diverged" in result.stdout


def test_submit_wait_json_prints_the_final_job(cli, spec_file):
    cli.api.on_submit = lambda job: finish(cli.api, job)
    result = cli("submit", spec_file, "--wait", "-o", "json")
    assert json.loads(result.stdout)["state"] == "JOB_STATE_SUCCEEDED"


def test_watch(cli):
    job = cli.api.add_job("j-7")
    finish(cli.api, job, job_pb2.JOB_STATE_FAILED, "out of memory")
    result = cli("watch", "j-7")
    assert result.exit_code == 1
    assert "RUNNING" in result.stdout and "FAILED" in result.stdout
    assert "out of memory" in result.stdout
    assert_error(cli("watch", "nope"), 1, "not found")


# -- jobs, job, cancel ----------------------------------------------------------------------

def test_jobs_table_json_limit_and_state(cli):
    for i in range(5):
        job = cli.api.add_job(f"j-{i}", state=job_pb2.JOB_STATE_RUNNING if i == 3 else
                              job_pb2.JOB_STATE_QUEUED, epoch=2, total_epochs=10)
        job.metrics["val_accuracy"] = 0.75
    table = cli("jobs")
    assert table.exit_code == 0
    assert all(f"j-{i}" in table.stdout for i in range(5))
    assert "RUNNING" in table.stdout and "2/10" in table.stdout
    assert "val_accuracy 0.75" in table.stdout
    doc = json.loads(cli("jobs", "--limit", "2", "-o", "json").stdout)
    assert [j["id"] for j in doc["jobs"]] == ["j-0", "j-1"]
    running = cli("jobs", "--state", "running")
    assert "j-3" in running.stdout and "j-0" not in running.stdout
    assert_error(cli("jobs", "--state", "sleeping"), 2, "unknown job state")
    assert cli("jobs", "--state", "failed").stdout.strip() == "no jobs in state failed"


def test_job_detail(cli):
    job = cli.api.add_job("j-1")
    finish(cli.api, job)
    out = cli("job", "j-1").stdout
    for text in ("j-1", "SUCCEEDED", "xor-mlp:1", "test_accuracy", "3/3"):
        assert text in out
    assert json.loads(cli("job", "j-1", "-o", "json").stdout)["metrics"]["test_accuracy"] == 1.0
    assert_error(cli("job", "nope"), 1, "job 'nope' not found")


def test_cancel(cli):
    cli.api.add_job("j-1")
    result = cli("cancel", "j-1")
    assert result.exit_code == 0 and "job j-1: cancelled" in result.stdout
    cli.api.add_job("j-2", state=job_pb2.JOB_STATE_SUCCEEDED)
    assert_error(cli("cancel", "j-2"), 1, "already done")


# -- models, deployments --------------------------------------------------------------------

def add_model(api, version: int) -> None:
    mv = model_pb2.ModelVersion(
        name="xor-mlp", version=version, job_id=f"j-{version}", task="classification",
        class_names=["0", "1"], metrics={"test_accuracy": 0.5 + version / 10},
        spec=spec_pb2.JobSpec(model={"mlp": {}}),
        inputs=[model_pb2.TensorSpec(name="input", datatype="FP32", shape=[-1, 2])],
        preprocessing=model_pb2.Preprocessing(kind="none"))
    api.models.append(mv)


def test_models_and_model(cli):
    assert cli("models").stdout.strip() == "no models"
    add_model(cli.api, 1)
    add_model(cli.api, 2)
    table = cli("models").stdout
    assert "xor-mlp" in table and "mlp" in table and "test_accuracy 0.7" in table
    assert len(json.loads(cli("models", "xor-mlp", "-o", "json").stdout)["models"]) == 2
    latest = cli("model", "xor-mlp").stdout
    assert "xor-mlp:2" in latest and "input FP32 [-1, 2]" in latest
    assert "xor-mlp:1" in cli("model", "xor-mlp:1").stdout
    get = [r for name, r in cli.api.requests if name == "GetModel"]
    assert [(r.name, r.version) for r in get] == [("xor-mlp", 0), ("xor-mlp", 1)]
    assert_error(cli("model", "xor-mlp:latest"), 2, "version must be a positive number")
    assert_error(cli("model", "nope"), 1, "not found")


def test_deploy_waits_and_prints_the_endpoint(cli):
    ready = deployment_pb2.DEPLOYMENT_STATE_READY
    cli.api.deploy_states = [(deployment_pb2.DEPLOYMENT_STATE_PENDING, "loading"), (ready, "")]
    result = cli("deploy", "xor-mlp:2", "--name", "xor")
    assert result.exit_code == 0, result.output
    assert "endpoint xor → xor-mlp:2: READY" in result.stdout
    assert "http://127.0.0.1:8000/v2/models/xor" in result.stdout


def test_deploy_no_wait_json_and_failure(cli):
    doc = json.loads(cli("deploy", "xor-mlp", "--no-wait", "-o", "json").stdout)
    assert doc["name"] == "xor-mlp" and doc["state"] == "DEPLOYMENT_STATE_PENDING"
    cli.api.deploy_states = [(deployment_pb2.DEPLOYMENT_STATE_FAILED, "no such version")]
    assert_error(cli("deploy", "xor-mlp"), 1, "no such version")


def test_deployments_deployment_undeploy(cli):
    assert cli("deployments").stdout.strip() == "no deployments"
    cli("deploy", "xor-mlp", "--no-wait")
    assert "xor-mlp:1" in cli("deployments").stdout
    assert "PENDING" in cli("deployment", "xor-mlp").stdout
    assert json.loads(cli("deployments", "-o", "json").stdout)["deployments"][0]["name"] == \
        "xor-mlp"
    assert "endpoint xor-mlp removed" in cli("undeploy", "xor-mlp").stdout
    assert_error(cli("undeploy", "xor-mlp"), 1, "not found")


# -- predict --------------------------------------------------------------------------------

def sent_input():
    return FakeOip.requests[-1][1]["inputs"][0]


def test_predict_inline_json_is_reshaped_to_the_signature(cli, fake_oip):  # noqa: F811
    result = cli("predict", "adder", "--input", "[[1, 2, 3, 4], [0, 0, 0, 1]]",
                 "--http", fake_oip)
    assert result.exit_code == 0, result.output
    assert sent_input()["shape"] == [2, 1, 2, 2] and sent_input()["name"] == "x"
    lines = result.stdout.splitlines()
    assert "sum" in lines[0] and "label" in lines[0]
    assert any(line.split()[:3] == ["0", "│", "10"] for line in lines), result.stdout


def test_predict_files(cli, fake_oip, tmp_path):  # noqa: F811
    csv = tmp_path / "x.csv"
    csv.write_text("a,b,c,d\n1,2,3,4\n")
    npy = tmp_path / "x.npy"
    np.save(npy, np.ones((3, 4)))
    js = tmp_path / "x.json"
    js.write_text(json.dumps({"instances": [[1, 1, 1, 1]]}))
    for path, n in ((csv, 1), (npy, 3), (js, 1)):
        result = cli("predict", "adder", "-i", path, "--http", fake_oip)
        assert result.exit_code == 0, result.output
        assert sent_input()["shape"] == [n, 1, 2, 2]


def test_predict_oip_request_is_sent_as_is_and_json_output(cli, fake_oip):  # noqa: F811
    request = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                           "data": [1, 1, 1, 1]}]}
    result = cli("predict", "adder", "-i", json.dumps(request), "--http", fake_oip, "-o", "json")
    assert json.loads(result.stdout)["outputs"][0]["data"] == [4.0]
    assert sent_input()["shape"] == [1, 4]


def test_predict_finds_the_endpoint_through_the_api(cli, fake_oip):  # noqa: F811
    cli.api.deployments["adder"] = deployment_pb2.Deployment(
        name="adder", rest_url=f"http://{fake_oip}/v2/models/adder")
    result = cli("predict", "adder", "-i", "[[1, 1, 1, 1]]")
    assert result.exit_code == 0, result.output
    assert_error(cli("predict", "nope", "-i", "[[1]]"), 1, "deployment 'nope' not found")


def test_predict_bad_input(cli, fake_oip):  # noqa: F811
    assert_error(cli("predict", "adder", "-i", "nonsense", "--http", fake_oip), 2,
                 "neither a file nor JSON")
    assert_error(cli("predict", "adder", "-i", "[[1, 2", "--http", fake_oip), 2, "not valid JSON")
    assert_error(cli("predict", "broken", "-i", "[[1, 2, 3]]", "--http", fake_oip), 2,
                 "does not match")


# -- global options, errors -----------------------------------------------------------------

def test_unreachable_api_is_one_line_exit_1(monkeypatch, tmp_path):
    monkeypatch.setenv("TRAINSERVE_STATE_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["--api", "127.0.0.1:1", "jobs"])
    assert_error(result, 1, "cannot reach the trainserve API at 127.0.0.1:1")


def test_api_option_overrides_env(cli, fake_api, monkeypatch):  # noqa: F811
    _, address = fake_api
    monkeypatch.setenv("TRAINSERVE_API", "127.0.0.1:1")
    assert CliRunner().invoke(app, ["--api", address, "jobs"]).exit_code == 0


def test_help_and_usage_errors_are_typers(cli):
    assert cli("--help").exit_code == 0
    result = cli("jobs", "--limit", "0")
    assert result.exit_code == 2 and "internal error" not in result.output


def test_rollout_promote_and_rollback(cli):
    assert cli("deploy", "xor-mlp:1", "--name", "xor", "--no-wait").exit_code == 0
    result = cli("rollout", "xor", "--version", "2", "--percent", "25")
    assert result.exit_code == 0, result.output
    assert "25% to xor-mlp:2" in result.output
    shown = cli("deployment", "xor")
    assert "canary" in shown.output and "25%" in shown.output
    result = cli("promote", "xor")
    assert result.exit_code == 0 and "now serves xor-mlp:2" in result.output
    result = cli("rollback", "xor")
    assert result.exit_code != 0 and "no rollout in progress" in result.output
