"""GANs: the model API (sample, generate, forward), the generation task's validation (each
refusal names its field and the fix), the mode metrics, registry signature and serving, and
short trainings through the loop (2-D rings and 8x8 digits)."""
import numpy as np
import pytest
import torch
from google.protobuf import json_format

from trainserve.core import errors
from trainserve.core.pb import spec_pb2
from trainserve.serve.signature import io_specs
from trainserve.serve.predictor import Predictor
from trainserve.training.artifacts import load_artifact
from trainserve.training.datasets import DatasetInfo
from trainserve.training.gan_task import mode_metrics
from trainserve.training.loop import train
from trainserve.training.reporting import NullReporter
from trainserve.training.tasks import task_info
from trainserve.training.validate import check_spec
from trainserve.training.zoo import build_model


def _raw(gan: dict | None = None, dataset: dict | None = None, **rest):
    return json_format.ParseDict(
        {"dataset": dataset or {"name": "rings", "noise": 0.1}, "model": {"gan": gan or {}},
         **rest}, spec_pb2.JobSpec())


def _spec(gan: dict | None = None, dataset: dict | None = None, **rest):
    return check_spec(_raw(gan, dataset, **rest))


def _model(shape, **fields):
    spec = _spec(fields)
    info = task_info(spec, DatasetInfo("t", "classification", 8, tuple("abcdefgh"), shape, 100))
    return build_model(spec, info).eval()


def test_defaults_and_task():
    spec = _spec()
    g = spec.model.gan
    assert (list(g.generator_hidden), list(g.discriminator_hidden), g.latent_dim,
            g.discriminator_steps, g.discriminator_lr_multiplier, g.activation,
            g.discriminator_activation, g.output_activation, g.generator_batch_norm) == (
        [64, 64], [64, 64], 8, 1, 1.0, "relu", "leaky_relu", "none", False)
    assert spec.loss.name == "non_saturating"
    info = task_info(spec, DatasetInfo("rings", "classification", 8, tuple("abcdefgh"), (2,),
                                       800))
    assert (info.task, info.num_classes) == ("generation", 0)


@pytest.mark.parametrize("shape", [(2,), (1, 8, 8)])
def test_model_api_shapes(shape):
    model = _model(shape, latent_dim=4)
    samples = model.sample(5)
    assert samples.shape == (5, *shape)
    assert model.generate(torch.zeros(3, 4)).shape == (3, *shape)
    assert model(samples).shape == (5, 1)


def test_sampling_is_deterministic_with_a_seed():
    model = _model((2,))
    a = model.sample(16, torch.Generator().manual_seed(3))
    b = model.sample(16, torch.Generator().manual_seed(3))
    c = model.sample(16, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("raw,field", [
    (_raw(loss={"name": "mse"}), "spec.loss.name"),
    (_raw(loss={"classWeights": [1.0] * 8}), "spec.loss.class_weights"),
    (_raw(training={"earlyStopping": {}}), "spec.training.early_stopping"),
    (_raw(training={"regularization": {"l2": 0.1}}), "spec.training.regularization.l2"),
    (_raw(optimizer={"name": "gd"}), "spec.optimizer.name"),
    (_raw(optimizer={"scheduler": {"name": "cosine"}}), "spec.optimizer.scheduler.name"),
    (_raw(optimizer={"warmupEpochs": 2}), "spec.optimizer.warmup_epochs"),
    (_raw(split={"folds": 3}), "spec.split.folds"),
    (_raw(scaling={"numWorkers": 2}), "spec.scaling.num_workers"),
    (_raw({"latentDim": 0}), "spec.model.gan.latent_dim"),
    (_raw({"discriminatorSteps": 11}), "spec.model.gan.discriminator_steps"),
    (_raw({"discriminatorLrMultiplier": -1}), "spec.model.gan.discriminator_lr_multiplier"),
    (_raw({"generatorHidden": [0]}), "spec.model.gan.generator_hidden[0]"),
    (_raw({"discriminatorActivation": "nope"}), "spec.model.gan.discriminator_activation"),
    (_raw({"outputActivation": "nope"}), "spec.model.gan.output_activation"),
    (_raw({"generatorBatchNorm": True}, training={"batchSize": 1}), "spec.training.batch_size"),
])
def test_refusals_name_the_field(raw, field):
    with pytest.raises(errors.InvalidArgument) as info:
        check_spec(raw)
    assert info.value.field == field


def test_more_than_one_worker_is_refused_with_the_reason_and_the_fix():
    with pytest.raises(errors.InvalidArgument) as info:
        check_spec(_raw(scaling={"numWorkers": 2}))
    assert "would not be averaged" in info.value.reason
    assert "set spec.scaling.num_workers to 1" in info.value.reason


def test_generator_batch_norm_and_output_activation():
    plain = _model((1, 8, 8))
    model = _model((1, 8, 8), generatorBatchNorm=True, outputActivation="sigmoid")
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in plain.modules())
    norms = [m for m in model.generator if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(norms) == 2 and not any(isinstance(m, torch.nn.BatchNorm1d)
                                       for m in model.discriminator)
    samples = model.sample(64, torch.Generator().manual_seed(0))  # eval: running statistics
    assert samples.min() >= 0 and samples.max() <= 1
    # The linear layers keep the names of the plain stack (fc1, fc2, ...): older artifacts load.
    assert set(plain.state_dict()) <= set(model.state_dict())


def test_mode_metrics():
    angle = torch.arange(8).repeat(50) * (2 * np.pi / 8)
    y = torch.arange(8).repeat(50)
    gen = torch.Generator().manual_seed(0)
    x = torch.stack([angle.cos(), angle.sin()], 1) * 2 + 0.05 * torch.randn(400, 2,
                                                                           generator=gen)
    assert mode_metrics(x, x, y) == {"modes_covered": 8.0,
                                     "high_quality_fraction": pytest.approx(0.989, abs=0.03)}
    # All samples on one mode: one covered; far away: none and no quality.
    assert mode_metrics(x[y == 0], x, y)["modes_covered"] == 1.0
    far = mode_metrics(torch.full((100, 2), 10.0), x, y)
    assert far == {"modes_covered": 0.0, "high_quality_fraction": 0.0}


def test_registry_signature():
    inputs, outputs = io_specs({"task": "generation", "input_shape": [2]})
    assert [(t.name, t.datatype, list(t.shape)) for t in inputs] == [("num_samples", "INT64",
                                                                      [1])]
    assert [(t.name, t.datatype, list(t.shape)) for t in outputs] == [("samples", "FP32",
                                                                       [-1, 2])]


def _train(tmp_path, spec):
    result = train(spec, tmp_path / "job", NullReporter())
    assert result.status == "succeeded"
    return result


def test_rings_training_metrics_artifact_and_serving(tmp_path):
    spec = _spec({"generatorHidden": [16], "discriminatorHidden": [16]},
                 dataset={"name": "rings", "noise": 0.1, "numSamples": 200},
                 training={"epochs": 2, "batchSize": 32})
    result = _train(tmp_path, spec)
    m = result.metrics
    assert {"test_loss", "test_d_loss", "modes_covered", "high_quality_fraction"} <= set(m)
    assert 0 <= m["modes_covered"] <= 8 and 0 <= m["high_quality_fraction"] <= 1
    loaded = load_artifact(result.artifact_dir)
    assert loaded.meta["task"] == "generation" and loaded.meta["latent_dim"] == 8
    predictor = Predictor(loaded.module, loaded.meta)
    out = predictor.predict(np.array([7], dtype=np.int64))["samples"]
    assert out.shape == (7, 2) and out.dtype == np.float32
    a, b = (predictor.generate(5, seed=1)["samples"] for _ in range(2))
    np.testing.assert_array_equal(a, b)
    # Denormalized: the network's samples times the training scale plus the shift.
    net = loaded.module.sample(5, torch.Generator().manual_seed(1)).detach().numpy()
    np.testing.assert_allclose(a, net * predictor.scale + predictor.shift, rtol=1e-5)
    with pytest.raises(ValueError):
        predictor.predict(np.array([0], dtype=np.int64))


def test_epoch_metrics_and_digits(tmp_path):
    seen = []

    class Rep(NullReporter):
        def epoch(self, epoch, total, metrics, *args, **kwargs):
            seen.append(dict(metrics))
    spec = _spec({"generatorHidden": [32], "discriminatorHidden": [32], "latentDim": 16,
                  "discriminatorSteps": 2}, dataset={"name": "digits"},
                 training={"epochs": 1, "batchSize": 64})
    result = train(spec, tmp_path / "job", Rep())
    assert result.status == "succeeded"
    assert {"train_loss", "g_loss", "d_loss", "val_loss", "val_d_loss"} <= set(seen[0])
    assert seen[0]["train_loss"] == seen[0]["g_loss"]
    assert "modes_covered" not in result.metrics
    samples = load_artifact(result.artifact_dir).module.sample(3)
    assert samples.shape == (3, 1, 8, 8) and torch.isfinite(samples).all()
