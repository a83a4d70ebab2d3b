"""External validation without servers: admission of `spec.evaluate` (`jobs.evaluation`) and
the worker's evaluation (`training.external`) of a model trained here, on an NPZ of phantoms
from "another scanner" and on CSVs with the wrong columns or labels."""
from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest

from trainserve.core.errors import InvalidArgument, NotFound
from trainserve.core.pb import model_pb2, spec_pb2
from trainserve.jobs.evaluation import check_evaluation
from trainserve.training.datasets.phantoms import write_npz
from trainserve.training.describe import describe
from trainserve.training.evaluation import EVALUATION_FILE
from trainserve.training.external import evaluate_model
from trainserve.training.loop import train
from trainserve.training.reporting import NullReporter
from trainserve.training.validate import check_spec


def _content(path, fmt: str) -> spec_pb2.UploadedContent:
    return spec_pb2.UploadedContent(sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                                    format=fmt, path=str(path), schema=describe(path, fmt)[0])


def _train(tmp_path, spec: spec_pb2.JobSpec, name: str) -> model_pb2.ModelVersion:
    spec = check_spec(spec)
    result = train(spec, tmp_path / f"job-{name}", NullReporter())
    assert result.status == "succeeded"
    return model_pb2.ModelVersion(name=name, version=1, artifact_uri=result.artifact_dir,
                                  spec=spec, user="alice")


@pytest.fixture(scope="module")
def phantom_model(tmp_path_factory):
    """A small CNN trained on uploaded phantoms (seed 0)."""
    tmp = tmp_path_factory.mktemp("phantoms")
    path = tmp / "train.npz"
    write_npz(str(path), 1000, 32, seed=0, noise=0.2, blur_px=0.6)
    spec = spec_pb2.JobSpec(name="lesions")
    spec.dataset.name = "scanner_a"
    spec.dataset.uploaded.CopyFrom(_content(path, "npz"))
    spec.model.cnn.channels.extend([8, 16])
    spec.model.cnn.hidden.extend([32])
    spec.training.epochs, spec.training.batch_size = 8, 32
    spec.optimizer.name, spec.optimizer.lr = "adam", 3e-3
    return tmp, _train(tmp, spec, "lesions")


def _admit(spec, mv, uploads: dict) -> spec_pb2.JobSpec:
    def resolve(name, version, alias):
        if name != mv.name:
            raise NotFound(f"model {name!r} not found")
        return mv
    return check_evaluation(spec, {"CPU": 2.0}, uploads.get, resolve)


def _evaluation(model: str, dataset: str) -> spec_pb2.JobSpec:
    return spec_pb2.JobSpec(evaluate=spec_pb2.EvaluateSpec(model=model, dataset=dataset))


def test_a_phantom_cnn_is_evaluated_on_another_scanner(phantom_model, tmp_path):
    tmp, mv = phantom_model
    other = tmp / "scanner_b.npz"
    write_npz(str(other), 300, 32, seed=7, noise=0.3, blur_px=0.8)
    full = _admit(_evaluation("lesions:1", "scanner_b"), mv,
                  {"scanner_b": _content(other, "npz")})
    assert (full.evaluate.model_name, full.evaluate.model_version) == ("lesions", 1)
    assert full.evaluate.artifact_path == mv.artifact_uri
    assert full.dataset.uploaded.path == str(other) and full.model.HasField("cnn")
    assert full.scaling.num_workers == 1 and not full.HasField("deploy")
    assert full.labels["evaluates"] == "lesions:1"       # how a version's evaluations are listed
    result = evaluate_model(full, tmp_path, NullReporter())
    m = result.metrics
    assert result.status == "succeeded" and result.artifact_dir is None
    assert m["test_accuracy"] > 0.7, m                 # balanced classes: chance is 0.5
    for key in ("test_auc", "test_brier", "test_lesion_sensitivity", "test_normal_ppv"):
        assert math.isfinite(m[key]), key
    assert sum(map(sum, result.confusion_matrix)) == 300
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["metrics"]["test_accuracy"] == m["test_accuracy"]
    with np.load(tmp_path / EVALUATION_FILE) as npz:
        assert npz["probabilities"].shape == (300, 2)
        assert list(npz["class_names"]) == ["lesion", "normal"]


def test_labels_match_the_models_classes_by_name(phantom_model, tmp_path):
    """The same images with integer labels (0/1) are not the model's classes: refused at
    admission, naming the labels and the model's classes."""
    tmp, mv = phantom_model
    x = np.zeros((4, 1, 32, 32), np.float32)
    np.savez(tmp_path / "ints.npz", x=x, y=np.array([0, 1, 0, 1]))
    with pytest.raises(InvalidArgument) as e:
        _admit(_evaluation("lesions", "ints"), mv,
               {"ints": _content(tmp_path / "ints.npz", "npz")})
    assert e.value.field == "spec.evaluate.dataset"
    assert "['0', '1']" in e.value.reason and "lesion, normal" in e.value.reason


def test_a_wrong_image_shape_is_refused_with_advice(phantom_model, tmp_path):
    _, mv = phantom_model
    for name, shape, advice in (("big", (4, 1, 64, 64), "[1, 32, 32]"),
                                ("flat", (4, 32, 32), "add the channel axis")):
        np.savez(tmp_path / f"{name}.npz", x=np.zeros(shape, np.float32),
                 y=np.array(["lesion", "normal"] * 2))
        with pytest.raises(InvalidArgument) as e:
            _admit(_evaluation("lesions", name), mv,
                   {name: _content(tmp_path / f"{name}.npz", "npz")})
        assert e.value.field == "spec.evaluate.dataset" and advice in e.value.reason


def test_unknown_or_hidden_models_and_datasets_are_not_found(phantom_model):
    _, mv = phantom_model
    with pytest.raises(NotFound):
        _admit(_evaluation("someone-elses", "scanner_b"), mv, {})
    with pytest.raises(NotFound, match="spec.evaluate.dataset"):
        _admit(_evaluation("lesions", "not-mine"), mv, {})


@pytest.mark.parametrize("field, value, path", [
    ("evaluate.model", "", "spec.evaluate.model"),
    ("evaluate.dataset", "", "spec.evaluate.dataset"),
    ("evaluate.artifact_path", "/etc", "spec.evaluate.artifact_path"),
    ("evaluate.model", "lesions:x", "spec.evaluate.model"),
    ("training.epochs", 3, "spec.training"),
    ("scaling.num_workers", 2, "spec.scaling.num_workers"),
])
def test_the_spec_of_an_evaluation_is_checked_with_field_paths(phantom_model, field, value,
                                                               path):
    _, mv = phantom_model
    spec = _evaluation("lesions", "scanner_b")
    msg, _, name = field.rpartition(".")
    setattr(getattr(spec, msg), name, value)
    with pytest.raises(InvalidArgument) as e:
        _admit(spec, mv, {})
    assert e.value.field == path


def _csv(path, header: str, rows: list[str]):
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.fixture(scope="module")
def table_model(tmp_path_factory):
    """An MLP on a CSV whose features are left to the default (every column but the last)."""
    tmp = tmp_path_factory.mktemp("table")
    rng = np.random.default_rng(0)
    rows = [f"{a:.3f},{b:.3f},{'sick' if a + b > 0 else 'well'}"
            for a, b in rng.normal(size=(200, 2))]
    path = _csv(tmp / "train.csv", "age,dose,outcome", rows)
    spec = spec_pb2.JobSpec(name="outcome")
    spec.dataset.name = "clinic_a"
    spec.dataset.uploaded.CopyFrom(_content(path, "csv"))
    spec.model.mlp.hidden.extend([16])
    spec.training.epochs = 30
    spec.optimizer.name, spec.optimizer.lr = "adam", 0.01
    return tmp, _train(tmp, spec, "outcome")


def test_a_table_is_read_by_the_models_column_names(table_model, tmp_path):
    """Another clinic's CSV with its columns in another order and one more column."""
    _, mv = table_model
    rng = np.random.default_rng(1)
    rows = [f"{'sick' if a + b > 0 else 'well'},x{i},{b:.3f},{a:.3f}"
            for i, (a, b) in enumerate(rng.normal(size=(100, 2)))]
    path = _csv(tmp_path / "b.csv", "outcome,site,dose,age", rows)
    full = _admit(_evaluation("outcome", "clinic_b"), mv, {"clinic_b": _content(path, "csv")})
    assert list(full.dataset.feature_columns) == ["age", "dose"]
    assert full.dataset.target_column == "outcome"
    m = evaluate_model(full, tmp_path / "job", NullReporter()).metrics
    assert m["test_accuracy"] > 0.85, m


def test_a_table_without_the_models_column_is_refused(table_model, tmp_path):
    _, mv = table_model
    path = _csv(tmp_path / "c.csv", "age,weight,outcome", ["1,2,sick", "2,3,well", "0,1,well"])
    with pytest.raises(InvalidArgument) as e:
        _admit(_evaluation("outcome", "c"), mv, {"c": _content(path, "csv")})
    assert e.value.field == "spec.evaluate.dataset"
    assert "no column 'dose'" in e.value.reason and "feature_columns[1]" in e.value.reason


def test_a_table_with_unknown_labels_is_refused(table_model, tmp_path):
    _, mv = table_model
    path = _csv(tmp_path / "d.csv", "age,dose,outcome", ["1,2,sick", "2,3,dead", "0,1,well"])
    with pytest.raises(InvalidArgument, match=r"\['dead'\] of 'd' are not classes"):
        _admit(_evaluation("outcome", "d"), mv, {"d": _content(path, "csv")})


def test_a_regressor_is_evaluated_with_the_regression_metrics(tmp_path):
    """A model trained on the built-in diabetes set, on an NPZ of (other) patients."""
    from sklearn.datasets import load_diabetes
    spec = spec_pb2.JobSpec(name="progression")
    spec.dataset.name = "diabetes"
    spec.model.mlp.hidden.extend([16])
    spec.training.epochs = 20
    spec.optimizer.name, spec.optimizer.lr = "adam", 0.01
    mv = _train(tmp_path, spec, "progression")
    data = load_diabetes()
    np.savez(tmp_path / "other.npz", x=data.data[-120:].astype(np.float32),
             y=data.target[-120:].astype(np.float32))
    full = _admit(_evaluation("progression", "other"), mv,
                  {"other": _content(tmp_path / "other.npz", "npz")})
    assert full.dataset.task == "regression"
    m = evaluate_model(full, tmp_path / "eval", NullReporter()).metrics
    assert {"test_mse", "test_mae", "test_r2"} <= set(m) and "test_accuracy" not in m
    assert m["test_r2"] > 0.2 and m["test_mae"] < 60, m
    with np.load(tmp_path / "eval" / EVALUATION_FILE) as npz:
        assert str(npz["kind"]) == "regression" and npz["y_pred"].shape == (120, 1)
