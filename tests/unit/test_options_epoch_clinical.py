"""`training.epoch_clinical_metrics`: the validation split's clinical metrics every epoch, the
names early stopping and a search may pick among, their directions, and a training that
stops on one."""
from __future__ import annotations

import math

import pytest
import torch
from google.protobuf import json_format

from trainserve.core.errors import InvalidArgument
from trainserve.core.pb import spec_pb2
from trainserve.training import metrics as M
from trainserve.training.datasets import dataset_info
from trainserve.training.epoch_clinical import epoch_names, names_for
from trainserve.training.loop import train
from trainserve.training.reporting import ListReporter
from trainserve.training.stopping import epoch_metric_names
from trainserve.training.validate import check_spec
from trainserve.tune.validate import check_search

CANCER = {"dataset": {"name": "breast_cancer"}, "model": {"mlp": {"hidden": [16]}},
          "training": {"epochs": 40, "batch_size": 32}}


def _spec(doc: dict, **training) -> spec_pb2.JobSpec:
    d = doc | {"training": doc["training"] | training}
    return json_format.ParseDict(d, spec_pb2.JobSpec())


def _refused(spec) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as e:
        check_spec(spec)
    return e.value


@pytest.mark.parametrize("metric,mode", [
    ("val_malignant_sensitivity", "max"), ("val_benign_npv", "max"), ("val_auc", "max"),
    ("val_specificity", "max"), ("val_brier", "min"), ("val_ece", "min")])
def test_early_stopping_monitors_a_clinical_metric_in_its_direction(metric, mode):
    spec = check_spec(_spec(CANCER, early_stopping={"metric": metric}))
    assert spec.training.early_stopping.mode == mode
    assert spec.training.epoch_clinical_metrics  # turned on: it must be computed


def test_the_top_k_accuracy_is_known_under_the_specs_k():
    digits = {"dataset": {"name": "digits"}, "model": {"mlp": {}}, "training": {}}
    spec = check_spec(_spec(digits, top_k=3, early_stopping={"metric": "val_top3_accuracy"}))
    assert spec.training.early_stopping.mode == "max"
    err = _refused(_spec(digits, early_stopping={"metric": "val_top3_accuracy"}))
    assert "val_top5_accuracy" in err.reason  # the default k of 10 classes
    assert "val_7_sensitivity" in epoch_names(tuple("0123456789"), 10)  # per class up to 10


def test_without_a_clinical_metric_the_option_stays_off():
    spec = check_spec(_spec(CANCER, early_stopping={"metric": "val_loss"}))
    assert not spec.training.HasField("epoch_clinical_metrics")


def test_unknown_names_are_refused_with_the_field_and_every_valid_name():
    err = _refused(_spec(CANCER, early_stopping={"metric": "val_sensitivity_malignant"}))
    assert err.field == "spec.training.early_stopping.metric"
    for name in ("val_loss", "val_accuracy", "val_malignant_sensitivity", "val_brier",
                 "val_auc", "val_benign_ppv"):
        assert name in err.reason
    assert "val_malignant_tp" not in err.reason  # counts are final metrics only


def test_a_regression_has_no_clinical_metrics():
    diabetes = {"dataset": {"name": "diabetes"}, "model": {"mlp": {}}, "training": {}}
    err = _refused(_spec(diabetes, early_stopping={"metric": "val_brier"}))
    assert err.field == "spec.training.early_stopping.metric" and "val_r2" in err.reason
    err = _refused(_spec(diabetes, epoch_clinical_metrics=True))
    assert err.field == "spec.training.epoch_clinical_metrics"
    assert "classification" in err.reason


def test_the_option_needs_a_validation_split():
    spec = _spec(CANCER, epoch_clinical_metrics=True)
    spec.split.val_fraction = 0
    err = _refused(spec)
    assert err.field == "spec.training.epoch_clinical_metrics" and "val_fraction" in err.reason
    spec.split.folds = 3  # the folds validate instead
    assert check_spec(spec).training.epoch_clinical_metrics


def test_turning_the_option_off_while_monitoring_a_clinical_metric_is_refused():
    err = _refused(_spec(CANCER, epoch_clinical_metrics=False,
                         early_stopping={"metric": "val_brier"}))
    assert err.field == "spec.training.epoch_clinical_metrics"
    assert "val_brier" in err.reason


def _search(metric: str, **split) -> spec_pb2.JobSpec:
    spec = _spec(CANCER)
    spec.split.MergeFrom(spec_pb2.SplitSpec(**split))
    spec.search.space["optimizer.lr"] = "choice([0.01, 0.001])"
    spec.search.metric = metric
    spec = check_spec(spec)
    check_search(spec, check_spec)
    return spec


@pytest.mark.parametrize("metric,mode", [("val_malignant_sensitivity", "max"),
                                         ("val_brier", "min"), ("val_auc", "max")])
def test_a_search_ranks_by_a_clinical_metric(metric, mode):
    spec = _search(metric)
    assert (spec.search.metric, spec.search.mode) == (metric, mode)
    assert spec.training.epoch_clinical_metrics  # the trials' specs inherit it


def test_a_search_refuses_an_unknown_metric_listing_the_clinical_ones():
    with pytest.raises(InvalidArgument) as e:
        _search("val_malignant_recall")
    assert e.value.field == "spec.search.metric"
    assert "val_malignant_sensitivity" in e.value.reason and "val_brier" in e.value.reason


def test_a_cross_validated_search_ranks_by_a_per_class_rate():
    spec = _search("cv_malignant_sensitivity_mean", folds=3, val_fraction=0)
    assert spec.search.mode == "max"
    assert not spec.training.epoch_clinical_metrics  # folds report them once, at the end


def test_epoch_values_are_the_final_metrics_with_undefined_rates_as_zero():
    gen = torch.Generator().manual_seed(0)
    out, y = torch.randn(60, 3, generator=gen), torch.arange(60) % 3
    out[:, 2] = -10.0  # class 2 is never predicted: its PPV is undefined
    names = ("a", "b", "c")
    final, _ = M.final_metrics("val", out, y, torch.zeros(60), 3, names, None)
    epoch = M.epoch_clinical("val", out, y, 3, names, None)
    assert list(epoch) == epoch_names(names, 3)
    assert "val_c_ppv" not in final and epoch["val_c_ppv"] == 0.0
    for name, value in epoch.items():
        if name != "val_c_ppv":
            assert value == pytest.approx(final[name]), name


def test_a_non_finite_value_is_left_out_of_the_epoch():
    out, y = torch.randn(10, 2), torch.zeros(10, dtype=torch.long)  # one class: no AUC
    epoch = M.epoch_clinical("val", out, y, 2, ("n", "p"), None)
    assert "val_auc" not in epoch and math.isfinite(epoch["val_brier"])


def test_a_training_stops_on_the_brier_score_and_keeps_its_best_epoch(tmp_path):
    spec = check_spec(_spec(CANCER, epochs=60, early_stopping={"metric": "val_brier",
                                                               "patience": 3}))
    rep = ListReporter()
    result = train(spec, tmp_path, rep)
    stopped, best = int(result.metrics["stopped_epoch"]), int(result.metrics["best_epoch"])
    assert stopped < 60 and best == stopped - 3
    briers = [e.metrics["val_brier"] for e in rep.epochs]
    assert briers.index(min(briers)) + 1 == best
    info = dataset_info(spec.dataset)
    expected = set(epoch_metric_names("classification", True)) | set(names_for(spec, info, True))
    assert all(set(e.metrics) - {"lr"} == expected for e in rep.epochs)


def test_off_by_default_the_epochs_report_no_clinical_metric(tmp_path):
    spec = check_spec(_spec(CANCER, epochs=2))
    rep = ListReporter()
    train(spec, tmp_path, rep)
    assert set(rep.epochs[-1].metrics) - {"lr"} == set(epoch_metric_names("classification",
                                                                          True))
