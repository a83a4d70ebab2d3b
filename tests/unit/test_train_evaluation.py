"""What a training run saves for its plots (`<job>/evaluation.npz`, training.evaluation): plain
arrays that load without pickle, in the dataset's units, and the plots drawn from them."""
from __future__ import annotations

import numpy as np
import pytest

from tests.unit.test_plots import assert_png
from trainserve.jobs import plots
from trainserve.core.spec import parse_spec
from trainserve.training.data import Preprocessing
from trainserve.training.evaluation import EVALUATION_FILE, denormalize
from trainserve.training.loop import train
from trainserve.training.reporting import ListReporter
from trainserve.training.validate import check_spec


def run(tmp_path, doc: dict):
    result = train(check_spec(parse_spec(doc | {"training": {"epochs": 2, "seed": 3}})),
                   tmp_path, ListReporter())
    assert result.status == "succeeded"
    return plots.load_evaluation(tmp_path / EVALUATION_FILE)


def test_binary_classifier_saves_test_probabilities(tmp_path):
    arrays = run(tmp_path, {"dataset": {"name": "breast_cancer"},
                            "model": {"mlp": {"hidden": [8]}}})
    assert str(arrays["kind"]) == "classification"
    prob, y = arrays["probabilities"], arrays["y_true"]
    assert prob.shape == (len(y), 2) and np.allclose(prob.sum(axis=1), 1, atol=1e-5)
    assert list(arrays["class_names"]) == ["malignant", "benign"]
    # The same confusion matrix as the one the run put into its artifact.
    import json
    meta = json.loads((tmp_path / "artifact" / "meta.json").read_text())
    cm = plots.confusion_counts(y, prob.argmax(axis=1), 2)
    assert cm.tolist() == meta["confusion_matrix"]
    names = [p.name for p in plots.evaluation_plots(arrays, tmp_path / "png")]
    assert names == [plots.CONFUSION, plots.ROC, plots.RELIABILITY]


def test_vae_saves_reconstructions_and_seeded_samples_in_data_units(tmp_path):
    doc = {"dataset": {"name": "digits"},
           "model": {"autoencoder": {"kind": "variational", "latent_dim": 2, "hidden": [16]}}}
    arrays = run(tmp_path / "a", doc)
    assert arrays["originals"].shape == (8, 1, 8, 8) == arrays["reconstructions"].shape
    assert arrays["originals"].min() > -1e-3 and arrays["originals"].max() > 8  # pixel units
    again = run(tmp_path / "b", doc)
    assert np.array_equal(arrays["samples"], again["samples"])  # the job's seed fixes them
    for path in plots.evaluation_plots(arrays, tmp_path / "png"):
        assert_png(path)


def test_gan_on_2d_data_saves_points_and_the_real_ones(tmp_path):
    arrays = run(tmp_path, {"dataset": {"name": "rings", "noise": 0.05},
                            "model": {"gan": {"latent_dim": 4}}})
    assert arrays["samples"].shape == (1000, 2)
    assert arrays["real"].shape[1] == 2 and len(arrays["real_labels"]) == len(arrays["real"])


def test_denormalize_undoes_the_preprocessing():
    x = np.random.default_rng(0).normal(size=(5, 2, 3, 3)).astype(np.float32)
    for shift, scale in [((1.0,), (2.0,)), ((1.0, -1.0), (2.0, 0.5)),
                         (tuple(range(18)), tuple(1.0 + i for i in range(18)))]:
        pre = Preprocessing("standard", shift, scale)
        if len(shift) != 2:  # Preprocessing.apply knows one statistic per value or one for all
            assert denormalize(pre.apply(x), pre) == pytest.approx(x, abs=1e-5)
        else:
            out = denormalize(x, pre)
            assert out[:, 1] == pytest.approx(x[:, 1] * 0.5 - 1.0)
