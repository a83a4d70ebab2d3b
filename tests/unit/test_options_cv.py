"""k-fold cross-validation: the folds, the cv_* summary, the final model, progress, resume."""
import json
import statistics

import numpy as np
import pytest
from google.protobuf import json_format

from trainserve.core.pb import spec_pb2
from trainserve.training.artifacts import load_artifact
from trainserve.training.data import prepare_data
from trainserve.training.splits import fold_indices
from trainserve.training.loop import train
from trainserve.training.reporting import ListReporter
from trainserve.training.validate import check_spec

IRIS_CV = {"dataset": {"name": "iris"}, "split": {"folds": 3},
           "model": {"mlp": {"hidden": [16]}}, "optimizer": {"lr": 0.01},
           "training": {"epochs": 4, "batch_size": 16}}


def _spec(d: dict) -> spec_pb2.JobSpec:
    return check_spec(json_format.ParseDict(d, spec_pb2.JobSpec()))


def test_folds_partition_the_samples_and_keep_class_proportions():
    y = np.repeat([0, 1, 2], [50, 30, 20])
    folds = fold_indices(y, 5, stratify=True, seed=3)
    vals = np.concatenate([val for _, val in folds])
    assert sorted(vals) == list(range(100))
    for rest, val in folds:
        assert set(rest).isdisjoint(val) and len(rest) + len(val) == 100
        assert np.bincount(y[val]).tolist() == [10, 6, 4]
    again = fold_indices(y, 5, stratify=True, seed=3)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    plain = fold_indices(y, 4, stratify=False, seed=3)
    assert sorted(np.concatenate([v for _, v in plain])) == list(range(100))


def test_fold_data_validates_on_the_fold_and_keeps_the_test_split():
    spec = _spec(IRIS_CV)
    final = prepare_data(spec)
    assert len(final.x_val) == 0 and len(final.x_train) == 120
    without_cv = prepare_data(_spec(IRIS_CV | {"split": {}}))

    def raw(d):  # the same samples, normalized with statistics of different training splits
        return d.x_test * np.float32(d.preprocessing.scale) + np.float32(d.preprocessing.shift)
    assert np.allclose(raw(final), raw(without_cv), atol=1e-5)
    seen = []
    for i in range(3):
        fold = prepare_data(spec, fold=i)
        assert (len(fold.x_train), len(fold.x_val)) == (80, 40)
        assert set(np.bincount(fold.y_val).tolist()) <= {13, 14}  # 40 per class / 3 folds
        assert np.array_equal(fold.y_test, final.y_test)
        seen.append(fold.y_val)
    assert sum(len(v) for v in seen) == 120


def test_cross_validation_reports_mean_and_std_over_the_folds(tmp_path):
    rep = ListReporter()
    result = train(_spec(IRIS_CV), tmp_path, rep)
    assert result.status == "succeeded" and result.metrics["cv_folds"] == 3
    folds = [json.loads((tmp_path / "cv" / f"fold-{i}" / "result.json").read_text())["metrics"]
             for i in (1, 2, 3)]
    for name in ("loss", "accuracy", "precision", "recall", "f1", "auc"):
        values = [f[f"val_{name}"] for f in folds]
        assert result.metrics[f"cv_{name}_mean"] == pytest.approx(statistics.fmean(values))
        assert result.metrics[f"cv_{name}_std"] == pytest.approx(statistics.pstdev(values))
    assert {"test_accuracy", "test_auc"} <= set(result.metrics)
    # progress: one continuous scale over 3 folds and the final model, tagged by fold
    assert [e.epoch for e in rep.epochs] == list(range(1, 17))
    assert {e.total_epochs for e in rep.epochs} == {16}
    assert [e.metrics["fold"] for e in rep.epochs] == [1] * 4 + [2] * 4 + [3] * 4 + [0] * 4
    texts = [text for _, text in rep.logs]
    assert any(t.startswith("fold 2/3: training mlp on iris: 80 train / 40 val") for t in texts)
    assert any(t.startswith("cross-validation over 3 folds: accuracy") for t in texts)
    assert any(t.startswith("final model: training mlp on iris: 120 train / 0 val / 30 test")
               for t in texts)
    # the artifact is the final model, with the submitted spec and the cv metrics
    loaded = load_artifact(tmp_path / "artifact")
    assert loaded.spec.split.folds == 3 and loaded.meta["metrics"]["cv_folds"] == 3

    again = ListReporter()
    assert train(_spec(IRIS_CV), tmp_path, again).metrics == result.metrics
    assert again.epochs == []  # every training resumed at its end


def test_regression_cv_and_early_stopping_sets_the_final_epochs(tmp_path):
    d = {"dataset": {"name": "diabetes"}, "split": {"folds": 2},
         "model": {"mlp": {"hidden": [16]}}, "optimizer": {"lr": 0.05},
         "training": {"epochs": 40, "early_stopping": {"patience": 2}}}
    rep = ListReporter()
    result = train(_spec(d), tmp_path, rep)
    assert {"cv_r2_mean", "cv_r2_std", "cv_mse_mean", "cv_mae_mean", "cv_best_epoch_mean",
            "test_r2"} <= set(result.metrics)
    final_epochs = round(result.metrics["cv_best_epoch_mean"])
    assert [e.metrics["fold"] for e in rep.epochs].count(0) == final_epochs
    assert any(f"for {final_epochs} epochs" in text for _, text in rep.logs)


def test_cancel_during_a_fold(tmp_path):
    rep = ListReporter(cancel_when=lambda r: len(r.epochs) >= 6)
    result = train(_spec(IRIS_CV), tmp_path, rep)
    assert result.status == "cancelled" and result.artifact_dir is None
    assert rep.epochs[-1].metrics["fold"] == 2 and not (tmp_path / "artifact").exists()
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "cancelled"
