"""L1/L2 penalties (and dropout) against overfitting; what they penalize and report."""
import pytest
from google.protobuf import json_format
from safetensors.torch import load_file

from trainserve.core.pb import spec_pb2
from trainserve.training.artifacts import MODEL_FILE
from trainserve.training.loop import train
from trainserve.training.reporting import ListReporter
from trainserve.training.validate import check_spec

# Small and noisy, and a network far larger than it needs: it overfits within 100 epochs.
NOISY = {"dataset": {"name": "xor", "num_samples": 120, "noise": 0.45},
         "split": {"val_fraction": 0.25}, "optimizer": {"lr": 0.01},
         "training": {"epochs": 100, "batch_size": 16}}


def _run(tmp_path, name, dropout=0.0, **regularization):
    d = NOISY | {"model": {"mlp": {"hidden": [128, 128], "dropout": dropout}},
                 "training": NOISY["training"] | {"regularization": regularization}}
    rep = ListReporter()
    train(check_spec(json_format.ParseDict(d, spec_pb2.JobSpec())), tmp_path / name, rep)
    last = rep.epochs[-1].metrics
    return last["val_loss"] - last["train_loss"], load_file(str(tmp_path / name / "artifact" /
                                                                 MODEL_FILE))


def test_l2_and_dropout_narrow_the_generalization_gap(tmp_path):
    gap_none, plain = _run(tmp_path, "none")
    gap_l2, _ = _run(tmp_path, "l2", l2=1e-2)
    gap_dropout, _ = _run(tmp_path, "dropout", dropout=0.5)
    gap_l1, sparse = _run(tmp_path, "l1", l1=1e-3)
    assert gap_none > 0.3  # it does overfit
    assert gap_l2 < gap_none / 3
    assert gap_dropout < gap_none
    assert gap_l1 < gap_none
    assert sparse["fc2.weight"].abs().sum() < plain["fc2.weight"].abs().sum() / 2


def _penalized(l2, lr, epochs):
    d = {"dataset": {"name": "breast_cancer"}, "model": {"mlp": {"hidden": [16]}},
         "optimizer": {"name": "sgd", "lr": lr},
         "training": {"epochs": epochs, "regularization": {"l2": l2}}}
    return check_spec(json_format.ParseDict(d, spec_pb2.JobSpec()))


def test_train_loss_is_the_data_loss_without_the_penalty(tmp_path):
    # lr ~0: the weights stay at their initialization, where 10 * sum(w^2) is about 60
    rep = ListReporter()
    train(_penalized(l2=10.0, lr=1e-12, epochs=1), tmp_path, rep)
    assert 0.3 < rep.epochs[0].metrics["train_loss"] < 1.0  # cross-entropy near ln 2


def test_weights_are_penalized_but_biases_are_not(tmp_path):
    train(_penalized(l2=1.0, lr=0.1, epochs=30), tmp_path, ListReporter())
    w = load_file(str(tmp_path / "artifact" / MODEL_FILE))
    assert w["fc1.weight"].abs().max() < 1e-2 and w["out.weight"].abs().max() < 1e-2
    # With the weights gone, the output bias alone learns the class prior (63% benign).
    prior = (w["out.bias"][1] - w["out.bias"][0]).item()
    assert prior == pytest.approx(0.53, abs=0.1)
