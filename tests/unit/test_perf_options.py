"""spec.training.performance (autocast, channels_last, compile) and the loop's fast data path:
validation with field paths, and correctness of training with each option on CPU."""
from __future__ import annotations

import math
import os

import pytest
import torch
from google.protobuf import json_format

from trainserve.core import errors
from trainserve.core.pb import spec_pb2
from trainserve.training import loop
from trainserve.training.reporting import ListReporter
from trainserve.training.validate import check_spec


def _spec(dataset="digits", model=None, epochs=2, **performance) -> spec_pb2.JobSpec:
    d = {"dataset": {"name": dataset},
         "model": model or {"lenet5": {"activation": "relu", "pooling": "max"}},
         "optimizer": {"name": "adam", "lr": 0.003},
         "training": {"epochs": epochs, "batch_size": 64, "seed": 0,
                      "performance": performance}}
    return json_format.ParseDict(d, spec_pb2.JobSpec())


def _train(spec, tmp_path, **kw):
    rep = ListReporter()
    result = loop.train(check_spec(spec), tmp_path, rep, **kw)
    assert result.status == "succeeded"
    return result, rep


@pytest.mark.parametrize("perf,field,words", [
    ({"autocast": "fp16"}, "spec.training.performance.autocast", "bf16"),
    ({"channels_last": True}, "spec.training.performance.channels_last", "image"),
])
def test_invalid_options_name_their_field(perf, field, words):
    spec = _spec("iris", {"mlp": {}}, **perf)
    with pytest.raises(errors.InvalidArgument) as exc:
        check_spec(spec)
    assert exc.value.field == field and words in exc.value.message


def test_compile_is_refused_for_gans():
    spec = json_format.ParseDict({"dataset": {"name": "rings"}, "model": {"gan": {}},
                                  "training": {"performance": {"compile": True}}},
                                 spec_pb2.JobSpec())
    with pytest.raises(errors.InvalidArgument) as exc:
        check_spec(spec)
    assert exc.value.field == "spec.training.performance.compile"


def test_defaults_leave_the_spec_unchanged():
    spec = check_spec(_spec("iris", {"mlp": {}}))
    assert spec.training.performance.autocast == ""  # "" means none
    assert not spec.training.performance.channels_last and not spec.training.performance.compile
    for mode in ("none", "bf16"):
        assert check_spec(_spec(autocast=mode)).training.performance.autocast == mode


def test_bf16_autocast_trains_on_cpu(tmp_path):
    base, _ = _train(_spec(epochs=3), tmp_path / "fp32")
    bf16, rep = _train(_spec(epochs=3, autocast="bf16"), tmp_path / "bf16")
    assert all(math.isfinite(e.metrics["train_loss"]) for e in rep.epochs)
    # bf16 rounds the activations: close to, not equal to, float32 training.
    assert bf16.metrics["test_accuracy"] > 0.6
    assert abs(bf16.metrics["test_accuracy"] - base.metrics["test_accuracy"]) < 0.15
    assert rep.epochs[-1].metrics["val_loss"] < rep.epochs[0].metrics["val_loss"] * 1.5


def test_channels_last_trains_the_same_model(tmp_path):
    base, _ = _train(_spec(epochs=2, channels_last=False), tmp_path / "a")
    cl, _ = _train(_spec(epochs=2, channels_last=True), tmp_path / "b")
    assert cl.metrics["test_loss"] == pytest.approx(base.metrics["test_loss"], rel=1e-3)


@pytest.mark.parametrize("dataset,model,perf,device,expected", [
    ("digits", None, {}, "cpu", True),  # unset: image inputs on a CPU
    ("digits", None, {"channels_last": False}, "cpu", False),  # asked off
    ("iris", {"mlp": {}}, {}, "cpu", False),  # not an image
    ("digits", None, {}, "cuda", False),  # float32 on a GPU: left as it was
    ("digits", None, {"autocast": "bf16"}, "cuda", True),
])
def test_channels_last_unset_is_chosen_by_input_and_device(dataset, model, perf, device,
                                                           expected):
    from trainserve.training.data import prepare_data
    spec = check_spec(_spec(dataset, model, **perf))
    info = prepare_data(spec).info
    assert loop.use_channels_last(spec.training.performance, info,
                                  torch.device(device)) is expected


def test_compile_wraps_the_training_forward_only(tmp_path, monkeypatch):
    """The loop hands the training model to torch.compile (replaced here by a recording
    wrapper: compiling for real takes a minute on this machine; see the slow test below)."""
    compiled = []

    def fake_compile(model, **kw):
        compiled.append(model)
        return model
    monkeypatch.setattr(torch, "compile", fake_compile)
    _train(_spec("xor", {"mlp": {"hidden": [8]}}, epochs=1, compile=True), tmp_path)
    assert len(compiled) == 1 and isinstance(compiled[0], torch.nn.Module)


@pytest.mark.skipif(not os.environ.get("TRAINSERVE_SLOW_TESTS"),
                    reason="torch.compile takes about a minute here; TRAINSERVE_SLOW_TESTS=1")
def test_compile_trains_a_tiny_model(tmp_path):
    spec = _spec("xor", {"mlp": {"hidden": [8]}}, epochs=2, compile=True)
    result, _ = _train(spec, tmp_path)
    assert math.isfinite(result.metrics["test_loss"])


def test_deferred_training_sums_equal_per_step_sums(tmp_path, monkeypatch):
    """The supervised task's sums are reduced from kept outputs; flushing after every step
    gives the same train metrics as flushing once an epoch."""
    spec = _spec("iris", {"mlp": {"hidden": [16]}}, epochs=2)
    spec.training.batch_size = 8
    _, once = _train(spec, tmp_path / "once")
    monkeypatch.setattr(loop, "SUMS_FLUSH", 1)
    _, every = _train(spec, tmp_path / "every")
    for a, b in zip(once.epochs, every.epochs):
        assert a.metrics["train_accuracy"] == b.metrics["train_accuracy"]
        assert a.metrics["train_loss"] == pytest.approx(b.metrics["train_loss"], rel=1e-6)


def test_batches_are_views_of_one_gather_an_epoch():
    """_global_batches keeps its rule for the short last batch."""
    t = loop._Trainer.__new__(loop._Trainer)
    t.step_samples, t.world_size = 4, 2
    assert list(t._global_batches(10)) == [(0, 4), (4, 8)]  # 2 left: < 2 per rank, dropped
    assert list(t._global_batches(12)) == [(0, 4), (4, 8), (8, 12)]
    t.world_size = 1
    assert list(t._global_batches(10)) == [(0, 4), (4, 8), (8, 10)]
