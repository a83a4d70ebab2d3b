"""The lesion phantoms: deterministic, balanced, shaped as the registry says, a lesion exactly in
the images labelled so, noise and blur as asked, and the NPZ writer's files as an upload
describes them."""
from __future__ import annotations

import numpy as np
import pytest

from trainserve.core.pb import spec_pb2
from trainserve.training.datasets import dataset_info, load_dataset
from trainserve.training.datasets.phantoms import (CLASS_NAMES, DEFAULT_NOISE, INNER,
                                                   LESION_RADIUS, RIM, SIZE_TASKS, TISSUE,
                                                   diameter_px, main, make_lesion_sizes,
                                                   make_phantoms)
from trainserve.training.describe import describe


def test_the_generator_is_deterministic_and_balanced():
    x, y = make_phantoms(101, 32, seed=3)
    x2, y2 = make_phantoms(101, 32, seed=3)
    assert x.shape == (101, 1, 32, 32) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert abs(int(y.sum()) - 50) <= 1
    assert not np.array_equal(make_phantoms(101, 32, seed=4)[0], x)


def test_a_lesion_is_in_exactly_the_images_labelled_so():
    """Without blur and noise a slice holds only the background, rim, tissue and inner
    intensities; a lesion adds a value of its own."""
    x, y = make_phantoms(200, 32, seed=0, noise=0.0, blur_px=0.0)
    levels = np.array([0.0, INNER, TISSUE, RIM], dtype=np.float32)
    plain = np.isin(x.reshape(len(x), -1), levels).all(axis=1)
    np.testing.assert_array_equal(plain, y == 0)
    assert (x == RIM).any(axis=(1, 2, 3)).all()            # every body has its rim


def test_noise_and_blur_are_as_asked():
    clean, _ = make_phantoms(20, 32, seed=1, noise=0.0, blur_px=0.0)
    noisy, _ = make_phantoms(20, 32, seed=1, noise=0.3, blur_px=0.0)
    assert abs(float((noisy - clean).std()) - 0.3) < 0.01
    blurred, _ = make_phantoms(20, 32, seed=1, noise=0.0, blur_px=1.0)
    edges = lambda a: np.abs(np.diff(a, axis=-1)).mean()  # noqa: E731
    assert edges(blurred) < 0.8 * edges(clean)


@pytest.mark.parametrize("name, size", [("phantoms", 32), ("phantoms64", 64)])
def test_the_builtin_datasets_match_their_info(name, size):
    spec = spec_pb2.DatasetSpec(name=name, num_samples=40)
    info = dataset_info(spec)
    x, y = load_dataset(spec)
    assert info.input_shape == (1, size, size) and info.class_names == CLASS_NAMES
    assert x.shape == (40, *info.input_shape) and info.num_samples == 40
    assert set(y.tolist()) == {0, 1}
    again = spec_pb2.DatasetSpec(name=name, num_samples=40, noise=DEFAULT_NOISE)
    np.testing.assert_array_equal(load_dataset(again)[0], x)   # noise 0: the default
    assert dataset_info(spec_pb2.DatasetSpec(name=name)).num_samples == 2000


def test_the_npz_writer_makes_an_upload(tmp_path):
    path = tmp_path / "b.npz"
    main(["--out", str(path), "--num-samples", "30", "--seed", "7", "--noise", "0.3"])
    schema = describe(path, "npz")[0]
    assert list(schema.x.shape) == [30, 1, 32, 32] and schema.x.dtype == "<f4"
    assert sorted(schema.y.classes) == ["lesion", "normal"]
    with np.load(path) as npz:
        x, y = make_phantoms(30, 32, seed=7, noise=0.3)
        np.testing.assert_array_equal(npz["x"], x)
        assert npz["y"].tolist() == [CLASS_NAMES[i] for i in y]
    flat = tmp_path / "flat.npz"
    main(["--out", str(flat), "--num-samples", "5", "--size", "64", "--no-channel-axis"])
    assert list(describe(flat, "npz")[0].x.shape) == [5, 64, 64]


def test_lesion_sizes_are_deterministic_shaped_and_in_range():
    x, y = make_lesion_sizes(150, 32, seed=3)
    x2, y2 = make_lesion_sizes(150, 32, seed=3)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert x.shape == (150, 1, 32, 32) and x.dtype == np.float32
    assert y.shape == (150,) and y.dtype == np.float32
    low, high = (r * 31 for r in LESION_RADIUS)
    assert low <= y.min() and y.max() <= high and y.max() - y.min() > 0.8 * (high - low)
    assert not np.array_equal(make_lesion_sizes(150, 32, seed=4)[1], y)
    assert diameter_px(np.array([0.5]), 64)[0] == pytest.approx(31.5)  # half the field


def test_every_size_image_holds_its_lesion_of_that_diameter():
    """Without blur and noise, the pixels a lesion brightened are counted: every image has
    some, and their number follows the disc's area, pi (d / 2)^2."""
    x, d = make_lesion_sizes(300, 32, seed=0, noise=0.0, blur_px=0.0)
    levels = np.array([0.0, INNER, TISSUE, RIM], dtype=np.float32)
    lesion_px = (~np.isin(x.reshape(len(x), -1), levels)).sum(axis=1)
    assert (lesion_px > 0).all()
    area = np.pi * (d / 2) ** 2
    assert np.corrcoef(lesion_px, area)[0, 1] > 0.95
    assert abs(float(np.median(lesion_px / area)) - 1) < 0.15


@pytest.mark.parametrize("name", sorted(SIZE_TASKS))
def test_the_size_datasets_are_regressions_of_their_info(name):
    size = SIZE_TASKS[name]
    spec = spec_pb2.DatasetSpec(name=name, num_samples=24)
    info = dataset_info(spec)
    assert info.task == "regression" and info.num_classes == 0 and info.output_dim == 1
    x, y = load_dataset(spec)
    assert info.input_shape == (1, size, size) and x.shape == (24, 1, size, size)
    assert y.shape == (24,) and y.dtype == np.float32 and (y > 0).all()
    np.testing.assert_array_equal(load_dataset(spec)[1], y)
