"""Splits (stratified, deterministic) and normalization fitted on the training split only."""
import numpy as np
import pytest
from google.protobuf import json_format

from trainserve.core.pb import spec_pb2
from trainserve.training.data import Preprocessing, fit_preprocessing, prepare_data
from trainserve.training.splits import split_indices, split_sizes
from trainserve.training.datasets import load_dataset
from trainserve.training.validate import check_spec


def _spec(d):
    return check_spec(json_format.ParseDict(d, spec_pb2.JobSpec()))


def _digits_y():
    return load_dataset(spec_pb2.DatasetSpec(name="digits"))[1]


def test_split_sizes_round_test_and_val_up():
    assert split_sizes(1797, 0.2, 0.1) == (1257, 180, 360)
    assert split_sizes(10, 0.25, 0.0) == (7, 0, 3)


def test_splits_are_disjoint_complete_and_sized():
    y = _digits_y()
    train, val, test = split_indices(y, 0.2, 0.1, True, seed=0)
    assert (len(train), len(val), len(test)) == split_sizes(len(y), 0.2, 0.1)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(len(y)))


def test_splits_are_stratified():
    y = _digits_y()
    overall = np.bincount(y) / len(y)
    for part in split_indices(y, 0.2, 0.1, True, seed=3):
        share = np.bincount(y[part], minlength=10) / len(part)
        assert np.abs(share - overall).max() < 0.01


def test_splits_are_deterministic_per_seed():
    y = _digits_y()
    a, b = split_indices(y, 0.2, 0.1, True, 7), split_indices(y, 0.2, 0.1, True, 7)
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    c = split_indices(y, 0.2, 0.1, True, 8)
    assert not np.array_equal(a[2], c[2])


def test_test_set_does_not_depend_on_val_fraction():
    y = _digits_y()
    assert np.array_equal(split_indices(y, 0.2, 0.1, True, 1)[2],
                          split_indices(y, 0.2, 0.0, True, 1)[2])


def test_standard_normalization_is_fitted_on_train_only():
    data = prepare_data(_spec({"dataset": {"name": "wine"}, "model": {"mlp": {}}}))
    raw_x, _ = load_dataset(spec_pb2.DatasetSpec(name="wine"))
    assert np.allclose(data.x_train.mean(axis=0), 0, atol=1e-4)
    assert np.allclose(data.x_train.std(axis=0), 1, atol=1e-3)
    fitted_on_all = fit_preprocessing("standard", raw_x)
    assert not np.allclose(data.preprocessing.shift, fitted_on_all.shift)
    # val/test are transformed with the train statistics, hence not exactly standardized
    assert not np.allclose(data.x_test.mean(axis=0), 0, atol=1e-4)


def test_minmax_maps_train_to_unit_interval_and_none_is_identity():
    x = np.random.default_rng(0).normal(5, 3, size=(50, 4)).astype(np.float32)
    mm = fit_preprocessing("minmax", x).apply(x)
    assert np.allclose(mm.min(axis=0), 0) and np.allclose(mm.max(axis=0), 1)
    none = fit_preprocessing("none", x)
    assert none.shift == (0.0,) * 4 and none.scale == (1.0,) * 4
    assert np.array_equal(none.apply(x), x)


def test_constant_feature_gets_scale_one():
    x = np.zeros((10, 1, 2, 2), np.float32)
    x[:, 0, 0, 0] = np.arange(10)
    pre = fit_preprocessing("standard", x)
    assert len(pre.shift) == 4 and pre.scale[1:] == (1.0, 1.0, 1.0)
    out = pre.apply(x)
    assert out.shape == x.shape and np.isfinite(out).all()


def test_preprocessing_round_trips_through_dict():
    pre = Preprocessing("standard", (1.0, 2.0), (3.0, 4.0))
    assert Preprocessing.from_dict(pre.to_dict()) == pre
    assert np.allclose(pre.apply(np.array([[4.0, 10.0]])), [[1.0, 2.0]])


def test_unknown_normalization():
    with pytest.raises(ValueError, match="known: standard, minmax, none"):
        fit_preprocessing("zscore", np.zeros((2, 2)))


def test_regression_split_is_not_stratified_and_prepare_is_deterministic():
    spec = _spec({"dataset": {"name": "diabetes"}, "model": {"mlp": {}}})
    assert not spec.split.stratify
    a, b = prepare_data(spec), prepare_data(spec)
    assert np.array_equal(a.x_test, b.x_test) and a.dataset_hash == b.dataset_hash
