"""Early stopping: when it stops, which weights become the artifact, resume, the controller."""
import types

import pytest
import torch
from google.protobuf import json_format
from safetensors.torch import load_file

from trainserve.core.pb import spec_pb2
from trainserve.training import checkpoints, loop
from trainserve.training.artifacts import MODEL_FILE, load_artifact
from trainserve.training.data import prepare_data
from trainserve.training.loop import train
from trainserve.training.reporting import ListReporter
from trainserve.training.stopping import EarlyStopping, epoch_metric_names
from trainserve.training.validate import check_spec

# An over-parameterized MLP on a small noisy set: val_loss bottoms out early, then rises.
NOISY = {"dataset": {"name": "xor", "num_samples": 120, "noise": 0.45},
         "model": {"mlp": {"hidden": [128, 128]}}, "optimizer": {"lr": 0.01},
         "split": {"val_fraction": 0.25},
         # A checkpoint every epoch: the tests compare the artifact with given epochs'.
         "training": {"epochs": 150, "batch_size": 16, "checkpoint_every_s": 0}}


def _spec(**early_stopping) -> spec_pb2.JobSpec:
    d = NOISY | {"training": NOISY["training"] | {"early_stopping": early_stopping}}
    return check_spec(json_format.ParseDict(d, spec_pb2.JobSpec()))


def _checkpoint_model(job_dir, epoch):
    return checkpoints.load_checkpoint(job_dir / "checkpoints" /
                                       checkpoints.checkpoint_name(epoch))["model"]


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_stops_early_and_the_best_epoch_becomes_the_artifact(tmp_path):
    rep = ListReporter()
    result = train(_spec(patience=4), tmp_path, rep, keep_checkpoints=1000)
    stopped, best = int(result.metrics["stopped_epoch"]), int(result.metrics["best_epoch"])
    assert stopped < 150 and best == stopped - 4
    assert [e.epoch for e in rep.epochs] == list(range(1, stopped + 1))
    losses = [e.metrics["val_loss"] for e in rep.epochs]
    assert losses.index(min(losses)) + 1 == best
    assert any("early stopping after epoch" in text for _, text in rep.logs)
    # the artifact holds the best epoch's weights, not the last epoch's
    artifact = load_file(str(tmp_path / "artifact" / MODEL_FILE))
    assert _same(artifact, _checkpoint_model(tmp_path, best))
    assert not _same(artifact, _checkpoint_model(tmp_path, stopped))
    # and the test metrics were computed with them
    model, data = load_artifact(tmp_path / "artifact").module, prepare_data(_spec())
    with torch.no_grad():
        pred = model(torch.from_numpy(data.x_test)).argmax(1).numpy()
    assert (pred == data.y_test).mean() == pytest.approx(result.metrics["test_accuracy"])


def test_restore_best_false_keeps_the_last_epoch(tmp_path):
    result = train(_spec(patience=4, restore_best=False), tmp_path, ListReporter(),
                   keep_checkpoints=1)
    stopped = int(result.metrics["stopped_epoch"])
    artifact = load_file(str(tmp_path / "artifact" / MODEL_FILE))
    assert stopped < 150 and _same(artifact, _checkpoint_model(tmp_path, stopped))


def test_the_epoch_early_stopping_ends_on_is_checkpointed(tmp_path, monkeypatch):
    # A frozen clock: the interval never passes, so only a final checkpoint is written.
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(monotonic=lambda: 1000.0))
    spec = _spec(patience=4)
    spec.training.checkpoint_every_s = 5
    result = train(spec, tmp_path, ListReporter(), keep_checkpoints=1000)
    stopped = int(result.metrics["stopped_epoch"])
    assert stopped < 150
    found = checkpoints.list_checkpoints(tmp_path / "checkpoints")
    assert [epoch for epoch, _ in found] == [stopped]
    rep = ListReporter()
    assert train(spec, tmp_path, rep).metrics == result.metrics and rep.epochs == []


def test_a_rerun_after_stopping_trains_no_more(tmp_path):
    first = train(_spec(patience=4), tmp_path, ListReporter())
    rep = ListReporter()
    again = train(_spec(patience=4), tmp_path, rep)
    assert rep.epochs == [] and again.metrics == first.metrics


def test_a_run_that_never_triggers_reports_the_epoch_limit(tmp_path):
    spec = check_spec(json_format.ParseDict(
        {"dataset": {"name": "iris"}, "model": {"mlp": {}},
         "training": {"epochs": 4, "early_stopping": {"metric": "train_loss", "patience": 3}}},
        spec_pb2.JobSpec()))
    rep = ListReporter()
    result = train(spec, tmp_path, rep)
    assert result.metrics["stopped_epoch"] == 4 and result.metrics["best_epoch"] == 4
    assert set(rep.epochs[-1].metrics) - {"lr"} == set(epoch_metric_names("classification",
                                                                          True))


class _Module(torch.nn.Linear):
    def __init__(self):
        super().__init__(1, 1)


@pytest.mark.parametrize("mode,values,stop_at,best", [
    ("min", [1.0, 0.9, 0.95, 0.91, 0.92], 5, 2),
    ("max", [0.5, 0.6, 0.6, 0.55, 0.6], 5, 2),
    ("min", [1.0, 0.95, 0.94, 0.93, 0.5], 4, 1),  # improvements below min_delta do not count
])
def test_controller_patience_mode_and_min_delta(mode, values, stop_at, best):
    min_delta = 0.1 if values[1] == 0.95 else 0.0
    es = EarlyStopping(spec_pb2.EarlyStoppingSpec(metric="m", mode=mode, patience=3,
                                                  min_delta=min_delta, restore_best=True))
    module, stopped_at = _Module(), None
    for epoch, value in enumerate(values, start=1):
        with torch.no_grad():
            module.weight.fill_(epoch)
        if es.update(epoch, {"m": value}, module):
            stopped_at = epoch
            break
    assert stopped_at == stop_at and es.best_epoch == best
    es.restore(module)
    assert module.weight.item() == best


@pytest.mark.parametrize("task,metric,mode", [
    ("seq2seq", "val_exact_match", "max"), ("seq2seq", "val_token_accuracy", "max"),
    ("language_model", "val_token_accuracy", "max"), ("language_model", "val_loss", "min")])
def test_token_tasks_monitor_their_own_metrics(task, metric, mode):
    dataset = {"seq2seq": {"name": "digit_reversal", "num_samples": 200, "sequence_length": 6},
               "language_model": {"name": "corpus", "sequence_length": 16}}[task]
    model = {"seq2seq": {"seq2seq": {}}, "language_model": {"gpt": {}}}[task]
    spec = check_spec(json_format.ParseDict(
        {"dataset": dataset, "model": model,
         "training": {"early_stopping": {"metric": metric}}}, spec_pb2.JobSpec()))
    assert spec.training.early_stopping.mode == mode
    assert metric in epoch_metric_names(task, with_val=True)
    assert "val_exact_match" not in epoch_metric_names("language_model", with_val=True)


def test_seq2seq_stops_on_exact_match_and_restores_that_epoch(tmp_path):
    spec = check_spec(json_format.ParseDict(
        {"dataset": {"name": "digit_reversal", "num_samples": 300, "sequence_length": 5},
         "model": {"seq2seq": {"hidden_size": 16, "embedding_dim": 8}},
         "training": {"epochs": 6, "batch_size": 32,
                      "early_stopping": {"metric": "val_exact_match", "patience": 2}}},
        spec_pb2.JobSpec()))
    reporter = ListReporter()
    result = train(spec, tmp_path, reporter)
    assert result.status == "succeeded"
    values = [e.metrics["val_exact_match"] for e in reporter.epochs]
    assert result.metrics["best_epoch"] == 1 + values.index(max(values))
