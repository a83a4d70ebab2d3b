"""The generative examples make what their rows of examples/README.md promise, on the spec's
own seed: VAE and GAN samples that a digits classifier trained by the service
(cnn_digits.yaml) recognizes, and a sparse autoencoder whose code is sparse. The training loop
runs in-process, as in tests/test_examples.py. The README's numbers are made through the stack
by examples/measure.py (which reuses `vae_quality` and `gan_quality`); the same in-process, at
other seeds too: `.venv/bin/python -m tests.test_examples_generative 0 1 2`."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_examples import EXAMPLES, _train
from trainserve.core.spec import load_spec_file
from trainserve.serve.predictor import Predictor
from trainserve.training.artifacts import load_artifact
from trainserve.training.data import prepare_data
from trainserve.training.loop import train
from trainserve.training.reporting import NullReporter
from trainserve.training.task_hooks import code_sparsity
from trainserve.training.validate import check_spec

NUM_SAMPLES = 500
CONFIDENT = 0.8   # a sample is recognized when the classifier's top probability is >= this
DIGITS = 10


def _predictor(artifact_dir) -> Predictor:
    loaded = load_artifact(artifact_dir)
    return Predictor(loaded.module, loaded.meta)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Predictor:
    """The judge: cnn_digits.yaml as the service trains it (test accuracy 0.98)."""
    return _predictor(_train("cnn_digits", tmp_path_factory.mktemp("judge")).artifact_dir)


def _recognized(classifier: Predictor, samples: np.ndarray) -> tuple[float, int]:
    """For raw (un-normalized) samples: the fraction the classifier labels with confidence
    >= CONFIDENT, and how many digits are covered: labelled so in at least a quarter of a fair
    share of the samples (as `training.gan_task` counts modes)."""
    probs = classifier.predict(samples.astype(np.float32))["probabilities"]
    sure = probs.max(axis=1) >= CONFIDENT
    counts = np.bincount(probs.argmax(axis=1)[sure], minlength=DIGITS)
    return float(sure.mean()), int((counts >= len(samples) / DIGITS / 4).sum())


def _example(name: str, seed: int | None = None):
    spec = load_spec_file(EXAMPLES / f"{name}.yaml")
    if seed is not None:
        spec.training.seed = seed
    return spec


def _fit(spec, job_dir: Path):
    result = train(check_spec(spec), job_dir, NullReporter())
    assert result.status == "succeeded"
    return result


def vae_quality(classifier: Predictor, artifact_dir) -> dict:
    """How many of a trained VAE's samples the classifier recognizes, and how many digits."""
    vae = _predictor(artifact_dir)
    samples = vae.module.sample(NUM_SAMPLES, torch.Generator().manual_seed(0)).numpy()
    raw = samples * vae.scale + vae.shift  # the VAE's normalization undone
    fraction, digits = _recognized(classifier, raw)
    return {"recognized": fraction, "digits": digits}


def gan_quality(classifier: Predictor, artifact_dir) -> dict:
    """How many of a trained digits GAN's samples the classifier recognizes, and how many
    digits."""
    samples = _predictor(artifact_dir).generate(NUM_SAMPLES, seed=0)["samples"]
    assert samples.shape == (NUM_SAMPLES, 1, 8, 8)
    assert samples.min() >= 0 and samples.max() <= 16 + 1e-4  # sigmoid output, minmax units
    fraction, digits = _recognized(classifier, samples)
    return {"recognized": fraction, "digits": digits}


def _vae(classifier, tmp_path, seed=None) -> dict:
    result = _fit(_example("vae_digits", seed), tmp_path / "vae")
    return vae_quality(classifier, result.artifact_dir) | dict(result.metrics)


def _gan(classifier, tmp_path, seed=None) -> dict:
    result = _fit(_example("gan_digits", seed), tmp_path / "gan")
    return gan_quality(classifier, result.artifact_dir)


def _without_sparsity(spec):
    """The same net and code but kind "plain" (no sparsity penalty)."""
    for field in ("kind", "sparsity", "sparsity_weight"):
        spec.model.autoencoder.ClearField(field)
    return spec


def _sparse(tmp_path, seed=None) -> dict:
    name = "sparse_autoencoder_digits"
    sparse = _fit(_example(name, seed), tmp_path / "sparse")
    dense = _fit(_without_sparsity(_example(name, seed)), tmp_path / "dense").metrics
    dense8 = _fit(_example("autoencoder_digits", seed), tmp_path / "dense8").metrics
    # The reported metric is what the stored model's codes of the stored test split give.
    module = load_artifact(sparse.artifact_dir).module
    x_test = prepare_data(check_spec(_example(name, seed))).x_test
    with torch.no_grad():
        codes = module.encode(torch.from_numpy(x_test))
    assert sparse.metrics["test_code_sparsity"] == pytest.approx(code_sparsity(codes), abs=1e-6)
    return {"sparsity": sparse.metrics["test_code_sparsity"],
            "recon_mse": sparse.metrics["test_recon_mse"],
            "dense_sparsity": dense["test_code_sparsity"], "dense_recon_mse":
            dense["test_recon_mse"], "dense8_recon_mse": dense8["test_recon_mse"]}


def test_vae_samples_are_recognizable_digits(classifier, tmp_path):
    m = _vae(classifier, tmp_path)
    assert m["recognized"] >= 0.6, m


def test_gan_samples_are_recognizable_digits_of_most_classes(classifier, tmp_path):
    m = _gan(classifier, tmp_path)
    assert m["recognized"] >= 0.5 and m["digits"] >= 8, m


def test_sparse_autoencoder_code_is_sparse_and_fits_better_than_an_8_value_code(tmp_path):
    m = _sparse(tmp_path)
    assert m["sparsity"] >= m["dense_sparsity"] + 0.3, m
    # About as many active values per digit as the dense 8-value code, and a better fit.
    assert m["recon_mse"] < m["dense8_recon_mse"], m


def main(seeds: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        classifier = _predictor(_train("cnn_digits", root).artifact_dir)
        for seed in seeds:
            for name, measure in (("vae", lambda d: _vae(classifier, d, seed)),
                                  ("gan", lambda d: _gan(classifier, d, seed)),
                                  ("sparse", lambda d: _sparse(d, seed))):
                m = measure(root / f"{name}-{seed}")
                print(f"seed {seed} {name}: " + ", ".join(
                    f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in m.items() if not k.startswith(("val_", "train_"))), flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [0])
