"""A job's plots, files and worker logs through the real stack: ListArtifacts, GetArtifact
(chunks, names checked against paths), StreamLogs (with and without follow), and the
`trainserve plot` / `trainserve logs` commands against the job API."""
from __future__ import annotations

import struct

import grpc
import pytest
from typer.testing import CliRunner

from tests.integration.helpers import rpc_error, submit, wait_job
from trainserve.cli.main import app
from trainserve.core.spec import parse_spec
from trainserve.core.pb import job_pb2

pytestmark = pytest.mark.integration

CLASSIFIER = {"name": "bc-files", "dataset": {"name": "breast_cancer"},
              "model": {"mlp": {"hidden": [8]}}, "training": {"epochs": 3}}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def classifier(stubs) -> job_pb2.Job:
    job = wait_job(stubs, submit(stubs, parse_spec(CLASSIFIER)).id, timeout=180)
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.message
    return job


@pytest.fixture
def cli(stack, monkeypatch):
    monkeypatch.setenv("TRAINSERVE_API", stack.config.api_address)
    monkeypatch.setenv("COLUMNS", "200")
    return lambda *args: CliRunner().invoke(app, [str(a) for a in args])


def get_artifact(stubs, job_id: str, name: str) -> list[job_pb2.ArtifactChunk]:
    return list(stubs.jobs.GetArtifact(job_pb2.GetArtifactRequest(job_id=job_id, name=name),
                                       timeout=60))


def assert_png(data: bytes) -> None:
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 200 and height > 150, (width, height)


def test_a_classifier_s_plots_are_listed_and_downloadable(stubs, classifier):
    listing = stubs.jobs.ListArtifacts(job_pb2.ListArtifactsRequest(job_id=classifier.id),
                                       timeout=60)
    infos = {a.name: a for a in listing.artifacts}
    assert {"curves.png", "confusion_matrix.png", "roc_curve.png", "metrics.json",
            "curves.csv"} <= set(infos), sorted(infos)
    chunks = get_artifact(stubs, classifier.id, "roc_curve.png")
    data = b"".join(c.data for c in chunks)
    assert chunks[0].info == infos["roc_curve.png"]
    assert len(data) == infos["roc_curve.png"].size_bytes
    assert chunks[0].info.content_type == "image/png"
    assert_png(data)
    assert b"test_accuracy" in b"".join(c.data for c in get_artifact(stubs, classifier.id,
                                                                       "metrics.json"))


@pytest.mark.parametrize("name", ["../result.json", "/etc/passwd", "artifact/meta.json",
                                  "a\x00.png", ".stamp"])
def test_artifact_names_that_are_paths_are_invalid_argument(stubs, classifier, name):
    err = rpc_error(get_artifact, stubs, classifier.id, name)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("name: "), err.details()


def test_unknown_jobs_and_names_are_not_found(stubs, classifier):
    for job_id, name in (("j-nope", "curves.png"), (classifier.id, "model.safetensors")):
        err = rpc_error(get_artifact, stubs, job_id, name)
        assert err.code() == grpc.StatusCode.NOT_FOUND, err.details()
    err = rpc_error(stubs.jobs.ListArtifacts, job_pb2.ListArtifactsRequest(job_id="j-nope"))
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_logs_show_the_training_with_the_rank(stubs, classifier):
    lines = list(stubs.jobs.StreamLogs(job_pb2.StreamLogsRequest(job_id=classifier.id),
                                       timeout=30))
    texts = [line.text for line in lines]
    assert any(t.startswith("training mlp on breast_cancer") for t in texts), texts
    assert any(t.startswith("epoch 3/3: ") and "val_loss=" in t for t in texts), texts
    assert {line.rank for line in lines} == {0}
    after = list(stubs.jobs.StreamLogs(job_pb2.StreamLogsRequest(
        job_id=classifier.id, after_id=lines[-2].id), timeout=30))
    assert [line.id for line in after] == [lines[-1].id]


def test_logs_follow_a_job_to_its_end(stubs, cli):
    spec = {"dataset": {"name": "xor"}, "model": {"mlp": {"hidden": [8]}},
            "training": {"epochs": 25}}
    job = submit(stubs, parse_spec(spec))
    result = cli("logs", job.id, "-f")
    assert result.exit_code == 0, result.output
    assert "[rank 0] epoch 25/25: " in result.stdout
    assert "training succeeded" in result.stdout.splitlines()[-1]
    assert wait_job(stubs, job.id, timeout=5).state == job_pb2.JOB_STATE_SUCCEEDED


def test_plot_command_downloads_the_server_s_plots(cli, classifier, tmp_path):
    result = cli("plot", classifier.id, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["confusion_matrix.png", "curves.png", "reliability.png", "roc_curve.png"]
    for path in tmp_path.iterdir():
        assert_png(path.read_bytes())
    assert str(tmp_path / "roc_curve.png") in result.stdout


def test_every_rank_s_lines_carry_the_rank(stubs):
    spec = {"dataset": {"name": "xor"}, "model": {"mlp": {"hidden": [8]}},
            "training": {"epochs": 2}, "scaling": {"num_workers": 2, "cpus_per_worker": 1}}
    job = wait_job(stubs, submit(stubs, parse_spec(spec)).id, timeout=180)
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.message
    lines = list(stubs.jobs.StreamLogs(job_pb2.StreamLogsRequest(job_id=job.id), timeout=30))
    for rank in (0, 1):
        assert any(line.rank == rank and line.text.endswith(f"rank {rank} of 2 on cpu")
                   for line in lines), [(line.rank, line.text) for line in lines]
    assert all(line.rank == 0 for line in lines if line.source == "progress")


def test_trainserve_tensorboard_fetches_runs_tensorboard_reads(stubs, cli, classifier, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from trainserve.client import Client

    job = wait_job(stubs, submit(stubs, parse_spec(
        {**CLASSIFIER, "name": "bc-tensorboard", "tracking": {"tensorboard": True}})).id)
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.message
    out = cli("tensorboard", job.id[:13], "--out", tmp_path / "runs")  # a short id
    assert out.exit_code == 0, out.output
    assert f"tensorboard --logdir {tmp_path / 'runs'}" in out.output
    acc = EventAccumulator(str(tmp_path / "runs" / job.id), size_guidance={"scalars": 0})
    acc.Reload()
    with Client() as client:  # the API and token the CLI used, from the environment
        curves = client.curves(job.id)["metrics"]
    assert curves and all(
        [(e.step, pytest.approx(e.value, rel=1e-6)) for e in acc.Scalars(name)] == points
        for name, points in curves.items())
    # A job that wrote no event files is refused with what its spec needs.
    out = cli("tensorboard", classifier.id, "--out", tmp_path / "none")
    assert out.exit_code != 0 and "tracking: {tensorboard: true}" in out.output
