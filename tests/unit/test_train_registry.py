"""Registry behaviour and the built-in registrations."""
import pytest

from trainserve.training.activations import ACTIVATIONS, make_activation
from trainserve.training.datasets import DATASETS
from trainserve.training.losses import LOSSES
from trainserve.training.optimizers import OPTIMIZERS
from trainserve.training.registry import Registry
from trainserve.training.zoo import ARCHITECTURES


def test_register_get_names():
    reg = Registry[int]("widget")
    reg.register("b", 2)
    assert reg.register("a")(1) == 1  # decorator form returns the entry
    assert reg.get("a") == 1 and reg.get("b") == 2
    assert reg.names() == ["a", "b"]
    assert "a" in reg and "c" not in reg and len(reg) == 2


def test_unknown_name_lists_known_names():
    reg = Registry[int]("widget")
    reg.register("alpha", 1)
    reg.register("beta", 2)
    with pytest.raises(ValueError, match=r"unknown widget 'gamma'; known: alpha, beta"):
        reg.get("gamma")


def test_duplicate_name_is_refused_and_lists_names():
    reg = Registry[int]("widget")
    reg.register("alpha", 1)
    with pytest.raises(ValueError, match=r"widget 'alpha' is already registered.*alpha"):
        reg.register("alpha", 2)
    assert reg.get("alpha") == 1


def test_empty_name_is_refused():
    with pytest.raises(ValueError, match="non-empty"):
        Registry[int]("widget").register("", 1)


def test_builtin_registrations():
    assert DATASETS.names() == ["breast_cancer", "circles", "corpus", "corpus_mlm", "corpus_source",
                                "diabetes", "digit_reversal",
                                "digits", "iris",
                                "moons", "phantoms", "phantoms64", "phantoms64_size",
                                "phantoms_size", "rings", "sine",
                                "sine_classify", "spirals",
                                "spirals3", "wine", "xor"]
    assert ARCHITECTURES.names() == ["autoencoder", "bert", "cnn", "gan", "gpt", "lenet5", "mlp", "perceptron",
                                     "rbf", "resnet", "rnn", "seq2seq", "transformer"]
    assert LOSSES.names() == ["bce", "cross_entropy", "huber", "mae", "mse", "non_saturating",
                              "perceptron"]
    assert OPTIMIZERS.names() == ["adam", "adamw", "gd", "perceptron", "rmsprop", "sgd"]
    assert ACTIVATIONS.names() == ["elu", "gelu", "leaky_relu", "relu", "sigmoid", "tanh"]


def test_architectures_are_keyed_by_the_model_oneof():
    from trainserve.core.pb import spec_pb2
    oneof = spec_pb2.ModelSpec.DESCRIPTOR.oneofs_by_name["arch"]
    assert sorted(f.name for f in oneof.fields) == ARCHITECTURES.names()


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_activation_factories_make_fresh_modules(name):
    import torch
    a, b = make_activation(name), make_activation(name)
    assert a is not b and isinstance(a, torch.nn.Module)
    assert a(torch.zeros(3)).shape == (3,)
