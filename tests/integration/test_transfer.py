"""Transfer learning through the service: a registered autoencoder named in a classifier's
`model.transfer` is pinned at submission and its encoder initializes the classifier."""
from __future__ import annotations

import grpc
import pytest

from tests.integration.helpers import example, get_model, rpc_error, submit, wait_job, watch
from trainserve.core.state import JobState

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pretrained(stubs):
    spec = example("autoencoder_digits_pretrain", training={"epochs": 10})
    job = wait_job(stubs, submit(stubs, spec).id, timeout=300)
    assert JobState(job.state) == JobState.SUCCEEDED, job.message
    return get_model(stubs, job.model_name, job.model_version)


def test_a_classifier_starts_from_a_registered_encoder_by_name(stubs, pretrained):
    # A short run: with the example's 2 % of the labels three epochs are a handful of steps.
    spec = example("transfer_from_autoencoder", dataset={"label_fraction": 0.1},
                   training={"epochs": 3})
    assert spec.model.transfer.model == pretrained.name
    job = submit(stubs, spec)
    assert job.spec.model.transfer.artifact_path == pretrained.artifact_uri  # pinned
    assert job.spec.model.transfer.version == 0
    logs = [e.log.text for e in watch(stubs, job.id, timeout=300) if e.HasField("log")]
    done = wait_job(stubs, job.id)
    assert JobState(done.state) == JobState.SUCCEEDED, done.message
    assert any("fc1.weight" in line for line in logs), logs
    assert done.metrics["test_accuracy"] > 0.5


def test_unknown_or_mismatched_sources_are_refused(stubs, pretrained):
    err = rpc_error(submit, stubs, example("transfer_from_autoencoder",
                                           model={"transfer": {"model": "no-such-model"}}))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "spec.model.transfer.model" in err.details()
    # The encoder's first layer is 256 wide; a 128-wide fc1 cannot take it.
    spec = example("transfer_from_autoencoder")
    del spec.model.mlp.hidden[:]
    spec.model.mlp.hidden.append(128)
    err = rpc_error(submit, stubs, spec)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert "spec.model.transfer" in err.details()
