"""Uploaded images end to end on the real stack: an NPZ of lesion phantoms `x` (N, 1, 32, 32)
float32 with text labels is uploaded, a CNN trains on it, is deployed and answers raw images
over OIP; an NPZ of images without the channel axis (N, H, W) is read as sequences, and a
CNN on it is refused with the advice to add the axis."""
from __future__ import annotations

import numpy as np
import pytest

from trainserve.client import Client
from trainserve.core import errors
from trainserve.core.pb import job_pb2
from trainserve.training.datasets.phantoms import make_phantoms, write_npz

pytestmark = pytest.mark.integration

CNN = {"cnn": {"channels": [8, 16], "hidden": [32]}}


@pytest.fixture(scope="module")
def sdk(stack):
    with Client(stack.config.api_address, retry_for=0) as c:
        yield c


def test_an_uploaded_image_npz_trains_a_cnn_that_is_served(sdk, stack, tmp_path):
    path = tmp_path / "phantoms.npz"
    write_npz(str(path), 1200, 32, seed=3, noise=0.2, blur_px=0.6)
    ds = sdk.upload_dataset(path, "npz-phantoms")
    assert list(ds.schema.x.shape) == [1200, 1, 32, 32] and ds.schema.x.dtype == "<f4"
    assert sorted(ds.schema.y.classes) == ["lesion", "normal"]
    job = sdk.wait(sdk.submit({
        "name": "npz-lesions", "dataset": {"name": "npz-phantoms"}, "model": CNN,
        "training": {"epochs": 8, "batch_size": 32},
        "optimizer": {"name": "adam", "lr": 0.003}}).id, timeout=600)
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.message
    assert job.metrics["test_accuracy"] > 0.7, dict(job.metrics)
    mv = sdk.get_model("npz-lesions", job.model_version)
    assert list(mv.inputs[0].shape) == [-1, 1, 32, 32]
    sdk.deploy("npz-lesions", job.model_version, name="npz-lesions", timeout=180)
    try:
        x, y = make_phantoms(64, 32, seed=11)          # unseen images, raw intensities
        out = sdk.predict("npz-lesions", x, http=stack.config.serve_http)
        assert out["probabilities"].shape == (64, 2)
        np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1, rtol=1e-5)
        truth = np.array(["normal", "lesion"])[y]
        assert (out["class_name"].astype(str) == truth).mean() > 0.7
    finally:
        sdk.undeploy("npz-lesions")


def test_images_without_a_channel_axis_are_sequences(sdk, tmp_path):
    path = tmp_path / "flat.npz"
    write_npz(str(path), 40, 32, seed=4, noise=0.2, blur_px=0.6, channel_axis=False)
    ds = sdk.upload_dataset(path, "npz-phantoms-flat")
    assert list(ds.schema.x.shape) == [40, 32, 32]
    with pytest.raises(errors.InvalidArgument) as e:
        sdk.submit({"name": "npz-flat", "dataset": {"name": "npz-phantoms-flat"},
                    "model": CNN})
    assert e.value.field == "spec.model.cnn"
    assert "sequence input of shape [32, 32]" in str(e.value)
    assert "x[:, None], [N, 1, H, W]" in str(e.value)
