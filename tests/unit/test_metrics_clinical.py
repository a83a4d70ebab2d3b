"""Clinical metrics (training.clinical_metrics) against scikit-learn and hand computations."""
import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from trainserve.core.errors import InvalidArgument
from trainserve.core.metrics import default_mode
from trainserve.core.pb import spec_pb2
from trainserve.training import clinical_metrics as C
from trainserve.training import metrics as M
from trainserve.training.validate import check_spec


def _scores(n, c, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c, (n,), generator=g)
    out = torch.randn(n, c, generator=g) + 1.5 * torch.nn.functional.one_hot(y, c)
    return out, y


def _final(out, y, classes, names=(), top_k=None):
    return M.final_metrics("test", out, y, torch.zeros(len(y)), classes, names, top_k)[0]


@pytest.mark.parametrize("classes", [2, 3, 7])
def test_per_class_rates_match_sklearn(classes):
    out, y = _scores(400, classes)
    names = [f"c {i}!" for i in range(classes)]  # made metric-safe: "c_0"
    got = _final(out, y, classes, names)
    pred = out.argmax(1).numpy()
    mcm = skm.multilabel_confusion_matrix(y, pred, labels=range(classes))  # [[tn fp] [fn tp]]
    for c in range(classes):
        (tn, fp), (fn, tp) = mcm[c]
        key = f"test_c_{c}_"
        assert [got[key + m] for m in ("tp", "fp", "tn", "fn")] == [tp, fp, tn, fn]
        assert got[key + "sensitivity"] == pytest.approx(
            skm.recall_score(y, pred, labels=[c], average="macro"))
        assert got[key + "ppv"] == pytest.approx(
            skm.precision_score(y, pred, labels=[c], average="macro"))
        # specificity and NPV are the recall and precision of "not c"
        assert got[key + "specificity"] == pytest.approx(skm.recall_score(y != c, pred != c))
        assert got[key + "npv"] == pytest.approx(skm.precision_score(y != c, pred != c))
    spec = [skm.recall_score(y != c, pred != c) for c in range(classes)]
    assert got["test_specificity"] == pytest.approx(np.mean(spec))


def test_undefined_rates_are_left_out_of_the_map_and_the_means():
    # Class 2 never occurs and is never predicted: its sensitivity and PPV are undefined.
    y = torch.tensor([0, 0, 1, 1])
    out = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 1]), 3).float()
    got = _final(out, y, 3, ("a", "b", "c"))
    assert "test_c_sensitivity" not in got and "test_c_ppv" not in got
    assert got["test_c_specificity"] == 1.0 and got["test_c_tp"] == 0
    assert got["test_a_npv"] == pytest.approx(2 / 3)
    assert got["test_npv"] == pytest.approx(np.mean([2 / 3, 1.0, 1.0]))


def test_per_class_metrics_are_bounded():
    out, y = _scores(200, C.MAX_PER_CLASS + 1)
    got = _final(out, y, C.MAX_PER_CLASS + 1)
    assert not [k for k in got if k.endswith("_sensitivity")]
    assert {"test_specificity", "test_npv", "test_brier", "test_ece",
            "test_top5_accuracy"} <= set(got)
    out, y = _scores(200, C.MAX_PER_CLASS)
    assert len([k for k in _final(out, y, C.MAX_PER_CLASS) if k.endswith("_tp")]) == \
        C.MAX_PER_CLASS


def test_class_names_become_indices_when_unsafe():
    assert C.metric_class_names(["M", "F"], 2) == ["M", "F"]
    assert C.metric_class_names(["a b", "a-b"], 2) == ["class0", "class1"]  # both "a_b"
    assert C.metric_class_names(["?", "x"], 2) == ["class0", "class1"]
    assert C.metric_class_names([], 3) == ["class0", "class1", "class2"]


@pytest.mark.parametrize("classes,top_k,k", [(10, None, 5), (5, None, 0), (3, 2, 2),
                                              (10, 3, 3), (4, 4, 0)])
def test_top_k_accuracy_matches_sklearn(classes, top_k, k):
    out, y = _scores(300, classes, seed=3)
    got = _final(out, y, classes, top_k=top_k)
    keys = [key for key in got if key.startswith("test_top")]
    if not k:
        assert keys == []
        return
    assert keys == [f"test_top{k}_accuracy"]
    prob = torch.softmax(out.double(), 1).numpy()
    assert got[keys[0]] == pytest.approx(
        skm.top_k_accuracy_score(y, prob, k=k, labels=range(classes)))


@pytest.mark.parametrize("classes", [2, 4])
def test_brier_matches_sklearn(classes):
    out, y = _scores(300, classes, seed=5)
    prob = torch.softmax(out.double(), 1).numpy()
    expected = skm.brier_score_loss(y, prob[:, 1]) if classes == 2 else \
        skm.brier_score_loss(y, prob, labels=range(classes))
    assert _final(out, y, classes)["test_brier"] == pytest.approx(expected)


def _ece_by_hand(prob, y, bins):
    """A loop over samples, bin edges (lo, hi] with 0 in the first."""
    totals = [[0, 0.0, 0.0] for _ in range(bins)]
    for p, t in zip(prob, y):
        conf = max(p)
        b = 0 if conf == 0 else next(i for i in range(bins) if conf <= (i + 1) / bins)
        totals[b][0] += 1
        totals[b][1] += conf
        totals[b][2] += float(int(np.argmax(p)) == int(t))
    return sum(abs(acc / n - conf / n) * n for n, conf, acc in totals if n) / len(y)


@pytest.mark.parametrize("classes", [2, 6])
def test_ece_matches_a_hand_computation(classes):
    out, y = _scores(500, classes, seed=7)
    prob = torch.softmax(out.double(), 1).numpy()
    got = _final(out, y, classes)["test_ece"]
    assert got == pytest.approx(_ece_by_hand(prob, y.numpy(), C.ECE_BINS))
    assert 0 < got < 1


def test_calibrated_and_overconfident_predictions():
    rng = np.random.default_rng(0)
    n = 20_000
    p1 = rng.uniform(0, 1, n)
    y = (rng.uniform(0, 1, n) < p1).astype(np.int64)  # the labels follow the probabilities
    calibrated = np.stack([1 - p1, p1], axis=1)
    assert C.expected_calibration_error(calibrated, y) < 0.02
    sharp = np.stack([p1 < 0.5, p1 >= 0.5], axis=1).astype(np.float64)  # always certain
    assert C.expected_calibration_error(sharp, y) > 0.2
    counts, conf, acc = C.reliability_bins(calibrated, y)
    assert counts.sum() == n and np.nanmax(np.abs(conf - acc)) < 0.05


def test_non_finite_outputs_give_nan_calibration():
    out, y = _scores(50, 3)
    out[0, 0] = float("nan")
    got = _final(out, y, 3)
    assert math.isnan(got["test_brier"]) and math.isnan(got["test_ece"])


def test_directions_of_the_new_metrics():
    assert default_mode("test_malignant_sensitivity") == "max"
    assert default_mode("cv_specificity_mean") == "max"
    assert default_mode("test_npv") == "max" and default_mode("test_top5_accuracy") == "max"
    assert default_mode("test_brier") == "min" and default_mode("test_ece") == "min"


def _spec(**training):
    return spec_pb2.JobSpec(dataset=spec_pb2.DatasetSpec(name="digits"),
                            model=spec_pb2.ModelSpec(mlp=spec_pb2.MLPSpec(hidden=[8])),
                            training=spec_pb2.TrainingSpec(**training))


def test_top_k_is_validated():
    assert check_spec(_spec(top_k=3)).training.top_k == 3
    assert not check_spec(_spec()).training.HasField("top_k")
    for bad in (0, 10):
        with pytest.raises(InvalidArgument) as e:
            check_spec(_spec(top_k=bad))
        assert e.value.field == "spec.training.top_k" and "[1, 9]" in str(e.value)
    spec = _spec(top_k=2)
    spec.dataset.name = "diabetes"
    with pytest.raises(InvalidArgument, match="classification") as e:
        check_spec(spec)
    assert e.value.field == "spec.training.top_k"


@pytest.mark.parametrize("metric,mode", [("cv_specificity_mean", "max"),
                                         ("cv_npv_mean", "max"), ("cv_brier_mean", "min"),
                                         ("cv_ece_mean", "min")])
def test_a_cross_validated_search_ranks_by_a_clinical_metric(metric, mode):
    from trainserve.tune.validate import check_search
    spec = _spec()
    spec.split.folds = 3
    spec.search.space["optimizer.lr"] = "choice([0.01, 0.001])"
    spec.search.metric = metric
    spec = check_spec(spec)
    check_search(spec, check_spec)
    assert (spec.search.metric, spec.search.mode) == (metric, mode)
