"""Synthetic 2-D and sequence datasets: documented shapes, determinism, noise, balance, the
dataset-specific fields and their refusals, and DatasetInfo's input kinds."""
import subprocess
import sys

import numpy as np
import pytest
from google.protobuf import json_format

from trainserve.core import errors
from trainserve.core.pb import spec_pb2
from trainserve.training.datasets import (DatasetInfo, apply_dataset_defaults, dataset_hash,
                                       dataset_info, load_dataset)
from trainserve.training.validate import check_spec

TOY_2D = {"moons": 2, "circles": 2, "spirals": 2, "spirals3": 3, "rings": 8}
SEQUENCES = ("sine", "sine_classify")


def _ds(name, **fields):
    return spec_pb2.DatasetSpec(name=name, **fields)


@pytest.mark.parametrize("name,classes", TOY_2D.items())
def test_2d_sets_shapes_balance_and_determinism(name, classes):
    x, y = load_dataset(_ds(name, num_samples=101, noise=0.1))
    info = dataset_info(_ds(name, num_samples=101))
    assert x.shape == (101, 2) and x.dtype == np.float32 and y.dtype == np.int64
    assert info.input_shape == (2,) and info.is_tabular and info.num_classes == classes
    counts = np.bincount(y, minlength=classes)
    assert counts.max() - counts.min() <= 1  # balanced
    again = load_dataset(_ds(name, num_samples=101, noise=0.1))
    assert dataset_hash(x, y) == dataset_hash(*again)


@pytest.mark.parametrize("name", [*TOY_2D, *SEQUENCES])
def test_noise_moves_inputs_never_targets(name):
    clean_x, clean_y = load_dataset(_ds(name, num_samples=60))
    x, y = load_dataset(_ds(name, num_samples=60, noise=0.05))
    assert np.array_equal(y, clean_y)
    assert 0 < np.abs(x - clean_x).max() < 0.5


def test_default_sizes_and_distinct_sets():
    assert dataset_info(_ds("moons")).num_samples == 500
    assert dataset_info(_ds("sine")).num_samples == 2000
    moons, circles = load_dataset(_ds("moons"))[0], load_dataset(_ds("circles"))[0]
    assert not np.allclose(moons[:10], circles[:10])


def test_rings_are_eight_modes_on_a_circle():
    x, y = load_dataset(_ds("rings", num_samples=80))
    assert np.allclose(np.linalg.norm(x, axis=1), 2.0, atol=1e-5)
    angles = np.round(np.degrees(np.arctan2(x[:, 1], x[:, 0])) % 360).astype(int)
    assert set(zip(y.tolist(), angles.tolist())) == {(m, 45 * m) for m in range(8)}


def test_sine_forecasting_shapes_and_targets():
    spec = _ds("sine", num_samples=50, sequence_length=20, horizon=3)
    x, y = load_dataset(spec)
    info = dataset_info(spec)
    assert x.shape == (50, 20, 1) and y.shape == (50, 3) and y.dtype == np.float32
    assert info.input_shape == (20, 1) and info.is_sequence and info.output_dim == 3
    assert info.task == "regression" and info.num_targets == 3
    # Horizon 1 targets are (N,), and they are the first step of a longer horizon's.
    x1, y1 = load_dataset(_ds("sine", num_samples=50, sequence_length=20))
    assert y1.shape == (50,) and np.allclose(y1, y[:, 0]) and np.array_equal(x1, x)
    # Noise-free inputs and targets are one smooth series: the first target continues it.
    assert np.abs(y[:, 0] - x[:, -1, 0]).max() < 1.0


def test_sine_classify_shapes_and_classes():
    x, y = load_dataset(_ds("sine_classify", num_samples=90, sequence_length=16))
    info = dataset_info(_ds("sine_classify", num_samples=90, sequence_length=16))
    assert x.shape == (90, 16, 1) and info.input_shape == (16, 1)
    assert info.class_names == ("slow", "medium", "fast")
    assert np.bincount(y).tolist() == [30, 30, 30]
    # Zero crossings grow with the class's frequency.
    crossings = (np.diff(np.sign(x[:, :, 0]), axis=1) != 0).sum(axis=1)
    means = [crossings[y == c].mean() for c in range(3)]
    assert means[0] < means[1] < means[2]


def test_sequence_defaults_are_applied():
    spec = _ds("sine")
    apply_dataset_defaults(spec)
    assert (spec.sequence_length, spec.horizon) == (32, 1)
    other = _ds("sine_classify")
    apply_dataset_defaults(other)
    assert other.sequence_length == 32 and not other.HasField("horizon")
    iris = _ds("iris")
    apply_dataset_defaults(iris)
    assert not iris.HasField("sequence_length")


@pytest.mark.parametrize("dataset,field,fragment", [
    ({"name": "iris", "sequence_length": 8}, "spec.dataset.sequence_length",
     "only sequence datasets (corpus, corpus_mlm, corpus_source, digit_reversal, sine, "
     "sine_classify)"),
    ({"name": "moons", "horizon": 2}, "spec.dataset.horizon", "only forecasting datasets (sine)"),
    ({"name": "sine_classify", "horizon": 2}, "spec.dataset.horizon", "forecasting"),
    ({"name": "sine", "sequence_length": 1}, "spec.dataset.sequence_length", "[2, 4096]"),
    ({"name": "sine", "horizon": 0}, "spec.dataset.horizon", "[1, 1024]"),
    ({"name": "sine", "num_samples": 9000000, "sequence_length": 4096},
     "spec.dataset.num_samples", "lower num_samples or sequence_length"),
])
def test_dataset_fields_are_checked_with_their_path(dataset, field, fragment):
    with pytest.raises(errors.InvalidArgument) as info:
        check_spec(json_format.ParseDict({"dataset": dataset, "model": {"mlp": {}}},
                                         spec_pb2.JobSpec()))
    assert info.value.field == field and fragment in info.value.reason


def test_input_kinds():
    def info(shape):
        return DatasetInfo("t", "classification", 2, ("a", "b"), shape, 10)
    assert info((1, 8, 8)).input_kind == "image" and info((1, 8, 8)).is_image
    assert info((10, 2)).input_kind == "sequence" and info((10, 2)).is_sequence
    assert info((4,)).input_kind == "tabular" and info((4,)).is_tabular
    assert info((10, 2)).num_features == 20


def test_datasets_module_does_not_import_torch():
    code = ("import sys\n"
            "from trainserve.core.pb import spec_pb2\n"
            "from trainserve.training.datasets import load_dataset\n"
            "for name in ('sine', 'spirals', 'rings'):\n"
            "    load_dataset(spec_pb2.DatasetSpec(name=name, num_samples=20))\n"
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
