"""Learning-rate schedules and warm-up: the formulas, and what the loop reports and uses."""
import math

import pytest
import torch
from google.protobuf import json_format

from trainserve.core.pb import spec_pb2
from trainserve.training import checkpoints
from trainserve.training.data import prepare_data
from trainserve.training.loop import train
from trainserve.training.seeds import derive_seed
from trainserve.training.reporting import ListReporter
from trainserve.training.schedule import LRSchedule
from trainserve.training.validate import check_spec
from trainserve.training.zoo import build_model

IRIS = {"dataset": {"name": "iris"}, "model": {"mlp": {"hidden": [16]}},
        "training": {"epochs": 8, "batch_size": 16, "checkpoint_every_s": 0}}  # read per epoch


def _spec(optimizer: dict, **training) -> spec_pb2.JobSpec:
    d = IRIS | {"optimizer": optimizer, "training": IRIS["training"] | training}
    return check_spec(json_format.ParseDict(d, spec_pb2.JobSpec()))


def _lrs(spec, epochs=None):
    sched = LRSchedule(spec.optimizer, spec.training.epochs)
    return [sched.lr(e) for e in range(1, (epochs or spec.training.epochs) + 1)]


def test_step_schedule():
    spec = _spec({"lr": 0.1, "scheduler": {"name": "step", "step_size": 3, "gamma": 0.5}})
    assert _lrs(spec) == pytest.approx([0.1] * 3 + [0.05] * 3 + [0.025] * 2)


def test_warmup_ramps_linearly_then_hands_over_to_the_schedule():
    spec = _spec({"lr": 0.1, "warmup_epochs": 3, "scheduler": {"name": "step", "step_size": 2}})
    assert _lrs(spec) == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.01, 0.01, 0.001])


def test_cosine_from_lr_towards_min_lr():
    spec = _spec({"lr": 0.1, "scheduler": {"name": "cosine", "min_lr": 0.01}}, epochs=4)
    expected = [0.01 + 0.09 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(4)]
    assert _lrs(spec) == pytest.approx(expected)


def test_plateau_decays_after_patience_epochs_without_a_new_best():
    spec = _spec({"lr": 1.0, "scheduler": {"name": "plateau", "patience": 2, "gamma": 0.5,
                                           "min_lr": 0.2}})
    sched = LRSchedule(spec.optimizer, 20)
    seen = []
    for epoch, loss in enumerate([5, 4, 4, 4, 3, 3.5, 3.5, 3.5, 3.5, 3.5, 3.5], start=1):
        seen.append(sched.lr(epoch))
        sched.observe(epoch, {"val_loss": loss})
    assert seen == [1, 1, 1, 1, .5, .5, .5, .25, .25, .2, .2]


def test_the_loop_uses_and_reports_the_scheduled_lr(tmp_path):
    spec = _spec({"name": "sgd", "lr": 0.2, "warmup_epochs": 2,
                  "scheduler": {"name": "step", "step_size": 2, "gamma": 0.1}}, epochs=6)
    rep = ListReporter()
    train(spec, tmp_path, rep, keep_checkpoints=100)
    reported = [e.metrics["lr"] for e in rep.epochs]
    assert reported == pytest.approx(_lrs(spec))
    for epoch, lr in enumerate(reported, start=1):  # the optimizer really ran with it
        state = checkpoints.load_checkpoint(tmp_path / "checkpoints" /
                                            checkpoints.checkpoint_name(epoch))
        assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(lr)


def test_plateau_in_the_loop_follows_val_loss_and_survives_a_resume(tmp_path):
    spec = _spec({"lr": 0.05, "scheduler": {"name": "plateau", "patience": 1, "gamma": 0.5}},
                 epochs=10)
    rep = ListReporter()
    train(spec, tmp_path / "straight", rep)
    lrs, losses = [e.metrics["lr"] for e in rep.epochs], [e.metrics["val_loss"] for e in rep.epochs]
    expected, best, current = [], math.inf, 0.05
    for loss in losses:
        expected.append(current)
        if loss < best:
            best = loss
        else:
            current *= 0.5
    assert lrs == pytest.approx(expected) and min(lrs) < 0.05

    class Crash(Exception):
        pass

    boom = ListReporter()
    boom.epoch = lambda epoch, *a: (_ for _ in ()).throw(Crash()) if epoch == 6 else None
    with pytest.raises(Crash):
        train(spec, tmp_path / "resumed", boom)
    again = ListReporter()
    train(spec, tmp_path / "resumed", again)
    assert [e.metrics["lr"] for e in again.epochs] == pytest.approx(lrs[6:])


def _initial_state(spec):
    torch.manual_seed(derive_seed(spec.training.seed, 0))  # as the loop seeds the init
    return build_model(spec, prepare_data(spec).info).state_dict()


def _moved(job_dir, initial) -> float:
    state = checkpoints.load_checkpoint(job_dir / "checkpoints" /
                                        checkpoints.checkpoint_name(1))["model"]
    return math.sqrt(sum(float(((state[k] - initial[k]) ** 2).sum()) for k in initial))


def test_grad_clip_bounds_every_step(tmp_path):
    # SGD with lr 1 and one step (the batch is the whole training split): the parameters
    # move by exactly the gradient's norm, at most grad_clip.
    free = _spec({"name": "sgd", "lr": 1.0}, epochs=1, batch_size=105)
    clipped = _spec({"name": "sgd", "lr": 1.0, "grad_clip": 1e-3}, epochs=1, batch_size=105)
    train(free, tmp_path / "free", ListReporter())
    train(clipped, tmp_path / "clipped", ListReporter())
    initial = _initial_state(free)
    assert _moved(tmp_path / "clipped", initial) == pytest.approx(1e-3, rel=1e-3)
    assert _moved(tmp_path / "free", initial) > 10 * 1e-3
