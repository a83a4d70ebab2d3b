"""check_spec: every default, every validation error with its field path."""
import pytest
from google.protobuf import json_format

from trainserve.core import errors
from trainserve.core.pb import spec_pb2
from trainserve.training.validate import check_spec


def _parse(d: dict) -> spec_pb2.JobSpec:
    return json_format.ParseDict(d, spec_pb2.JobSpec())


def _minimal(dataset="iris", model=None) -> dict:
    return {"dataset": {"name": dataset}, "model": model or {"mlp": {}}}


def _merge(base: dict, patch: dict) -> dict:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for key, value in patch.items():
        # `model` is a oneof: a patch replaces the architecture instead of adding one.
        if key != "model" and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def test_classification_defaults():
    spec = check_spec(_parse(_minimal("iris")))
    assert spec.dataset.normalize == "standard"
    assert not spec.dataset.HasField("num_samples")
    assert spec.split.test_fraction == 0.2 and spec.split.val_fraction == 0.1
    assert spec.split.HasField("stratify") and spec.split.stratify
    assert list(spec.model.mlp.hidden) == [64] and spec.model.mlp.activation == "relu"
    assert spec.model.mlp.dropout == 0 and not spec.model.mlp.batch_norm
    assert spec.loss.name == "cross_entropy"
    assert spec.optimizer.name == "adam" and spec.optimizer.lr == pytest.approx(1e-3)
    assert spec.training.epochs == 10 and spec.training.batch_size == 32
    assert spec.training.seed == 0 and spec.training.checkpoint_every_s == 5


def test_regression_defaults():
    spec = check_spec(_parse(_minimal("diabetes")))
    assert spec.loss.name == "mse"
    assert spec.split.HasField("stratify") and not spec.split.stratify


def test_synthetic_and_lenet_and_sgd_defaults():
    spec = check_spec(_parse({"dataset": {"name": "xor"}, "model": {"mlp": {}},
                              "optimizer": {"name": "sgd"}}))
    assert spec.dataset.num_samples == 200
    assert spec.optimizer.lr == pytest.approx(1e-2)
    lenet = check_spec(_parse(_minimal("digits", {"lenet5": {}})))
    assert lenet.model.lenet5.activation == "relu" and lenet.model.lenet5.pooling == "max"


def test_explicit_values_are_kept():
    d = {"dataset": {"name": "xor", "num_samples": 64, "noise": 0.1, "normalize": "none"},
         "split": {"test_fraction": 0.25, "val_fraction": 0.0, "stratify": False},
         "model": {"mlp": {"hidden": [8, 4], "activation": "tanh", "dropout": 0.2}},
         "optimizer": {"name": "sgd", "lr": 0.5, "momentum": 0.9, "nesterov": True},
         "training": {"epochs": 3, "batch_size": 7, "seed": 42, "checkpoint_every_s": 0.5}}
    got = json_format.MessageToDict(check_spec(_parse(d)))
    for key in ("init", "initStd", "leakyReluSlope", "eluAlpha"):  # the zoo's model-wide fields
        got["model"].pop(key, None)
    expected = json_format.MessageToDict(_parse(d)) | {"loss": {"name": "cross_entropy"}}
    expected["optimizer"]["scheduler"] = {"name": "none"}
    assert got == expected


def test_input_is_not_modified_and_check_is_idempotent():
    original = _parse(_minimal("wine"))
    before = original.SerializeToString()
    once = check_spec(original)
    assert original.SerializeToString() == before
    assert check_spec(once) == once


def test_name_scaling_deploy_are_left_alone():
    d = _minimal() | {"name": "", "scaling": {"num_workers": 0, "cpus_per_worker": -1},
                      "deploy": {}, "labels": {"a": "b"}}
    spec = check_spec(_parse(d))
    assert spec.name == "" and spec.scaling == _parse(d).scaling
    assert spec.HasField("deploy") and spec.deploy.name == "" and dict(spec.labels) == {"a": "b"}


INVALID = [
    # (patch on the minimal iris/mlp spec, field, message fragment)
    ({"dataset": {"name": "mnist"}}, "spec.dataset.name",
     "known: breast_cancer, "),
    ({"dataset": {"normalize": "zscore"}}, "spec.dataset.normalize", "known: minmax, none"),
    ({"dataset": {"num_samples": 100}}, "spec.dataset.num_samples", "only synthetic"),
    ({"dataset": {"noise": 0.1}}, "spec.dataset.noise", "only synthetic"),
    ({"dataset": {"name": "xor", "num_samples": 2}}, "spec.dataset.num_samples", "must be in"),
    ({"dataset": {"name": "xor", "noise": -1}}, "spec.dataset.noise", "must be in"),
    ({"split": {"test_fraction": 0}}, "spec.split.test_fraction", "(0, 1)"),
    ({"split": {"test_fraction": 1}}, "spec.split.test_fraction", "(0, 1)"),
    ({"split": {"test_fraction": "NaN"}}, "spec.split.test_fraction", "(0, 1)"),
    ({"split": {"val_fraction": -0.1}}, "spec.split.val_fraction", "[0, 1)"),
    ({"split": {"val_fraction": 1}}, "spec.split.val_fraction", "[0, 1)"),
    ({"split": {"test_fraction": 0.6, "val_fraction": 0.4}}, "spec.split.val_fraction",
     "test_fraction + val_fraction must be < 1"),
    ({"split": {"test_fraction": 0.01}}, "spec.split.test_fraction", "needs at least 3"),
    ({"split": {"val_fraction": 0.005}}, "spec.split.val_fraction", "needs at least 3"),
    ({"dataset": {"name": "diabetes"}, "split": {"stratify": True}}, "spec.split.stratify",
     "classification"),
    ({"training": {"epochs": 0}}, "spec.training.epochs", "must be in [1,"),
    ({"training": {"epochs": -5}}, "spec.training.epochs", "must be in [1,"),
    ({"training": {"batch_size": 0}}, "spec.training.batch_size", "must be in [1,"),
    ({"training": {"checkpoint_every_s": -1}}, "spec.training.checkpoint_every_s",
     "must be in [0, 86400]"),
    ({"training": {"checkpoint_every_s": "NaN"}}, "spec.training.checkpoint_every_s",
     "must be in [0, 86400]"),
    ({"model": {"mlp": {"hidden": [8, 0]}}}, "spec.model.mlp.hidden[1]", "width"),
    ({"model": {"mlp": {"hidden": [-3]}}}, "spec.model.mlp.hidden[0]", "width"),
    ({"model": {"mlp": {"activation": "swish"}}}, "spec.model.mlp.activation",
     "known: elu, gelu, leaky_relu, relu, sigmoid, tanh"),
    ({"model": {"mlp": {"dropout": 1.0}}}, "spec.model.mlp.dropout", "[0, 1)"),
    ({"model": {"mlp": {"dropout": -0.1}}}, "spec.model.mlp.dropout", "[0, 1)"),
    ({"model": {"mlp": {"batch_norm": True}}, "training": {"batch_size": 1}},
     "spec.training.batch_size", "batch_norm"),
    ({"model": {"lenet5": {}}}, "spec.model.lenet5", "needs image input"),
    ({"dataset": {"name": "digits"}, "model": {"lenet5": {"pooling": "min"}}},
     "spec.model.lenet5.pooling", "known: avg, max"),
    ({"dataset": {"name": "digits"}, "model": {"lenet5": {"activation": "x"}}},
     "spec.model.lenet5.activation", "known:"),
    ({"dataset": {"name": "digits"}, "model": {"lenet5": {"dropout": 2}}},
     "spec.model.lenet5.dropout", "[0, 1)"),
    ({"loss": {"name": "hinge"}}, "spec.loss.name", "known: bce, cross_entropy, huber"),
    ({"loss": {"name": "mse"}}, "spec.loss.name", "use one of cross_entropy, perceptron"),
    ({"dataset": {"name": "diabetes"}, "loss": {"name": "cross_entropy"}}, "spec.loss.name",
     "use one of huber, mae, mse"),
    ({"loss": {"class_weights": [1, 2]}}, "spec.loss.class_weights", "one weight per class (3"),
    ({"loss": {"class_weights": [1, 0, 1]}}, "spec.loss.class_weights[1]", "> 0"),
    ({"dataset": {"name": "breast_cancer"}, "loss": {"name": "bce", "class_weights": [1, 1]}},
     "spec.loss.class_weights", "only cross_entropy"),
    ({"optimizer": {"name": "lbfgs"}}, "spec.optimizer.name",
     "known: adam, adamw, gd, perceptron, rmsprop, sgd"),
    ({"optimizer": {"lr": 0}}, "spec.optimizer.lr", "> 0"),
    ({"optimizer": {"lr": -1e-3}}, "spec.optimizer.lr", "> 0"),
    ({"optimizer": {"lr": "Infinity"}}, "spec.optimizer.lr", "> 0"),
    ({"optimizer": {"weight_decay": -1}}, "spec.optimizer.weight_decay", "must be in"),
    ({"optimizer": {"momentum": 0.9}}, "spec.optimizer.momentum", "only gd, rmsprop, sgd"),
    ({"optimizer": {"name": "sgd", "momentum": 1.5}}, "spec.optimizer.momentum", "[0, 1)"),
    ({"optimizer": {"nesterov": True}}, "spec.optimizer.nesterov", "only gd, sgd"),
    ({"optimizer": {"name": "sgd", "nesterov": True}}, "spec.optimizer.nesterov",
     "momentum > 0"),
]


@pytest.mark.parametrize("patch,field,fragment", INVALID,
                         ids=[f"{f}:{i}" for i, (_, f, _) in enumerate(INVALID)])
def test_invalid_fields_name_their_path(patch, field, fragment):
    with pytest.raises(errors.InvalidArgument) as info:
        check_spec(_parse(_merge(_minimal(), patch)))
    assert info.value.field == field
    assert fragment in info.value.reason
    assert str(info.value).startswith(f"{field}: ")


@pytest.mark.parametrize("spec,field", [
    ({"model": {"mlp": {}}}, "spec.dataset"),
    ({"dataset": {"normalize": "none"}, "model": {"mlp": {}}}, "spec.dataset.name"),
    ({"dataset": {"name": "iris"}}, "spec.model"),
    ({"dataset": {"name": "iris"}, "model": {}}, "spec.model"),
])
def test_missing_dataset_or_model_is_required(spec, field):
    with pytest.raises(errors.InvalidArgument, match="required") as info:
        check_spec(_parse(spec))
    assert info.value.field == field


def test_lenet_refusal_says_what_to_do():
    with pytest.raises(errors.InvalidArgument) as info:
        check_spec(_parse(_minimal("wine", {"lenet5": {}})))
    assert "tabular" in info.value.reason and "use mlp" in info.value.reason


@pytest.mark.parametrize("dataset,loss", [("iris", "cross_entropy"), ("iris", "perceptron"),
                                          ("breast_cancer", "bce"), ("xor", "bce")])
def test_classification_losses_accepted(dataset, loss):
    spec = check_spec(_parse(_merge(_minimal(dataset), {"loss": {"name": loss}})))
    assert spec.loss.name == loss and not spec.loss.HasField("huber_delta")


@pytest.mark.parametrize("loss", ["mse", "mae", "huber"])
def test_regression_losses_accepted(loss):
    spec = check_spec(_parse(_merge(_minimal("diabetes"), {"loss": {"name": loss}})))
    assert spec.loss.name == loss
