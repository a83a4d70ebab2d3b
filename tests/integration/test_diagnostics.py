"""Looking inside networks through the real stack (gRPC, Redis, dispatcher, Ray): a small
sigmoid MLP on moons with `training.diagnostics` reports per-layer gradient norms and
activation statistics as per-epoch curves (`Client.curves`), and its artifacts hold the
gradient, activation and decision-boundary plots; a LeNet-5 gets its filters and feature maps.
Another user sees none of it; a bad diagnostics field is refused with its path."""
from __future__ import annotations

import struct

import grpc
import pytest

from tests.integration.helpers import example, rpc_error, wait_job
from trainserve.client import Client
from trainserve.core.pb import job_pb2
from trainserve.core.spec import parse_spec

pytestmark = pytest.mark.integration

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DEEP = {"dataset": {"name": "moons", "num_samples": 300, "noise": 0.2},
        "model": {"mlp": {"hidden": [8, 8, 8], "activation": "sigmoid"}},
        "training": {"epochs": 3,
                     "diagnostics": {"gradients": True, "activations": True}}}


@pytest.fixture(scope="module")
def jobs(people):
    """Alice's finished diagnostic MLP and LeNet-5 jobs."""
    alice, _, _ = people
    submitted = [alice.submit(parse_spec(DEEP | {"name": "inside-moons"})),
                 alice.submit(example("lenet5_digits", name="inside-lenet",
                                      training={"epochs": 1}))]
    done = [wait_job(alice, job.id, timeout=300) for job in submitted]
    assert all(j.state == job_pb2.JOB_STATE_SUCCEEDED for j in done), [j.message for j in done]
    return done


def assert_png(data: bytes) -> None:
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 200 and height > 100, (width, height)


def test_the_statistics_are_per_epoch_curves(stack, people, jobs):
    alice, _, _ = people
    with Client(stack.config.api_address, token=alice.token) as sdk:
        curves = sdk.curves(jobs[0].id)["metrics"]
    layers = ("01_fc1", "02_fc2", "03_fc3", "04_out")
    for layer in layers:
        points = curves[f"grad_norm/{layer}"]
        assert [e for e, _ in points] == [1, 2, 3] and all(v > 0 for _, v in points)
    for stat in ("act_mean", "act_std", "act_saturated"):
        assert {k for k in curves if k.startswith(stat + "/")} == \
            {f"{stat}/0{i}_act{i}" for i in (1, 2, 3)}
    # Sigmoid layers pass back at most a quarter of the gradient: the first is the smallest.
    assert curves["grad_norm/01_fc1"][0][1] < curves["grad_norm/04_out"][0][1]


def test_the_plots_are_artifacts(stack, people, jobs, tmp_path):
    alice, _, _ = people
    with Client(stack.config.api_address, token=alice.token) as sdk:
        moons = {a.name for a in sdk.list_artifacts(jobs[0].id)}
        lenet = {a.name for a in sdk.list_artifacts(jobs[1].id)}
        assert {"curves.png", "gradient_norms.png", "activations.png",
                "decision_boundary.png"} <= moons, sorted(moons)
        assert {"conv_filters.png", "feature_maps.png"} <= lenet, sorted(lenet)
        assert "gradient_norms.png" not in lenet and "decision_boundary.png" not in lenet
        for job, name in ((jobs[0], "gradient_norms.png"), (jobs[0], "activations.png"),
                          (jobs[0], "decision_boundary.png"), (jobs[1], "conv_filters.png"),
                          (jobs[1], "feature_maps.png")):
            assert_png(sdk.download_artifact(job.id, name, tmp_path / job.id).read_bytes())


def test_another_user_sees_none_of_it(people, jobs):
    _, bob, _ = people
    for call, request in ((bob.jobs.GetJobCurves, job_pb2.GetJobCurvesRequest),
                          (bob.jobs.ListArtifacts, job_pb2.ListArtifactsRequest)):
        err = rpc_error(call, request(job_id=jobs[0].id), timeout=30)
        assert err.code() == grpc.StatusCode.NOT_FOUND
    err = rpc_error(lambda: list(bob.jobs.GetArtifact(job_pb2.GetArtifactRequest(
        job_id=jobs[0].id, name="gradient_norms.png"), timeout=30)))
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_a_bad_diagnostics_field_is_invalid_argument_with_its_path(people):
    alice, _, _ = people
    spec = parse_spec(DEEP | {"training": {"diagnostics": {"max_layers": 99}}})
    err = rpc_error(alice.submit, spec)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("spec.training.diagnostics.max_layers"), err.details()
