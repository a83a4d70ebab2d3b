"""Serving an autoencoder: reconstruction in the caller's units and the latent code."""
import numpy as np

from trainserve.core.spec import parse_spec
from trainserve.serve.signature import io_specs
from trainserve.serve.predictor import Predictor
from trainserve.training.artifacts import build_meta
from trainserve.training.data import Preprocessing
from trainserve.training.datasets import dataset_info
from trainserve.training.validate import check_spec
from trainserve.training.zoo import build_model


def test_autoencoder_predictor_returns_reconstruction_and_latent():
    spec = check_spec(parse_spec({"dataset": {"name": "digits"},
                                  "model": {"autoencoder": {"latent_dim": 4}}}))
    info = dataset_info(spec.dataset)
    model = build_model(spec, _recon(info)).eval()
    pre = Preprocessing("standard", tuple([5.0] * 64), tuple([2.0] * 64))
    meta = build_meta(spec, _recon(info), pre, {}, "hash")
    meta["task"] = "reconstruction"
    predictor = Predictor(model, meta)
    x = np.random.default_rng(0).uniform(0, 16, (3, 1, 8, 8)).astype(np.float32)
    out = predictor.predict(x)
    assert out["reconstruction"].shape == (3, 1, 8, 8) and out["latent"].shape == (3, 4)
    import torch
    with torch.inference_mode():
        expect = model(torch.from_numpy((x - 5) / 2)).numpy() * 2 + 5
    np.testing.assert_allclose(out["reconstruction"], expect, rtol=1e-5, atol=1e-5)
    names = [o.name for o in io_specs({**meta, "latent_dim": 4})[1]]
    assert set(names) == set(out)


def _recon(info):
    import dataclasses
    return dataclasses.replace(info, task="reconstruction")
