"""check_spec for the training options: defaults, and every error with its field path."""
import pytest
from google.protobuf import json_format

from trainserve.core import errors
from trainserve.core.pb import spec_pb2
from trainserve.training.stopping import epoch_metric_names
from trainserve.training.validate import check_spec


def _check(d: dict) -> spec_pb2.JobSpec:
    return check_spec(json_format.ParseDict(d, spec_pb2.JobSpec()))


def _spec(dataset="iris", model=None, **sections) -> dict:
    return {"dataset": {"name": dataset}, "model": model or {"mlp": {}}} | sections


def test_defaults_show_the_effective_values():
    spec = _check(_spec(training={"early_stopping": {}}))
    es = spec.training.early_stopping
    assert (es.metric, es.mode, es.patience, es.min_delta) == ("val_loss", "min", 5, 0)
    assert es.HasField("restore_best") and es.restore_best
    assert spec.optimizer.scheduler.name == "none" and spec.optimizer.warmup_epochs == 0
    assert spec.optimizer.grad_clip == 0 and spec.split.folds == 0
    assert not spec.loss.HasField("huber_delta")
    assert _check(_spec("diabetes", loss={"name": "huber"})).loss.huber_delta == 1.0


@pytest.mark.parametrize("metric,mode", [("val_accuracy", "max"), ("train_accuracy", "max"),
                                         ("train_loss", "min")])
def test_early_stopping_mode_follows_the_metric(metric, mode):
    spec = _check(_spec(training={"early_stopping": {"metric": metric}}))
    assert spec.training.early_stopping.mode == mode


def test_early_stopping_regression_metrics():
    for metric, mode in (("val_r2", "max"), ("val_mae", "min"), ("val_mse", "min")):
        spec = _check(_spec("diabetes", training={"early_stopping": {"metric": metric}}))
        assert spec.training.early_stopping.mode == mode
    assert epoch_metric_names("regression", True) == [
        "train_loss", "train_mae", "val_loss", "val_mse", "val_mae", "val_r2"]


def test_scheduler_defaults_per_name():
    step = _check(_spec(optimizer={"scheduler": {"name": "step"}})).optimizer.scheduler
    assert (step.step_size, step.gamma) == (10, pytest.approx(0.1))
    plateau = _check(_spec(optimizer={"scheduler": {"name": "plateau"}})).optimizer.scheduler
    assert (plateau.patience, plateau.gamma, plateau.min_lr) == (5, pytest.approx(0.1), 0)
    assert not plateau.HasField("step_size")
    cosine = _check(_spec(optimizer={"scheduler": {"name": "cosine", "min_lr": 1e-5}}))
    assert cosine.optimizer.scheduler.min_lr == pytest.approx(1e-5)


def test_perceptron_optimizer_implies_its_loss_and_lr():
    spec = _check(_spec("xor", optimizer={"name": "perceptron"}))
    assert spec.loss.name == "perceptron" and spec.optimizer.lr == 1.0
    assert _check(_spec("xor", optimizer={"name": "gd"})).optimizer.lr == pytest.approx(0.1)


def test_folds_make_val_fraction_zero_and_check_is_idempotent():
    spec = _check(_spec(split={"folds": 5}))
    assert spec.split.folds == 5 and spec.split.HasField("val_fraction")
    assert spec.split.val_fraction == 0
    assert check_spec(spec) == spec
    # early stopping on a val_ metric is fine with folds (they validate)
    _check(_spec(split={"folds": 3}, training={"early_stopping": {"metric": "val_accuracy"}}))


def test_augmentation_accepted_on_images():
    aug = {"horizontal_flip": True, "rotation_degrees": 10, "translate": 0.1,
           "scale_min": 0.9, "scale_max": 1.1, "brightness": 0.2, "contrast": 0.2,
           "gaussian_noise": 0.1}
    spec = _check({"dataset": {"name": "digits", "augmentation": aug}, "model": {"lenet5": {}}})
    assert spec.dataset.augmentation.scale_max == pytest.approx(1.1)


AUG = "spec.dataset.augmentation"
INVALID = [
    # (spec, field, message fragment)
    (_spec("diabetes", loss={"name": "bce"}), "spec.loss.name", "use one of huber, mae, mse"),
    (_spec(loss={"name": "bce"}), "spec.loss.name", "use cross_entropy"),
    (_spec("wine", loss={"name": "bce"}), "spec.loss.name", "'wine' has 3"),
    (_spec("diabetes", loss={"name": "perceptron"}), "spec.loss.name", "does not fit regression"),
    (_spec(loss={"huber_delta": 2}), "spec.loss.huber_delta", "only huber"),
    (_spec("diabetes", loss={"name": "mse", "huber_delta": 2}), "spec.loss.huber_delta",
     "only huber"),
    (_spec("diabetes", loss={"name": "huber", "huber_delta": 0}), "spec.loss.huber_delta", "> 0"),
    (_spec("diabetes", loss={"name": "huber", "huber_delta": -1}), "spec.loss.huber_delta",
     "> 0"),
    (_spec(optimizer={"name": "perceptron"}, loss={"name": "cross_entropy"}), "spec.loss.name",
     "trains with the perceptron loss"),
    (_spec(optimizer={"name": "perceptron", "weight_decay": 0.1}),
     "spec.optimizer.weight_decay", "perceptron takes no weight_decay"),
    (_spec(optimizer={"name": "perceptron", "momentum": 0.9}), "spec.optimizer.momentum",
     "only gd, rmsprop, sgd"),
    (_spec(optimizer={"name": "perceptron"}, scaling={"num_workers": 2}),
     "spec.scaling.num_workers", "use 1 worker"),
    (_spec(model={"mlp": {"batch_norm": True}}, optimizer={"name": "perceptron"}),
     "spec.model.mlp.batch_norm", "turn it off"),
    (_spec(optimizer={"grad_clip": -1}), "spec.optimizer.grad_clip", "must be in [0,"),
    (_spec(optimizer={"grad_clip": "NaN"}), "spec.optimizer.grad_clip", "must be in [0,"),
    (_spec(optimizer={"warmup_epochs": -1}), "spec.optimizer.warmup_epochs", "[0, 10)"),
    (_spec(optimizer={"warmup_epochs": 10}), "spec.optimizer.warmup_epochs", "[0, 10)"),
    (_spec(optimizer={"scheduler": {"name": "exp"}}), "spec.optimizer.scheduler.name",
     "known: cosine, none, plateau, step"),
    (_spec(optimizer={"scheduler": {"name": "step", "step_size": 0}}),
     "spec.optimizer.scheduler.step_size", "must be in [1,"),
    (_spec(optimizer={"scheduler": {"name": "step", "gamma": 0}}),
     "spec.optimizer.scheduler.gamma", "(0, 1)"),
    (_spec(optimizer={"scheduler": {"name": "plateau", "gamma": 1.5}}),
     "spec.optimizer.scheduler.gamma", "(0, 1)"),
    (_spec(optimizer={"scheduler": {"name": "plateau", "patience": 0}}),
     "spec.optimizer.scheduler.patience", "must be in [1,"),
    (_spec(optimizer={"scheduler": {"name": "cosine", "min_lr": -1}}),
     "spec.optimizer.scheduler.min_lr", "must be in [0,"),
    (_spec(optimizer={"lr": 0.01, "scheduler": {"name": "cosine", "min_lr": 0.1}}),
     "spec.optimizer.scheduler.min_lr", "[0, 0.01)"),
    (_spec(optimizer={"scheduler": {"name": "cosine", "step_size": 3}}),
     "spec.optimizer.scheduler.step_size", "only step do"),
    (_spec(optimizer={"scheduler": {"name": "step", "min_lr": 0.0001}}),
     "spec.optimizer.scheduler.min_lr", "only cosine, plateau do"),
    (_spec(optimizer={"scheduler": {"patience": 3}}), "spec.optimizer.scheduler.patience",
     "'none' does not use patience"),
    (_spec(training={"early_stopping": {"metric": "val_sensitivity"}}),
     "spec.training.early_stopping.metric",
     "known: train_loss, train_accuracy, val_loss, val_accuracy"),
    (_spec("diabetes", training={"early_stopping": {"metric": "val_accuracy"}}),
     "spec.training.early_stopping.metric", "val_mse, val_mae, val_r2"),
    (_spec(split={"val_fraction": 0}, training={"early_stopping": {}}),
     "spec.training.early_stopping.metric", "no validation split: set spec.split.val_fraction"),
    (_spec(training={"early_stopping": {"mode": "up"}}), "spec.training.early_stopping.mode",
     "known: max, min"),
    (_spec(training={"early_stopping": {"patience": 0}}),
     "spec.training.early_stopping.patience", "must be in [1,"),
    (_spec(training={"early_stopping": {"min_delta": -0.1}}),
     "spec.training.early_stopping.min_delta", "must be in [0,"),
    (_spec(training={"regularization": {"l1": -1}}), "spec.training.regularization.l1",
     "must be in [0,"),
    (_spec(training={"regularization": {"l2": "Infinity"}}), "spec.training.regularization.l2",
     "must be in [0,"),
    (_spec(split={"folds": -1}), "spec.split.folds", "must be in [0, 50]"),
    (_spec(split={"folds": 51}), "spec.split.folds", "must be in [0, 50]"),
    (_spec(split={"folds": 5, "val_fraction": 0.1}), "spec.split.val_fraction",
     "remove val_fraction or set it to 0"),
    (_spec(split={"folds": 50}), "spec.split.folds", "needs at least 3"),
    ({"dataset": {"name": "iris", "augmentation": {"horizontal_flip": True}},
      "model": {"mlp": {}}}, f"{AUG}.horizontal_flip", "needs image inputs"),
    ({"dataset": {"name": "iris", "augmentation": {"gaussian_noise": 0.1}},
      "model": {"mlp": {}}}, f"{AUG}.gaussian_noise", "needs image inputs"),
]
_DIGITS_AUG = [
    ({"rotation_degrees": 200}, "rotation_degrees", "[0, 180]"),
    ({"rotation_degrees": -5}, "rotation_degrees", "[0, 180]"),
    ({"translate": 0.5}, "translate", "[0, 0.5)"),
    ({"scale_min": 0.9}, "scale_max", "set scale_min and scale_max together"),
    ({"scale_max": 1.1}, "scale_min", "set scale_min and scale_max together"),
    ({"scale_min": 1.2, "scale_max": 1.1}, "scale_max", "[1.2, 4]"),
    ({"scale_min": -1, "scale_max": 1.1}, "scale_min", "(0, 4]"),
    ({"brightness": 1}, "brightness", "[0, 1)"),
    ({"contrast": -0.1}, "contrast", "[0, 1)"),
    ({"gaussian_noise": -1}, "gaussian_noise", "must be in [0,"),
]
INVALID += [({"dataset": {"name": "digits", "augmentation": aug}, "model": {"lenet5": {}}},
             f"{AUG}.{field}", fragment) for aug, field, fragment in _DIGITS_AUG]


@pytest.mark.parametrize("spec,field,fragment", INVALID,
                         ids=[f"{f}:{i}" for i, (_, f, _) in enumerate(INVALID)])
def test_invalid_option_names_its_field(spec, field, fragment):
    with pytest.raises(errors.InvalidArgument) as info:
        _check(spec)
    assert info.value.field == field
    assert fragment in info.value.reason, info.value.reason
    assert str(info.value).startswith(f"{field}: ")
