"""Metrics against scikit-learn; losses (huber_delta, perceptron, [N, k] regression targets)."""
import json

import numpy as np
import pytest
import torch
from google.protobuf import json_format
from sklearn import metrics as skm

from trainserve.core.pb import spec_pb2
from trainserve.training import metrics as M
from trainserve.training.artifacts import META_FILE
from trainserve.training.datasets import DatasetInfo
from trainserve.training.loop import train
from trainserve.training.losses import build_loss
from trainserve.training.reporting import ListReporter
from trainserve.training.validate import check_spec


def _scores(n, c, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c, (n,), generator=g)
    out = torch.randn(n, c, generator=g) + 1.5 * torch.nn.functional.one_hot(y, c)
    return out, y


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_classification_metrics_match_sklearn(classes):
    out, y = _scores(300, classes)
    got, cm = M.final_metrics("test", out, y, torch.zeros(len(y)), classes)
    pred, prob = out.argmax(1).numpy(), torch.softmax(out.double(), 1).numpy()
    assert cm == skm.confusion_matrix(y, pred, labels=range(classes)).tolist()
    assert got["test_accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    for name, fn in (("precision", skm.precision_score), ("recall", skm.recall_score),
                     ("f1", skm.f1_score)):
        assert got[f"test_{name}"] == pytest.approx(fn(y, pred, average="macro",
                                                       zero_division=0))
    expected_auc = skm.roc_auc_score(y, prob[:, 1]) if classes == 2 else \
        skm.roc_auc_score(y, prob, multi_class="ovr", average="macro")
    assert got["test_auc"] == pytest.approx(expected_auc)


@pytest.mark.parametrize("classes", [2, 4])
def test_auc_counts_tied_scores_half_as_sklearn(classes):
    g = torch.Generator().manual_seed(classes)
    y = torch.randint(0, classes, (400,), generator=g)
    # Outputs on a coarse grid: many samples share a probability, within and across classes.
    out = torch.randint(0, 3, (400, classes), generator=g).float() + \
        torch.nn.functional.one_hot(y, classes) * torch.randint(0, 2, (400, 1), generator=g)
    prob = torch.softmax(out.double(), 1).numpy()
    expected = skm.roc_auc_score(y, prob[:, 1]) if classes == 2 else \
        skm.roc_auc_score(y, prob, multi_class="ovr", average="macro")
    assert M.roc_auc(out, y, classes) == pytest.approx(expected, abs=1e-12)
    assert M.binary_auc(torch.tensor([0.5, 0.5, 0.5]), torch.tensor([True, False, True])) == 0.5
    assert M.binary_auc(torch.tensor([0.1, 0.9]), torch.tensor([False, True])) == 1.0


def test_a_class_never_predicted_has_zero_precision_and_auc_needs_every_class():
    y = torch.tensor([0, 0, 1, 1, 2])
    out = torch.nn.functional.one_hot(torch.tensor([0, 0, 1, 1, 1]), 3).float()
    got = M.from_confusion(M.confusion_matrix(out.argmax(1), y, 3))
    pred = out.argmax(1).numpy()
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred, average="macro",
                                                                 zero_division=0))
    assert np.isnan(M.roc_auc(out[:4], y[:4], 3))
    out[0, 0] = float("nan")  # a diverged model's outputs
    assert np.isnan(M.roc_auc(out, y, 3))


@pytest.mark.parametrize("k", [1, 3])
def test_regression_metrics_average_over_outputs(k):
    g = torch.Generator().manual_seed(1)
    y = torch.randn(50, k, generator=g)
    out = y + 0.5 * torch.randn(50, k, generator=g)
    target = y[:, 0] if k == 1 else y  # (N,) targets for one output, (N, k) for several
    got = M.regression(out, target)
    assert got["mse"] == pytest.approx(skm.mean_squared_error(y, out))
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, out))
    assert got["r2"] == pytest.approx(skm.r2_score(y, out), rel=1e-6)
    sums = M.train_sums(out, target, torch.zeros(()), classification=False)
    assert sums[2] / 50 == pytest.approx(got["mae"])


def _loss(name, task="regression", **fields):
    spec = spec_pb2.LossSpec(name=name, **fields)
    info = DatasetInfo("x", task, 3 if task == "classification" else 0, (), (2,), 10)
    return build_loss(spec, info)


def test_huber_delta_changes_the_loss():
    out, y = torch.tensor([[0.0], [0.0]]), torch.tensor([0.5, 3.0])
    assert _loss("huber")(out, y).tolist() == pytest.approx([0.125, 2.5])  # delta 1 (default)
    assert _loss("huber", huber_delta=2.0)(out, y).tolist() == pytest.approx([0.125, 4.0])


def test_regression_losses_take_n_by_k_targets():
    out, y = torch.zeros(4, 3), torch.arange(12.0).reshape(4, 3)
    assert _loss("mse")(out, y).tolist() == pytest.approx((y ** 2).mean(1).tolist())
    assert _loss("mae")(out[:, :1], y[:, 0]).tolist() == pytest.approx(y[:, 0].tolist())


def test_perceptron_criterion_is_zero_when_correct_and_the_margin_otherwise():
    out = torch.tensor([[3.0, 1.0, 0.0], [1.0, 2.5, 0.5], [0.0, 0.0, 0.0]])
    y = torch.tensor([0, 0, 2])
    assert _loss("perceptron", "classification")(out, y).tolist() == pytest.approx(
        [0.0, 1.5, 0.0])


def test_confusion_matrix_is_in_the_artifact_and_the_result(tmp_path):
    spec = check_spec(json_format.ParseDict(
        {"dataset": {"name": "iris"}, "model": {"mlp": {"hidden": [16]}},
         "optimizer": {"lr": 0.01}, "training": {"epochs": 5}}, spec_pb2.JobSpec()))
    result = train(spec, tmp_path, ListReporter())
    meta = json.loads((tmp_path / "artifact" / META_FILE).read_text())
    cm = np.array(meta["confusion_matrix"])
    assert cm.shape == (3, 3) and cm.sum() == 30  # the 30 test samples
    assert result.confusion_matrix == meta["confusion_matrix"]
    assert np.trace(cm) / cm.sum() == pytest.approx(result.metrics["test_accuracy"])
    assert {"test_precision", "test_recall", "test_f1", "test_auc"} <= set(result.metrics)
    assert json.loads((tmp_path / "result.json").read_text())["confusion_matrix"] == cm.tolist()
