"""Every example spec trains to the result its comment promises (held-out test split, the
spec's own seed). The training loop runs in-process: what is checked here is what the spec
teaches; the service path is covered by tests/integration."""
from __future__ import annotations

from pathlib import Path

import pytest

from trainserve.jobs.spec import load_spec_file
from trainserve.train.loop import train
from trainserve.train.reporting import NullReporter
from trainserve.train.validate import check_spec

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(name: str, tmp_path: Path) -> dict:
    spec = check_spec(load_spec_file(EXAMPLES / f"{name}.yaml"))
    result = train(spec, tmp_path / name, NullReporter())
    assert result.status == "succeeded"
    return dict(result.metrics)


def _naive_forecast_mse(name: str) -> float:
    """MSE of repeating the last observed value, on the example's test split."""
    import numpy as np

    from trainserve.train.data import split_indices
    from trainserve.train.datasets import load_dataset

    spec = check_spec(load_spec_file(EXAMPLES / f"{name}.yaml"))
    x, y = load_dataset(spec.dataset)
    _, _, test = split_indices(y, spec.split.test_fraction, spec.split.val_fraction, False,
                               spec.training.seed)
    last = x[test, -1, :1]
    target = y[test].reshape(len(test), -1)
    return float(np.mean((target - last) ** 2))


# (example, metric, check): the table of examples/README.md.
CASES = [
    ("perceptron_xor", "test_accuracy", lambda v: v <= 0.75),
    ("xor_mlp", "test_accuracy", lambda v: v == 1.0),
    ("mlp_moons", "test_accuracy", lambda v: v >= 0.97),
    ("rbf_circles", "test_accuracy", lambda v: v >= 0.97),
    ("cnn_digits", "test_accuracy", lambda v: v >= 0.98),
    ("digits_lenet5", "test_accuracy", lambda v: v >= 0.97),
    ("resnet_digits", "test_accuracy", lambda v: v >= 0.98),
    ("mlp_breast_cancer_cv", "cv_auc_mean", lambda v: v >= 0.98),
    ("mlp_diabetes", "test_r2", lambda v: v >= 0.38),
]


@pytest.mark.parametrize("name,metric,ok", CASES, ids=[c[0] for c in CASES])
def test_example_reaches_its_result(name, metric, ok, tmp_path):
    metrics = _run(name, tmp_path)
    assert ok(metrics[metric]), f"{name}: {metric} = {metrics[metric]}"


@pytest.mark.parametrize("name", ["lstm_sine", "gru_sine", "transformer_sine"])
def test_forecasters_beat_the_last_value_tenfold(name, tmp_path):
    mse = _run(name, tmp_path)["test_mse"]
    assert mse <= _naive_forecast_mse(name) / 10


def test_early_stopping_stops_early_and_restores_the_best_epoch(tmp_path):
    metrics = _run("early_stopping", tmp_path)
    spec = load_spec_file(EXAMPLES / "early_stopping.yaml")
    assert metrics["stopped_epoch"] < spec.training.epochs
    assert metrics["best_epoch"] < metrics["stopped_epoch"]


def test_l2_and_dropout_narrow_the_generalization_gap(tmp_path):
    def gap(name):
        spec = check_spec(load_spec_file(EXAMPLES / f"{name}.yaml"))
        reporter = _LastEpoch()
        train(spec, tmp_path / name, reporter)
        return reporter.metrics["val_loss"] - reporter.metrics["train_loss"]
    assert gap("regularization_l2_dropout") < gap("regularization_none")


class _LastEpoch(NullReporter):
    metrics: dict = {}

    def epoch(self, epoch, total_epochs, metrics, *args, **kwargs):
        self.metrics = dict(metrics)
