"""Optimizers defined by their update granularity: full-batch gd and the perceptron rule."""
import pytest
import torch
from google.protobuf import json_format
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from trainserve.core import errors
from trainserve.core.pb import spec_pb2
from trainserve.training.artifacts import load_artifact
from trainserve.training.loop import train
from trainserve.training.reporting import ListReporter
from trainserve.training.validate import check_spec
from trainserve.training.zoo import ARCHITECTURES, Architecture

XOR = {"dataset": {"name": "xor", "normalize": "none"}, "split": {"test_fraction": 0.25}}
CORNERS = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_LABELS = torch.tensor([0, 1, 1, 0])


def _spec(d: dict) -> spec_pb2.JobSpec:
    return check_spec(json_format.ParseDict(d, spec_pb2.JobSpec()))


@pytest.fixture
def perceptron_arch():
    """The zoo's perceptron when it is registered; else a stand-in with the same shape (one
    linear unit per class), so the optimizer's behaviour is tested either way."""
    if "perceptron" in ARCHITECTURES:
        yield
        return

    def build(msg, info):
        return nn.Sequential(nn.Flatten(), nn.Linear(info.num_features, info.output_dim))
    ARCHITECTURES.register("perceptron", Architecture(lambda m: None,
                                                      lambda m, p, i, s: None, build))
    yield
    ARCHITECTURES._entries.pop("perceptron")


@pytest.fixture
def count_steps():
    steps = []
    handle = register_optimizer_step_post_hook(lambda opt, args, kwargs: steps.append(1))
    yield steps
    handle.remove()


def test_gd_takes_exactly_one_step_per_epoch(tmp_path, count_steps):
    spec = _spec(XOR | {"model": {"mlp": {"hidden": [8], "activation": "tanh"}},
                        "optimizer": {"name": "gd", "lr": 0.5},
                        "training": {"epochs": 7, "batch_size": 4}})
    result = train(spec, tmp_path, ListReporter())
    assert len(count_steps) == 7 and result.status == "succeeded"


def test_sgd_steps_once_per_batch(tmp_path, count_steps):
    spec = _spec(XOR | {"model": {"mlp": {"hidden": [4]}}, "optimizer": {"name": "sgd"},
                        "training": {"epochs": 2, "batch_size": 50}})
    train(spec, tmp_path, ListReporter())
    assert len(count_steps) == 2 * 3  # 130 training samples: 50 + 50 + 30


def test_perceptron_rule_steps_once_per_sample(tmp_path, count_steps, perceptron_arch):
    spec = _spec(XOR | {"model": {"perceptron": {}}, "optimizer": {"name": "perceptron"},
                        "training": {"epochs": 2}})
    train(spec, tmp_path, ListReporter())
    assert len(count_steps) == 2 * 130


def test_perceptron_rule_fails_on_xor_where_an_mlp_succeeds(tmp_path, perceptron_arch):
    rule = _spec(XOR | {"model": {"perceptron": {}}, "optimizer": {"name": "perceptron"},
                        "training": {"epochs": 10}})
    mlp = _spec(XOR | {"model": {"mlp": {"hidden": [8], "activation": "tanh"}},
                       "optimizer": {"lr": 0.05}, "training": {"epochs": 30, "batch_size": 16}})
    linear = train(rule, tmp_path / "perceptron", ListReporter())
    deep = train(mlp, tmp_path / "mlp", ListReporter())
    assert deep.metrics["test_accuracy"] == 1.0
    assert linear.metrics["test_accuracy"] < 1.0
    # No line separates XOR: at most 3 of its 4 points can be right.
    for name, most in (("perceptron", 0.75), ("mlp", 1.0)):
        module = load_artifact(tmp_path / name / "artifact").module
        with torch.no_grad():
            right = (module(CORNERS).argmax(1) == XOR_LABELS).float().mean().item()
        assert right <= most and (name == "perceptron" or right == 1.0)


def test_perceptron_rule_learns_a_nearly_separable_set(tmp_path, perceptron_arch):
    spec = _spec({"dataset": {"name": "breast_cancer"}, "model": {"perceptron": {}},
                  "optimizer": {"name": "perceptron"}, "training": {"epochs": 3}})
    assert train(spec, tmp_path, ListReporter()).metrics["test_accuracy"] > 0.9


def test_perceptron_rule_refuses_several_workers(tmp_path, perceptron_arch):
    spec = _spec(XOR | {"model": {"perceptron": {}}, "optimizer": {"name": "perceptron"}})
    with pytest.raises(errors.TrainingError, match="num_workers = 1"):
        train(spec, tmp_path, ListReporter(), world_size=2)  # fails before any collective


def test_adam_betas_reach_the_torch_optimizer():
    from trainserve.training.optimizers import build_optimizer
    spec = check_spec(_spec({"dataset": {"name": "xor"}, "model": {"mlp": {}},
                             "optimizer": {"name": "adam", "betas": [0.5, 0.99]}}))
    opt = build_optimizer(nn.Linear(2, 1).parameters(), spec.optimizer)
    assert opt.param_groups[0]["betas"] == (0.5, 0.99)
    default = check_spec(_spec({"dataset": {"name": "xor"}, "model": {"mlp": {}}}))
    assert build_optimizer(nn.Linear(2, 1).parameters(),
                           default.optimizer).param_groups[0]["betas"] == (0.9, 0.999)


@pytest.mark.parametrize("name,torch_cls", [("adam", "Adam"), ("adamw", "AdamW")])
def test_adam_runs_fused_on_cpu_and_steps_as_the_unfused_one(name, torch_cls):
    from trainserve.training.optimizers import build_optimizer
    spec = check_spec(_spec({"dataset": {"name": "xor"}, "model": {"mlp": {}},
                             "optimizer": {"name": name, "lr": 0.01, "weight_decay": 0.1}}))
    torch.manual_seed(0)
    ours, plain = nn.Linear(8, 3), nn.Linear(8, 3)
    plain.load_state_dict(ours.state_dict())
    opt = build_optimizer(ours.parameters(), spec.optimizer)
    assert opt.defaults["fused"] is True
    ref = getattr(torch.optim, torch_cls)(plain.parameters(), lr=0.01, weight_decay=0.1)
    x, y = torch.randn(32, 8), torch.randn(32, 3)
    for _ in range(20):
        for model, o in ((ours, opt), (plain, ref)):
            o.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            o.step()
    for a, b in zip(ours.parameters(), plain.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("optimizer,field", [
    ({"name": "sgd", "betas": [0.5, 0.9]}, "spec.optimizer.betas"),
    ({"name": "adam", "betas": [0.5]}, "spec.optimizer.betas"),
    ({"name": "adamw", "betas": [0.5, 1.0]}, "spec.optimizer.betas[1]"),
])
def test_bad_betas_are_refused_with_their_field(optimizer, field):
    with pytest.raises(errors.InvalidArgument) as exc:
        check_spec(_spec({"dataset": {"name": "xor"}, "model": {"mlp": {}},
                          "optimizer": optimizer}))
    assert exc.value.field == field
