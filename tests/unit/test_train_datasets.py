"""Datasets: cheap info that matches the data, XOR generation, hashing, no torch import."""
import subprocess
import sys

import numpy as np
import pytest

from trainserve.core.pb import spec_pb2
from trainserve.training.datasets import DATASETS, dataset_hash, dataset_info, load_dataset


def _ds(name, **fields):
    return spec_pb2.DatasetSpec(name=name, **fields)


@pytest.mark.parametrize("name", DATASETS.names())
def test_info_matches_the_data(name):
    info = dataset_info(_ds(name))
    x, y = load_dataset(_ds(name))
    assert x.dtype == np.float32 and x.shape == (info.num_samples, *info.input_shape)
    assert len(y) == info.num_samples
    if info.task == "classification":
        assert y.dtype == np.int64
        assert sorted(np.unique(y)) == list(range(info.num_classes))
        assert len(info.class_names) == info.num_classes == info.output_dim
    elif info.task in ("seq2seq", "language_model", "masked_lm"):  # token ids
        assert y.dtype == np.int64 and y.shape == (info.num_samples, info.num_targets)
        assert 0 <= y.min() and y.max() < len(info.class_names) == info.num_classes
    else:
        assert y.dtype == np.float32 and info.num_classes == 0 and info.output_dim == 1


def test_digits_is_an_image_and_iris_is_tabular():
    assert dataset_info(_ds("digits")).input_shape == (1, 8, 8)
    assert dataset_info(_ds("digits")).is_image
    assert not dataset_info(_ds("iris")).is_image


def test_xor_corners_labels_and_balance():
    x, y = load_dataset(_ds("xor"))
    assert x.shape == (200, 2)
    assert set(map(tuple, x.tolist())) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert np.array_equal(y, (x[:, 0] != x[:, 1]).astype(np.int64))
    assert np.bincount(y).tolist() == [100, 100]


def test_xor_num_samples_and_noise():
    x, y = load_dataset(_ds("xor", num_samples=40, noise=0.1))
    clean, clean_y = load_dataset(_ds("xor", num_samples=40))
    assert x.shape == (40, 2) and dataset_info(_ds("xor", num_samples=40)).num_samples == 40
    assert np.array_equal(y, clean_y)  # noise moves inputs, never labels
    assert 0 < np.abs(x - clean).max() < 1


def test_loading_is_deterministic_and_hash_identifies_data():
    a = load_dataset(_ds("xor", noise=0.2))
    b = load_dataset(_ds("xor", noise=0.2))
    assert dataset_hash(*a) == dataset_hash(*b)
    assert len(dataset_hash(*a)) == 64
    other = load_dataset(_ds("xor", noise=0.3))
    assert dataset_hash(*a) != dataset_hash(*other)
    x, y = a
    assert dataset_hash(x, y) != dataset_hash(x.astype(np.float64), y)  # dtype counts


def test_validation_modules_do_not_import_torch():
    code = ("import sys, trainserve.training.validate, trainserve.training.data, "
            "trainserve.runtime.launch, trainserve.training.reporting; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
