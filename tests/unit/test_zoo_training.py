"""Short trainings through the real loop: the perceptron cannot fit XOR while an MLP does,
an RNN forecasts sine sums better than repeating the last value, and an RBF network trains."""
import numpy as np
import pytest
from google.protobuf import json_format

from trainserve.core.pb import spec_pb2
from trainserve.training.splits import split_indices
from trainserve.training.datasets import load_dataset
from trainserve.training.loop import train
from trainserve.training.reporting import NullReporter
from trainserve.training.validate import check_spec

XOR = {"name": "xor", "normalize": "none"}


def _train(tmp_path, d: dict):
    spec = check_spec(json_format.ParseDict(d, spec_pb2.JobSpec()))
    result = train(spec, tmp_path, NullReporter())
    assert result.status == "succeeded"
    return spec, result.metrics


@pytest.mark.parametrize("optimizer", [{"name": "perceptron"}, {"name": "adam", "lr": 0.05}])
def test_perceptron_cannot_fit_xor(tmp_path, optimizer):
    _, metrics = _train(tmp_path, {"dataset": XOR, "split": {"test_fraction": 0.25},
                                   "model": {"perceptron": {}}, "optimizer": optimizer,
                                   "training": {"epochs": 20, "batch_size": 16}})
    assert metrics["test_accuracy"] <= 0.75


def test_mlp_fits_xor(tmp_path):
    _, metrics = _train(tmp_path, {"dataset": XOR, "split": {"test_fraction": 0.25},
                                   "model": {"mlp": {"hidden": [8], "activation": "tanh"}},
                                   "optimizer": {"lr": 0.05},
                                   "training": {"epochs": 30, "batch_size": 16}})
    assert metrics["test_accuracy"] == 1.0


def test_lstm_beats_the_naive_forecast(tmp_path):
    spec, metrics = _train(tmp_path, {
        "dataset": {"name": "sine", "num_samples": 600, "noise": 0.05},
        "model": {"rnn": {"hidden_size": 24}}, "optimizer": {"lr": 0.01},
        "training": {"epochs": 8, "batch_size": 32}})
    x, y = load_dataset(spec.dataset)
    _, _, test = split_indices(y, spec.split.test_fraction, spec.split.val_fraction, False, 0)
    naive = float(((x[test, -1, 0] - y[test]) ** 2).mean())
    assert metrics["test_mse"] < naive / 3


def test_rbf_learns_circles(tmp_path):
    _, metrics = _train(tmp_path, {
        "dataset": {"name": "circles", "num_samples": 300, "noise": 0.05},
        "model": {"rbf": {"centers": 12}}, "optimizer": {"lr": 0.05},
        "training": {"epochs": 15, "batch_size": 32}})
    assert metrics["test_accuracy"] >= 0.9
