"""External validation on the real stack: a CNN trained on the built-in lesion phantoms is
evaluated through `trainserve evaluate MODEL@ALIAS --dataset NAME --wait` on an uploaded NPZ
from "another hospital's scanner" (another seed, more noise, more blur), with the training
job's final metrics (the clinical ones too) and plots; a dataset that does not fit the model is
refused with the field path; a second user can neither evaluate the first's model nor use the
first's dataset, nor see the evaluation."""
from __future__ import annotations

import math

import numpy as np
import pytest
from typer.testing import CliRunner

from trainserve.client import Client
from trainserve.core import errors
from trainserve.core.pb import auth_pb2, job_pb2
from trainserve.training.datasets.phantoms import write_npz

pytestmark = pytest.mark.integration

MODEL = "eval-lesions"
SPEC = {"name": MODEL, "dataset": {"name": "phantoms", "num_samples": 1200},
        "model": {"cnn": {"channels": [8, 16], "hidden": [32]}},
        "training": {"epochs": 8, "batch_size": 32},
        "optimizer": {"name": "adam", "lr": 0.003}}


@pytest.fixture(scope="module")
def users(stack):
    """{"alice": token, "bob": token}: two plain users of the stack's API."""
    with Client(stack.config.api_address, retry_for=0) as admin:
        return {u: admin.call_auth("CreateToken", auth_pb2.CreateTokenRequest(user=u)).token
                for u in ("eval-alice", "eval-bob")}


def _client(stack, token: str) -> Client:
    return Client(stack.config.api_address, retry_for=0, token=token)


@pytest.fixture(scope="module")
def alice(stack, users):
    with _client(stack, users["eval-alice"]) as c:
        yield c


@pytest.fixture(scope="module")
def trained(alice, tmp_path_factory):
    """Alice's phantom CNN (alias production) and her upload from another scanner."""
    job = alice.wait(alice.submit(SPEC).id, timeout=600)
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.message
    alice.set_model_alias(MODEL, "production", job.model_version)
    path = tmp_path_factory.mktemp("scanner") / "scanner_b.npz"
    write_npz(str(path), 400, 32, seed=7, noise=0.3, blur_px=0.8)
    alice.upload_dataset(path, "eval-scanner-b")
    return job


def test_the_cli_evaluates_a_model_on_another_scanner(stack, users, alice, trained):
    out = CliRunner().invoke(
        __import__("trainserve.cli.main", fromlist=["app"]).app,
        ["--api", stack.config.api_address, "--token", users["eval-alice"], "evaluate",
         f"{MODEL}@production", "--dataset", "eval-scanner-b", "--wait"],
        env={"TRAINSERVE_TOKEN": "", "COLUMNS": "120"})
    assert out.exit_code == 0, out.output
    assert f"({MODEL}:{trained.model_version} on eval-scanner-b)" in out.stdout
    [job] = alice.evaluations(MODEL, trained.model_version)
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED and job.model_version == 0
    assert job.message.startswith(f"evaluated {MODEL}:{trained.model_version} on "
                                  "eval-scanner-b: test_accuracy")
    m = job.metrics
    assert m["test_accuracy"] > 0.7, dict(m)        # balanced classes: chance is 0.5
    assert m["test_auc"] > 0.75, dict(m)
    for key in ("test_lesion_sensitivity", "test_lesion_specificity", "test_lesion_ppv",
                "test_normal_npv", "test_brier", "test_ece"):
        assert math.isfinite(m[key]), key
    assert m["test_lesion_tp"] + m["test_lesion_fn"] == 200  # every sample of the upload
    names = {a.name for a in alice.list_artifacts(job.id)}
    assert {"confusion_matrix.png", "roc_curve.png", "reliability.png",
            "metrics.json"} <= names, names
    compared = alice.compare([trained.id, job.id])     # column by column: test_* both
    assert len(compared.jobs) == 2
    # Nothing registered: the model still has its one version.
    assert [v.version for v in alice.list_models(MODEL)] == [trained.model_version]


def test_a_dataset_that_does_not_fit_the_model_is_refused(alice, trained, tmp_path):
    path = tmp_path / "big.npz"
    write_npz(str(path), 20, 64, seed=1, noise=0.2, blur_px=0.6)
    alice.upload_dataset(path, "eval-scanner-64")
    with pytest.raises(errors.InvalidArgument) as e:
        alice.evaluate(MODEL, "eval-scanner-64")
    assert e.value.field == "spec.evaluate.dataset"
    assert "[1, 64, 64]" in str(e.value) and "[1, 32, 32]" in str(e.value)
    np.savez(tmp_path / "labels.npz", x=np.zeros((4, 1, 32, 32), np.float32),
             y=np.array(["cyst", "normal", "cyst", "normal"]))
    alice.upload_dataset(tmp_path / "labels.npz", "eval-cysts")
    with pytest.raises(errors.InvalidArgument, match=r"\['cyst'\].*not classes"):
        alice.evaluate(MODEL, "eval-cysts")


def test_another_user_can_use_neither_the_model_nor_the_dataset(stack, users, alice,
                                                                trained):
    with _client(stack, users["eval-bob"]) as bob:
        with pytest.raises(errors.NotFound):
            bob.evaluate(f"{MODEL}@production", "eval-scanner-b")
        with pytest.raises(errors.NotFound):
            bob.evaluate(MODEL, "phantoms")
        own = bob.wait(bob.submit({"name": "eval-bob-xor", "dataset": {"name": "xor"},
                                   "model": {"mlp": {"hidden": [4]}},
                                   "training": {"epochs": 2}}).id, timeout=300)
        assert own.state == job_pb2.JOB_STATE_SUCCEEDED, own.message
        with pytest.raises(errors.NotFound, match="spec.evaluate.dataset"):
            bob.evaluate("eval-bob-xor", "eval-scanner-b")  # not "does not fit": unseen
        for job in alice.evaluations(MODEL, trained.model_version):
            with pytest.raises(errors.NotFound):
                bob.get_job(job.id)
