"""training.diagnostics: per-layer gradient norms and activation statistics against a hand
computation (torch hooks and the parameters' .grad), the layer picking and naming, the spec
checks with their field paths, and the training loop reporting them per epoch only when asked."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from trainserve.core import errors
from trainserve.core.spec import parse_spec
from trainserve.training import diagnostics as D
from trainserve.training.loop import train
from trainserve.training.reporting import ListReporter
from trainserve.training.validate import check_spec


def mlp(activation=nn.Sigmoid, depth=3, width=6) -> nn.Sequential:
    layers, width_in = [], 2
    for _ in range(depth):
        layers += [nn.Linear(width_in, width), activation()]
        width_in = width
    return nn.Sequential(*layers, nn.Linear(width_in, 2))


def test_gradient_norms_are_the_mean_over_steps_of_each_layer_s_norm():
    torch.manual_seed(0)
    model = mlp()
    norms = D.GradientNorms(model)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    by_hand = []
    for _ in range(3):
        x, y = torch.randn(16, 2), torch.randint(0, 2, (16,))
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        norms.step()
        by_hand.append([math.sqrt(float(m.weight.grad.pow(2).sum() + m.bias.grad.pow(2).sum()))
                        for m in linears])
    metrics = norms.epoch_metrics()
    assert list(metrics) == ["grad_norm/01_0", "grad_norm/02_2", "grad_norm/03_4",
                             "grad_norm/04_6"]
    assert np.allclose(list(metrics.values()), np.mean(by_hand, axis=0), rtol=1e-6)
    assert norms.epoch_metrics() == {}  # a new epoch starts from nothing


def test_a_layer_without_gradient_counts_zero_and_frozen_layers_are_not_recorded():
    model = mlp(depth=2)
    model[0].requires_grad_(False)  # frozen, as a transferred layer
    norms = D.GradientNorms(model)
    assert norms.names == ["01_2", "02_4"]
    norms.step()  # no backward yet: every grad is None
    assert norms.epoch_metrics() == {"grad_norm/01_2": 0.0, "grad_norm/02_4": 0.0}


def hand_stats(out: np.ndarray, kind: str) -> list[float]:
    if kind == "sigmoid":
        saturated = np.mean((out < 0.01) | (out > 0.99))
    elif kind == "tanh":
        saturated = np.mean(np.abs(out) > 0.99)
    else:
        saturated = np.mean(~(out > 0).any(axis=0))
    return [out.mean(), out.std(), saturated]


@pytest.mark.parametrize("activation,kind", [(nn.Sigmoid, "sigmoid"), (nn.Tanh, "tanh"),
                                             (nn.ReLU, "relu")])
def test_activation_statistics_match_outputs_caught_by_hooks(activation, kind):
    torch.manual_seed(1)
    model = mlp(activation)
    with torch.no_grad():  # large weights: some units saturate, some ReLUs die
        for m in model:
            if isinstance(m, nn.Linear):
                m.weight.mul_(6.0)
                m.bias.copy_(torch.linspace(-8, 3, len(m.bias)))
    x = torch.randn(64, 2)
    caught = []
    handles = [m.register_forward_hook(lambda mod, i, o: caught.append(o.numpy().copy()))
               for m in model if isinstance(m, activation)]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    probe = D.ActivationProbe(model)
    metrics = probe.measure(lambda: model(x))
    assert len(metrics) == 3 * 3
    for n, out in enumerate(caught):
        name = probe.layers[n][0]
        got = [metrics[f"{stat}/{name}"] for stat in ("act_mean", "act_std", "act_saturated")]
        assert np.allclose(got, hand_stats(out, kind), atol=1e-5), (name, got)
    assert any(metrics[f"act_saturated/{name}"] > 0 for name, _, _ in probe.layers)
    assert not any(m._forward_hooks for m in model)  # the hooks are gone after the probe


def test_a_dead_relu_unit_is_one_that_is_never_positive():
    layer = nn.Linear(2, 4)
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.copy_(torch.tensor([-1.0, 1.0, -0.5, 2.0]))  # units 0 and 2 are dead
    model = nn.Sequential(layer, nn.ReLU())
    metrics = D.ActivationProbe(model).measure(lambda: model(torch.randn(10, 2)))
    assert metrics["act_saturated/01_1"] == 0.5
    # Conv maps: a unit is a channel over every sample and position.
    conv = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU())
    with torch.no_grad():
        conv[0].weight.fill_(1.0)
        conv[0].bias.copy_(torch.tensor([-100.0, 0.0]))
    stats = D.activation_stats(conv(torch.rand(3, 1, 4, 4)), "relu")
    assert float(stats[2]) == 0.5


def test_a_shared_activation_module_reports_the_mean_of_its_calls():
    act = nn.Tanh()
    calls = D.ActivationProbe(nn.Sequential(act))
    metrics = calls.measure(lambda: (act(torch.zeros(4, 3)), act(torch.ones(4, 3) * 10)))
    assert metrics["act_mean/01_0"] == pytest.approx(0.5)
    assert metrics["act_saturated/01_0"] == pytest.approx(0.5)


def test_layers_are_picked_evenly_and_named_in_network_order():
    assert D.pick_evenly(list(range(10)), 4) == [0, 3, 6, 9]
    assert D.pick_evenly([1, 2], 16) == [1, 2]
    assert D.pick_evenly(list(range(5)), 1) == [4]
    deep = mlp(nn.ReLU, depth=20)
    norms = D.GradientNorms(deep, D.MAX_LAYERS)
    assert len(norms.names) == 16
    assert norms.names[0] == "01_0" and norms.names[-1] == "21_40"
    assert norms.names == sorted(norms.names)  # names sort in network order
    assert D.split_name("grad_norm/03_encoder.fc1") == ("grad_norm", "03_encoder.fc1")
    assert D.split_name("val_loss") is None and D.split_name("grad_norm/") is None


SPEC = {"dataset": {"name": "xor"}, "model": {"mlp": {"hidden": [8, 8]}},
        "training": {"epochs": 3}}


def spec_with(diagnostics: dict):
    return check_spec(parse_spec(SPEC | {"training": SPEC["training"] | {
        "diagnostics": diagnostics}}))


@pytest.mark.parametrize("value", [0, 17, -1])
def test_max_layers_out_of_range_names_its_field(value):
    with pytest.raises(errors.InvalidArgument) as err:
        spec_with({"max_layers": value})
    assert err.value.field == "spec.training.diagnostics.max_layers"
    assert "[1, 16]" in str(err.value)


def test_an_unknown_diagnostics_key_names_its_path():
    with pytest.raises(errors.InvalidArgument) as err:
        spec_with({"gradient": True})
    assert "training.diagnostics.gradient" in f"{err.value.field} {err.value}"


def test_defaults_record_nothing_and_plot_everything():
    spec = spec_with({})
    assert D.make_diagnostics(spec, mlp()) is None
    assert D.plots_enabled(spec) and D.max_layers(spec) == 16
    assert not D.plots_enabled(spec_with({"plots": False}))


def test_the_loop_reports_the_statistics_per_epoch_only_when_asked(tmp_path):
    on, off = ListReporter(), ListReporter()
    spec = spec_with({"gradients": True, "activations": True, "max_layers": 2})
    assert train(spec, tmp_path / "on", on).status == "succeeded"
    assert train(spec_with({}), tmp_path / "off", off).status == "succeeded"
    assert len(on.epochs) == 3
    for event in on.epochs:
        names = {k for k in event.metrics if D.split_name(k)}
        # mlp [8, 8]: fc1, fc2, out (the first and last of three picked); act1, act2.
        assert names == {"grad_norm/01_fc1", "grad_norm/03_out",
                         *(f"{s}/{a}" for s in ("act_mean", "act_std", "act_saturated")
                           for a in ("01_act1", "02_act2"))}, names
        assert all(math.isfinite(event.metrics[k]) and event.metrics[k] >= 0
                   for k in names if not k.startswith("act_mean"))
    assert not any(D.split_name(k) for e in off.epochs for k in e.metrics)
    # The statistics only look: the trained weights are the same with and without them.
    assert on.epochs[-1].metrics["train_loss"] == off.epochs[-1].metrics["train_loss"]


IRIS = {"dataset": {"name": "iris"}, "model": {"mlp": {"hidden": [16, 16]}},
        "training": {"epochs": 2, "batch_size": 16,
                     "diagnostics": {"gradients": True, "activations": True}}}


def _ddp_worker(rank, port, job_dirs, queue):
    import os

    import torch.distributed as dist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        reporter = ListReporter()
        train(check_spec(parse_spec(IRIS)), job_dirs[0], reporter, rank=rank, world_size=2)
        queue.put((rank, [e.metrics for e in reporter.epochs]))
    finally:
        dist.destroy_process_group()


def test_with_ddp_every_rank_reports_the_one_process_gradient_norms(tmp_path):
    """DDP's averaged gradients are the global batch's, as in one process (`training.loop`):
    so are their norms, and the ranks report the same statistics."""
    from tests.unit.ddp import run_two_ranks
    (_, rank0), (_, rank1) = run_two_ranks(_ddp_worker, [str(tmp_path / "ddp")])
    single = ListReporter()
    train(check_spec(parse_spec(IRIS)), tmp_path / "one", single)
    assert rank0 == rank1
    for ddp_epoch, one_epoch in zip(rank0, (e.metrics for e in single.epochs)):
        grads = sorted(k for k in one_epoch if k.startswith("grad_norm/"))
        assert len(grads) == 3 and grads == sorted(k for k in ddp_epoch
                                                   if k.startswith("grad_norm/"))
        for k in grads:
            assert ddp_epoch[k] == pytest.approx(one_epoch[k], rel=1e-4), k


def test_the_epoch_log_line_counts_the_statistics_instead_of_listing_them():
    from trainserve.training.reporting import epoch_line
    line = epoch_line(2, 5, {"train_loss": 0.5, "grad_norm/01_fc1": 0.1,
                             "act_mean/01_act1": 0.3}, 1.0)
    assert line == "epoch 2/5: train_loss=0.5 (+2 per-layer statistics) (1.0 s)"
    assert epoch_line(1, 5, {"train_loss": 0.5}, 1.0) == "epoch 1/5: train_loss=0.5 (1.0 s)"
