"""Zoo architectures: output shapes per input kind, refusals of bad combinations, weight init,
activation parameters, and the RBF data-dependent initialization."""
import pytest
import torch
from google.protobuf import json_format

from trainserve.core import errors
from trainserve.core.pb import spec_pb2
from trainserve.training.datasets import DatasetInfo
from trainserve.training.init import INITS, apply_init
from trainserve.training.validate import check_spec
from trainserve.training.zoo import (apply_model_defaults, build_model, get_architecture,
                                  init_from_data)

IMAGE, SEQUENCE, TABULAR = (1, 8, 8), (12, 3), (5,)


def _info(shape, task="classification", classes=4, targets=1):
    names = tuple(str(i) for i in range(classes)) if task == "classification" else ()
    return DatasetInfo("t", task, len(names), names, shape, 100, num_targets=targets)


def _model(arch: str, **fields) -> spec_pb2.JobSpec:
    """A spec with only `model` set, defaulted as validation would (no dataset needed)."""
    spec = json_format.ParseDict({"model": {arch: fields}}, spec_pb2.JobSpec())
    get_architecture(arch).apply_defaults(getattr(spec.model, arch))
    apply_model_defaults(spec.model)
    return spec


def _check(dataset: dict, model: dict, **rest) -> spec_pb2.JobSpec:
    return check_spec(json_format.ParseDict({"dataset": dataset, "model": model, **rest},
                                            spec_pb2.JobSpec()))


BUILDS = [
    ("perceptron", {}, [TABULAR, IMAGE, SEQUENCE]),
    ("rbf", {"centers": 7}, [TABULAR, IMAGE]),
    ("cnn", {}, [IMAGE, (3, 28, 28)]),
    ("cnn", {"channels": [4, 4, 4], "batch_norm": True, "pooling": "avg", "kernel_size": 5,
             "hidden": [], "dropout": 0.2, "activation": "elu"}, [IMAGE]),
    ("resnet", {"preset": "tiny"}, [IMAGE, (1, 28, 28), (3, 5, 7)]),
    ("rnn", {}, [SEQUENCE]),
    ("rnn", {"cell": "gru", "num_layers": 2, "bidirectional": True, "dropout": 0.1}, [SEQUENCE]),
    ("rnn", {"cell": "rnn", "hidden_size": 8}, [SEQUENCE]),
    ("transformer", {"d_model": 16, "num_heads": 2}, [SEQUENCE, TABULAR]),
    ("transformer", {"d_model": 15, "num_heads": 3, "pooling": "cls", "positional": "learned"},
     [SEQUENCE, TABULAR]),
]


@pytest.mark.parametrize("arch,fields,shapes", BUILDS,
                         ids=[f"{a}-{i}" for i, (a, _, _) in enumerate(BUILDS)])
def test_output_shapes_for_each_input_kind(arch, fields, shapes):
    spec = _model(arch, **fields)
    for shape in shapes:
        model = build_model(spec, _info(shape, classes=4)).eval()
        assert model(torch.randn(3, *shape)).shape == (3, 4)
        if arch != "perceptron":  # regression: one value, or a forecast of several
            reg = build_model(spec, _info(shape, "regression", targets=5)).eval()
            assert reg(torch.randn(2, *shape)).shape == (2, 5)


def test_resnet_small_preset_sizes():
    spec = _model("resnet")
    assert list(spec.model.resnet.channels) == [16, 32, 64]
    assert spec.model.resnet.blocks_per_stage == 2
    for shape in [(1, 8, 8), (1, 28, 28)]:
        assert build_model(spec, _info(shape, classes=10))(torch.randn(2, *shape)).shape == (2, 10)


def test_bidirectional_head_reads_both_directions():
    model = build_model(_model("rnn", hidden_size=6, bidirectional=True), _info(SEQUENCE))
    assert model.head.in_features == 12


def test_perceptron_is_one_linear_layer_of_scores():
    model = build_model(_model("perceptron"), _info(TABULAR, classes=2))
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linear) == 1 and linear[0].weight.shape == (2, 5)
    x = torch.randn(4, 5)
    assert torch.allclose(model(x), x @ linear[0].weight.T + linear[0].bias)


REFUSED = [
    ({"name": "iris"}, {"cnn": {}}, "spec.model.cnn", "use mlp"),
    ({"name": "sine"}, {"cnn": {}}, "spec.model.cnn", "use rnn or transformer"),
    ({"name": "iris"}, {"resnet": {}}, "spec.model.resnet", "tabular"),
    ({"name": "sine_classify"}, {"lenet5": {}}, "spec.model.lenet5", "use rnn or transformer"),
    ({"name": "digits"}, {"rnn": {}}, "spec.model.rnn", "use cnn or resnet for images"),
    ({"name": "digits"}, {"transformer": {}}, "spec.model.transformer",
     "use cnn or resnet for images"),
    ({"name": "wine"}, {"rnn": {}}, "spec.model.rnn", "needs sequence input"),
    ({"name": "diabetes"}, {"perceptron": {}}, "spec.model.perceptron", "use mlp"),
    ({"name": "digits"}, {"cnn": {"channels": [4, 4, 4, 4]}}, "spec.model.cnn.channels",
     "at most 3 fit"),
    ({"name": "digits"}, {"cnn": {"kernel_size": 4}}, "spec.model.cnn.kernel_size", "odd"),
    ({"name": "digits"}, {"cnn": {"pooling": "min"}}, "spec.model.cnn.pooling", "known: avg, max"),
    ({"name": "digits"}, {"cnn": {"channels": [8, 0]}}, "spec.model.cnn.channels[1]", "[1,"),
    ({"name": "digits"}, {"resnet": {"preset": "huge"}}, "spec.model.resnet.preset",
     "known: small, tiny"),
    ({"name": "sine"}, {"rnn": {"cell": "lstn"}}, "spec.model.rnn.cell", "known: gru, lstm, rnn"),
    ({"name": "sine"}, {"rnn": {"dropout": 0.3}}, "spec.model.rnn.dropout", "num_layers >= 2"),
    ({"name": "sine"}, {"transformer": {"d_model": 30, "num_heads": 4}},
     "spec.model.transformer.num_heads", "divide d_model"),
    ({"name": "sine"}, {"transformer": {"pooling": "max"}}, "spec.model.transformer.pooling",
     "known: cls, mean"),
    ({"name": "sine"}, {"transformer": {"positional": "rope"}},
     "spec.model.transformer.positional", "known: learned, sinusoidal"),
    ({"name": "moons"}, {"rbf": {"init_centers": "grid"}}, "spec.model.rbf.init_centers",
     "known: kmeans, random"),
    ({"name": "moons", "num_samples": 20}, {"rbf": {"centers": 64}}, "spec.model.rbf.centers",
     "training samples"),
    ({"name": "moons"}, {"mlp": {}, "init": "orthogonal"}, "spec.model.init", "known: default"),
    ({"name": "moons"}, {"mlp": {}, "init_std": 0}, "spec.model.init_std", "> 0"),
    ({"name": "moons"}, {"mlp": {}, "leaky_relu_slope": 2}, "spec.model.leaky_relu_slope", "[0, 1]"),
    ({"name": "moons"}, {"mlp": {}, "elu_alpha": -1}, "spec.model.elu_alpha", "> 0"),
    ({"name": "digits"}, {"resnet": {"activation": "swish"}}, "spec.model.resnet.activation",
     "known: elu, gelu"),
    ({"name": "sine"}, {"transformer": {"activation": "step"}},
     "spec.model.transformer.activation", "known: elu, gelu"),
    ({"name": "sine"}, {"rnn": {"activation": "relu"}}, "spec.model.rnn.activation",
     "cell 'rnn' only"),
    ({"name": "sine"}, {"rnn": {"cell": "rnn", "activation": "gelu"}},
     "spec.model.rnn.activation", "tanh or relu"),
]


@pytest.mark.parametrize("dataset,model,field,fragment", REFUSED,
                         ids=[f"{f}:{i}" for i, (_, _, f, _) in enumerate(REFUSED)])
def test_bad_combinations_name_the_field_and_the_fix(dataset, model, field, fragment):
    with pytest.raises(errors.InvalidArgument) as info:
        _check(dataset, model)
    assert info.value.field == field
    assert fragment in info.value.reason


def test_resnet_refuses_batch_of_one_and_the_per_sample_rule():
    with pytest.raises(errors.InvalidArgument) as info:
        _check({"name": "digits"}, {"resnet": {}}, training={"batch_size": 1})
    assert info.value.field == "spec.training.batch_size"
    with pytest.raises(errors.InvalidArgument) as info:
        _check({"name": "digits"}, {"resnet": {}}, optimizer={"name": "perceptron"})
    assert info.value.field == "spec.optimizer.name"


def test_model_defaults_are_written_into_the_spec():
    spec = _check({"name": "sine"}, {"transformer": {"d_model": 16}})
    assert spec.model.init == "default" and spec.model.init_std == pytest.approx(0.02)
    assert spec.model.leaky_relu_slope == pytest.approx(0.01)
    assert spec.model.elu_alpha == pytest.approx(1.0)
    t = spec.model.transformer
    assert (t.num_heads, t.num_layers, t.dim_feedforward, t.positional, t.pooling) == \
        (4, 2, 64, "sinusoidal", "mean")


def _weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("name", [n for n in INITS.names() if n != "default"])
def test_init_changes_layer_weights_and_zeroes_biases(name):
    spec = _model("mlp", hidden=[64])
    torch.manual_seed(0)
    default = _weights(build_model(spec, _info(TABULAR)))
    spec.model.init = name
    torch.manual_seed(0)
    model = build_model(spec, _info(TABULAR))
    after = _weights(model)
    assert not torch.equal(after["fc1.weight"], default["fc1.weight"])
    assert torch.count_nonzero(after["fc1.bias"]) == 0
    w = model.fc1.weight
    if name == "normal":
        assert w.std().item() == pytest.approx(0.02, rel=0.2)
    if name.startswith("xavier"):  # variance 2 / (fan_in + fan_out)
        assert w.var().item() == pytest.approx(2 / (5 + 64), rel=0.35)
    if name.startswith("kaiming"):  # variance 2 / fan_in (ReLU gain)
        assert w.var().item() == pytest.approx(2 / 5, rel=0.35)


def test_init_std_sets_the_normal_spread_and_default_leaves_pytorch_init():
    spec = _model("cnn", channels=[8])
    spec.model.init, spec.model.init_std = "normal", 0.5
    torch.manual_seed(0)
    model = build_model(spec, _info(IMAGE))
    assert model.conv1.weight.std().item() == pytest.approx(0.5, rel=0.2)
    assert apply_init(model, "default") == 0


def test_init_reaches_recurrent_and_attention_weights():
    for arch, fields, shape in [("rnn", {}, SEQUENCE),
                                ("transformer", {"d_model": 16, "num_heads": 2}, SEQUENCE)]:
        spec = _model(arch, **fields)
        spec.model.init, spec.model.init_std = "normal", 1e-4
        model = build_model(spec, _info(shape))
        for name, p in model.named_parameters():
            if name.endswith(("weight_ih_l0", "weight_hh_l0", "in_proj_weight")):
                assert p.abs().max().item() < 1e-3, name


def test_activation_parameters_reach_the_layers():
    spec = _model("mlp", hidden=[4], activation="leaky_relu")
    spec.model.leaky_relu_slope = 0.3
    assert build_model(spec, _info(TABULAR)).act1.negative_slope == pytest.approx(0.3)
    spec = _model("cnn", channels=[4], activation="elu")
    spec.model.elu_alpha = 0.5
    assert build_model(spec, _info(IMAGE)).act1.alpha == pytest.approx(0.5)


def test_activation_choice_reaches_resnet_transformer_and_elman_rnn():
    resnet = build_model(_model("resnet", preset="tiny", activation="elu"), _info(IMAGE))
    assert isinstance(resnet.stages[0][0].act1, torch.nn.ELU)
    assert isinstance(resnet.stem[2], torch.nn.ELU)
    default = build_model(_model("resnet", preset="tiny"), _info(IMAGE))
    assert isinstance(default.stages[0][0].act2, torch.nn.ReLU)
    transformer = build_model(_model("transformer", d_model=8, num_heads=2,
                                     activation="relu"), _info(SEQUENCE))
    assert isinstance(transformer.encoder.layers[0].activation, torch.nn.ReLU)
    assert _model("transformer").model.transformer.activation == "gelu"
    rnn = build_model(_model("rnn", cell="rnn", activation="relu"), _info(SEQUENCE))
    assert rnn.rnn.nonlinearity == "relu"
    assert _model("rnn", cell="rnn").model.rnn.activation == "tanh"


def test_kaiming_follows_a_leaky_relu_slope():
    spec = _model("mlp", hidden=[2000], activation="leaky_relu")
    spec.model.init, spec.model.leaky_relu_slope = "kaiming_normal", 1.0
    torch.manual_seed(0)
    # gain^2 = 2 / (1 + slope^2) = 1: variance 1 / fan_in instead of ReLU's 2 / fan_in
    w = build_model(spec, _info((50,))).fc1.weight
    assert w.var().item() == pytest.approx(1 / 50, rel=0.1)


@pytest.mark.parametrize("how", ["kmeans", "random"])
def test_rbf_centres_start_on_the_data(how):
    torch.manual_seed(0)
    blobs = torch.tensor([[-4.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    x = (blobs[torch.arange(300) % 3] + 0.1 * torch.randn(300, 2))
    model = build_model(_model("rbf", centers=3, init_centers=how), _info((2,), classes=3))
    assert init_from_data(model, x.numpy()) == 1
    centres = model.rbf.centers.detach()
    nearest = torch.cdist(centres, x).min(dim=1).values
    assert nearest.max() < 0.5  # every centre sits among the samples
    widths = model.rbf.log_widths.exp().detach()
    assert (widths > 0).all()
    if how == "kmeans":  # one centre per blob, as wide as the blob
        assert torch.cdist(blobs, centres).min(dim=1).values.max() < 0.1
        assert (widths < 0.3).all()
    assert model(x[:4]).shape == (4, 3)
