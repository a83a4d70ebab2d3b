"""Zoo output shapes, LeNet-5 geometry, and the loss/optimizer builders."""
import pytest
import torch

from trainserve.core.pb import spec_pb2
from trainserve.training.datasets import DatasetInfo
from trainserve.training.losses import LOSSES, build_loss
from trainserve.training.optimizers import OPTIMIZERS, build_optimizer
from trainserve.training.zoo import build_model
from trainserve.training.zoo.lenet5 import geometry


def _info(task="classification", shape=(4,), classes=3):
    names = tuple(str(i) for i in range(classes)) if task == "classification" else ()
    return DatasetInfo("t", task, len(names), names, shape, 100)


def _mlp(**fields):
    spec = spec_pb2.JobSpec()
    spec.model.mlp.hidden.extend(fields.pop("hidden", [16]))
    spec.model.mlp.activation = fields.pop("activation", "relu")
    for k, v in fields.items():
        setattr(spec.model.mlp, k, v)
    return spec


def _lenet(activation="relu", pooling="max", dropout=0.0):
    spec = spec_pb2.JobSpec()
    spec.model.lenet5.activation, spec.model.lenet5.pooling = activation, pooling
    spec.model.lenet5.dropout = dropout
    return spec


@pytest.mark.parametrize("kw", [{}, {"hidden": [8, 8, 8], "activation": "gelu"},
                                {"batch_norm": True, "dropout": 0.5}])
def test_mlp_logits_shape(kw):
    model = build_model(_mlp(**kw), _info(classes=3))
    assert model(torch.randn(5, 4)).shape == (5, 3)


def test_mlp_flattens_images_and_regression_has_one_output():
    assert build_model(_mlp(), _info(shape=(1, 8, 8)))(torch.randn(2, 1, 8, 8)).shape == (2, 3)
    reg = build_model(_mlp(), _info("regression", shape=(10,)))
    assert reg(torch.randn(6, 10)).shape == (6, 1)


def test_regression_output_scale_is_a_saved_buffer():
    reg = build_model(_mlp(), _info("regression", shape=(10,)))
    keys = reg.state_dict().keys()
    assert {"target_scale.shift", "target_scale.scale"} <= set(keys)
    assert all(not name.startswith("target_scale") for name, _ in reg.named_parameters())


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (1, 5, 12), (2, 4, 4)])
@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_lenet5_logits_shape(shape, pooling):
    model = build_model(_lenet(pooling=pooling, dropout=0.2), _info(shape=shape, classes=10))
    assert model(torch.randn(3, *shape)).shape == (3, 10)


def test_lenet5_geometry():
    assert geometry(32, 32) == ((0, 0), (0, 0), (5, 5))   # the original
    assert geometry(28, 28) == ((2, 2), (0, 0), (5, 5))   # MNIST, padded C1
    assert geometry(8, 8) == ((4, 4), (2, 2), (3, 3))     # sklearn digits


def test_lenet5_layers_follow_the_paper():
    model = build_model(_lenet(), _info(shape=(1, 8, 8), classes=10))
    assert (model.c1.out_channels, model.c3.out_channels) == (6, 16)
    assert (model.c5.out_features, model.f6.out_features, model.out.out_features) == (120, 84, 10)
    assert isinstance(model.s2, torch.nn.MaxPool2d)
    assert isinstance(build_model(_lenet(pooling="avg"), _info(shape=(1, 8, 8))).s4,
                      torch.nn.AvgPool2d)


def _loss_batch(tasks):
    """(info, outputs, targets) of 7 samples for a loss fitting `tasks`."""
    if "classification" in tasks:
        info = _info("classification", classes=3)
        return info, torch.randn(7, 3, requires_grad=True), torch.randint(0, 3, (7,))
    if "regression" in tasks:
        info = _info("regression")
        return info, torch.randn(7, 1, requires_grad=True), torch.randn(7)
    # generation (a GAN's discriminator): one logit a sample against real (1) / fake (0)
    info = _info("classification", classes=2)
    return info, torch.randn(7, 1, requires_grad=True), torch.randint(0, 2, (7,)).float()


@pytest.mark.parametrize("name", LOSSES.names())
def test_losses_are_per_sample(name):
    info, out, y = _loss_batch(LOSSES.get(name).tasks)
    per_sample = build_loss(spec_pb2.LossSpec(name=name), info)(out, y)
    assert per_sample.shape == (7,) and (per_sample >= 0).all()
    per_sample.sum().backward()


def test_class_weights_weight_each_sample():
    info = _info(classes=2)
    out, y = torch.zeros(2, 2), torch.tensor([0, 1])
    fn = build_loss(spec_pb2.LossSpec(name="cross_entropy", class_weights=[1.0, 3.0]), info)
    loss = fn(out, y)
    assert loss[1] == pytest.approx(3 * loss[0])


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_optimizers_build_with_the_spec_lr(name):
    params = [torch.nn.Parameter(torch.zeros(2))]
    opt = build_optimizer(params, spec_pb2.OptimizerSpec(name=name, lr=0.123))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.123)
