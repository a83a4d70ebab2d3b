"""Image augmentation: the transforms, their seeding, and that only training batches see it."""
import pytest
import torch
from google.protobuf import json_format

from trainserve.core.pb import spec_pb2
from trainserve.training import loop
from trainserve.training.augment import Augmenter
from trainserve.training.data import prepare_data
from trainserve.training.reporting import ListReporter
from trainserve.training.validate import check_spec

SHAPE = (1, 8, 8)


def _augmenter(shift=0.0, scale=1.0, **fields):
    spec = spec_pb2.AugmentationSpec(**fields)
    n = 64
    return Augmenter(spec, [shift] * n, [scale] * n, SHAPE, torch.device("cpu"))


def _images(n=16):
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(7))


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_flips_are_exact_and_about_half():
    x = _images(200)
    out = _augmenter(horizontal_flip=True)(x, _gen())
    flipped = (out == x.flip(-1)).flatten(1).all(dim=1)
    kept = (out == x).flatten(1).all(dim=1)
    assert bool((flipped | kept).all()) and 60 < int(flipped.sum()) < 140


def test_a_tiny_warp_is_nearly_the_identity_and_transforms_work_in_pixel_space():
    x = _images()
    assert torch.allclose(_augmenter(rotation_degrees=1e-4)(x, _gen()), x, atol=1e-3)
    # normalized inputs: brightness scales the original pixels, not the normalized values
    aug = _augmenter(shift=0.5, scale=0.25, brightness=0.5)
    out = aug(x, _gen())
    raw_in, raw_out = x * 0.25 + 0.5, out * 0.25 + 0.5
    ratio = raw_out / raw_in
    assert torch.allclose(ratio, ratio[:, :1, :1, :1].expand_as(ratio), atol=1e-4)
    assert 0.5 <= float(ratio.min()) and float(ratio.max()) <= 1.5


def test_seeded_noise_and_every_transform_together():
    x = _images()
    aug = _augmenter(horizontal_flip=True, vertical_flip=True, rotation_degrees=20,
                     translate=0.1, scale_min=0.8, scale_max=1.2, brightness=0.2,
                     contrast=0.2, gaussian_noise=0.1)
    a, b, c = aug(x, _gen(1)), aug(x, _gen(1)), aug(x, _gen(2))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    noise = _augmenter(gaussian_noise=0.5)(_images(500), _gen()) - _images(500)
    assert float(noise.std()) == pytest.approx(0.5, rel=0.05)


def _recording(monkeypatch):
    """Patch the loop's model builder to record every forward input with the mode."""
    seen = []
    build = loop.build_model

    def recording_build(spec, info):
        model = build(spec, info)
        model.register_forward_pre_hook(
            lambda module, args: seen.append((module.training, args[0].detach().clone())))
        return model
    monkeypatch.setattr(loop, "build_model", recording_build)
    return seen


def _digits(**augmentation):
    return check_spec(json_format.ParseDict(
        {"dataset": {"name": "digits", "augmentation": augmentation},
         "model": {"mlp": {"hidden": [8]}}, "training": {"epochs": 2, "batch_size": 256}},
        spec_pb2.JobSpec()))


def test_training_batches_are_augmented_and_val_test_never(tmp_path, monkeypatch):
    spec = _digits(rotation_degrees=15, translate=0.1, brightness=0.2, gaussian_noise=0.1)
    seen = _recording(monkeypatch)
    loop.train(spec, tmp_path / "a", ListReporter())
    data = prepare_data(spec)
    x_train = torch.from_numpy(data.x_train)
    trained = [x for training, x in seen if training]
    evaluated = torch.cat([x for training, x in seen if not training])
    assert sum(len(x) for x in trained) == 2 * len(x_train)
    # no augmented training row equals any original one
    flat = torch.cat(trained).flatten(1)
    distance = torch.cdist(flat[:300], x_train.flatten(1)).min(dim=1).values
    assert float(distance.min()) > 1e-3
    # evaluation saw exactly the val split (each epoch) and then the test split, untouched
    expected = torch.cat([torch.from_numpy(a) for a in (data.x_val, data.x_val, data.x_test)])
    assert torch.equal(evaluated, expected)
    # seeded per epoch: the same job augments identically, the two epochs differently
    first = torch.cat(trained)
    seen.clear()
    loop.train(spec, tmp_path / "b", ListReporter())
    assert torch.equal(torch.cat([x for training, x in seen if training]), first)
    half = len(first) // 2
    assert not torch.allclose(first[:half].sort(0).values, first[half:].sort(0).values)


def test_without_augmentation_training_sees_the_original_rows(tmp_path, monkeypatch):
    seen = _recording(monkeypatch)
    loop.train(_digits(), tmp_path, ListReporter())
    x_train = torch.from_numpy(prepare_data(_digits()).x_train)
    trained = torch.cat([x for training, x in seen if training])
    assert torch.equal(trained[:len(x_train)].sort(0).values, x_train.sort(0).values)


def test_quarter_turns_are_exact_and_each_about_a_quarter():
    x = _images(400)
    out = _augmenter(rotate90=True)(x, _gen())
    which = torch.stack([(out == torch.rot90(x, k, dims=(-2, -1))).flatten(1).all(dim=1)
                         for k in range(4)])
    assert bool((which.sum(dim=0) == 1).all())  # every image is exactly one of the four
    assert all(60 < int(c) < 140 for c in which.sum(dim=1))


def test_quarter_turns_need_square_images():
    spec = json_format.ParseDict(
        {"dataset": {"name": "phantoms", "num_samples": 100,
                     "augmentation": {"rotate90": True, "horizontal_flip": True}},
         "model": {"cnn": {}}}, spec_pb2.JobSpec())
    assert check_spec(spec).dataset.augmentation.rotate90
    from trainserve.core import errors
    from trainserve.training.augment import check_augmentation
    from trainserve.training.datasets import DatasetInfo
    wide = DatasetInfo("wide", "classification", 2, ("a", "b"), (1, 8, 16), 10)
    with pytest.raises(errors.InvalidArgument) as e:
        check_augmentation(spec_pb2.AugmentationSpec(rotate90=True), wide)
    assert e.value.field == "spec.dataset.augmentation.rotate90" and "8 x 16" in e.value.reason
