"""The whole path on the real local stack: gRPC job API → Redis → dispatcher → Ray (fast path
and Ray Train DDP) → registry → Ray Serve, queried with standard OIP clients."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tritonclient.http as thttp

from tests.integration.helpers import deploy, example, get_model, submit, wait_job, watch
from trainserve.core.state import JobState
from trainserve.core.pb import deployment_pb2
from trainserve.training.splits import split_indices
from trainserve.training.datasets import load_dataset

pytestmark = pytest.mark.integration


def raw_test_split(spec):
    """The job's test set as raw (un-normalized) inputs, reproduced from its spec."""
    from trainserve.training.validate import check_spec

    spec = check_spec(spec)
    x, y = load_dataset(spec.dataset)
    _, _, test = split_indices(y, spec.split.test_fraction, spec.split.val_fraction,
                               spec.split.stratify, spec.training.seed)
    return x[test].astype(np.float32), y[test]


_GRPC_LABELS = r"""
import json, sys
import numpy as np
import tritonclient.grpc as g
x = np.asarray(json.loads(sys.stdin.read()), dtype=np.float32)
inp = g.InferInput("input", list(x.shape), "FP32")
inp.set_data_from_numpy(x)
r = g.InferenceServerClient(sys.argv[1]).infer(sys.argv[2], [inp],
                                              outputs=[g.InferRequestedOutput("label")])
print(json.dumps(r.as_numpy("label").tolist()))
"""


def oip_labels(stack, name, x, protocol):
    """Labels from a standard OIP client. tritonclient.grpc runs in a child process: its
    generated `inference.*` protobuf symbols clash with the server-side ones that other
    tests of this session import."""
    if protocol == "http":
        client = thttp.InferenceServerClient(stack.config.serve_http)
        inp = thttp.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        out = thttp.InferRequestedOutput("label")
        return client.infer(name, [inp], outputs=[out]).as_numpy("label")
    proc = subprocess.run([sys.executable, "-c", _GRPC_LABELS, stack.config.serve_grpc, name],
                          input=json.dumps(x.tolist()), text=True, capture_output=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return np.asarray(json.loads(proc.stdout))


@pytest.fixture(scope="module")
def xor_job(stubs):
    spec = example("xor_mlp")
    job = submit(stubs, spec)
    events = watch(stubs, job.id, timeout=180)
    return spec, wait_job(stubs, job.id), events


def test_xor_trains_on_the_fast_path_and_reports_every_epoch(xor_job):
    spec, job, events = xor_job
    assert JobState(job.state) == JobState.SUCCEEDED, job.message
    epochs = [e.epoch.epoch for e in events if e.HasField("epoch")]
    assert epochs == list(range(1, spec.training.epochs + 1))
    states = [JobState(e.state.state) for e in events if e.HasField("state")]
    assert states == [JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED]
    last = [e.epoch for e in events if e.HasField("epoch")][-1]
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy"} <= set(last.metrics)
    assert job.metrics["test_accuracy"] == 1.0


def test_late_watcher_gets_the_whole_history(stubs, xor_job):
    _, job, events = xor_job
    again = watch(stubs, job.id, timeout=30)
    assert [e.event_id for e in again] == [e.event_id for e in events]


def test_registered_model_has_lineage_and_loads_without_pickle(stubs, xor_job):
    spec, job, _ = xor_job
    mv = get_model(stubs, job.model_name, job.model_version)
    assert mv.job_id == job.id and mv.seed == spec.training.seed and mv.dataset_hash
    assert mv.task == "classification" and list(mv.inputs[0].shape) == [-1, 2]
    from trainserve.training.artifacts import load_artifact
    loaded = load_artifact(mv.artifact_uri)
    assert not loaded.module.training


def test_xor_deploys_and_answers_over_oip_rest_and_grpc(stack, stubs, xor_job):
    _, job, _ = xor_job
    dep = deploy(stubs, job.model_name, "xor")
    assert dep.state == deployment_pb2.DEPLOYMENT_STATE_READY, dep.message
    corners = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    for protocol in ("http", "grpc"):
        assert oip_labels(stack, "xor", corners, protocol).tolist() == [0, 1, 1, 0]


def test_digits_lenet5_ddp_reaches_97_percent_through_the_endpoint(stack, stubs):
    spec = example("digits_lenet5")
    assert spec.scaling.num_workers == 2
    job = wait_job(stubs, submit(stubs, spec).id, timeout=600)
    assert JobState(job.state) == JobState.SUCCEEDED, job.message
    assert job.metrics["test_accuracy"] >= 0.97
    assert job.deployment == "digits"
    dep = deploy(stubs, job.model_name, "digits", job.model_version)
    assert dep.state == deployment_pb2.DEPLOYMENT_STATE_READY, dep.message
    x, y = raw_test_split(spec)
    for protocol in ("http", "grpc"):
        labels = oip_labels(stack, "digits", x, protocol)
        assert (labels == y).mean() >= 0.97


def test_an_autoencoder_deploys_and_answers_reconstruction_and_latent(stack, stubs):
    spec = example("autoencoder_digits", name="ae-digits")
    job = wait_job(stubs, submit(stubs, spec).id, timeout=300)
    assert JobState(job.state) == JobState.SUCCEEDED, job.message
    assert "test_recon_mse" in job.metrics
    dep = deploy(stubs, job.model_name, "ae")
    assert dep.state == deployment_pb2.DEPLOYMENT_STATE_READY, dep.message
    x, _ = raw_test_split(spec)
    client = thttp.InferenceServerClient(stack.config.serve_http)
    inp = thttp.InferInput("input", list(x[:5].shape), "FP32")
    inp.set_data_from_numpy(x[:5])
    result = client.infer("ae", [inp])
    recon, latent = result.as_numpy("reconstruction"), result.as_numpy("latent")
    assert recon.shape == (5, 1, 8, 8) and latent.shape == (5, spec.model.autoencoder.latent_dim)
    # In the caller's units: pixel values 0..16, near the inputs.
    assert np.abs(recon - x[:5]).mean() < np.abs(x[:5] - x[:5].mean()).mean()
