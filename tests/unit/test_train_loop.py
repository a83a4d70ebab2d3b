"""The training loop: accuracy, events, checkpoints and resume, cancellation, DDP (gloo)."""
import json
import os

import pytest
import torch
from google.protobuf import json_format
from safetensors.torch import load_file

from trainserve.core import errors
from trainserve.core.pb import spec_pb2
from trainserve.training import checkpoints, loop
from trainserve.training.artifacts import MODEL_FILE, load_artifact
from trainserve.training.loop import train
from trainserve.training.reporting import ListReporter
from trainserve.training.results import TrainResult
from trainserve.training.validate import check_spec
from tests.unit.ddp import run_two_ranks

XOR = {"dataset": {"name": "xor", "normalize": "none"},
       "split": {"test_fraction": 0.25},
       "model": {"mlp": {"hidden": [8], "activation": "tanh"}},
       "optimizer": {"lr": 0.05}, "training": {"epochs": 30, "batch_size": 16}}
# Dropout makes the result depend on the RNG, which resume must reproduce.
IRIS = {"dataset": {"name": "iris"}, "model": {"mlp": {"hidden": [16], "dropout": 0.2}},
        "training": {"epochs": 6, "batch_size": 16, "seed": 3, "checkpoint_every_s": 0}}


def _spec(d, **training):
    spec = check_spec(json_format.ParseDict(d, spec_pb2.JobSpec()))
    for k, v in training.items():
        setattr(spec.training, k, v)
    return spec


def _weights(job_dir):
    return load_file(str(job_dir / "artifact" / MODEL_FILE))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_xor_reaches_full_accuracy_and_reports_every_epoch(tmp_path, seed):
    rep = ListReporter()
    result = train(_spec(XOR, seed=seed), tmp_path, rep)
    assert result.status == "succeeded"
    assert result.metrics["test_accuracy"] == 1.0
    assert [e.epoch for e in rep.epochs] == list(range(1, 31))
    assert {e.total_epochs for e in rep.epochs} == {30}
    assert set(rep.epochs[-1].metrics) == {"train_loss", "train_accuracy", "val_loss",
                                          "val_accuracy", "lr"}
    assert all(e.samples_per_second > 0 for e in rep.epochs)
    elapsed = [e.elapsed_seconds for e in rep.epochs]
    assert elapsed == sorted(elapsed)
    assert result.artifact_dir == str(tmp_path / "artifact")
    assert TrainResult.read(tmp_path / "result.json") == result
    assert load_artifact(result.artifact_dir).meta["metrics"] == result.metrics


def test_regression_metrics(tmp_path):
    spec = _spec({"dataset": {"name": "diabetes"}, "model": {"mlp": {}},
                  "training": {"epochs": 30}})
    rep = ListReporter()
    result = train(spec, tmp_path, rep)
    assert set(result.metrics) == {"test_loss", "test_mse", "test_mae", "test_r2"}
    assert result.confusion_matrix is None
    assert result.metrics["test_r2"] > 0.2
    assert {"train_mae", "val_mse", "val_mae", "val_r2"} <= set(rep.epochs[-1].metrics)


def test_checkpoints_every_epoch_keeping_the_latest_two(tmp_path):
    train(_spec(IRIS), tmp_path, ListReporter())
    found = checkpoints.list_checkpoints(tmp_path / "checkpoints")
    assert [epoch for epoch, _ in found] == [5, 6]
    state = checkpoints.load_checkpoint(found[-1][1])
    assert state["epoch"] == 6 and {"model", "optimizer", "dataset_hash"} <= set(state)
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


class _Crash(Exception):
    pass


def _straight_and_crashed_at_epoch_3(tmp_path):
    """(job dir of an uninterrupted IRIS run, job dir of one that died reporting epoch 3)."""
    straight = tmp_path / "straight"
    train(_spec(IRIS), straight, ListReporter())
    crashed = tmp_path / "crashed"
    boom = ListReporter()
    boom.epoch = lambda epoch, *a: (_ for _ in ()).throw(_Crash()) if epoch == 3 else None
    with pytest.raises(_Crash):
        train(_spec(IRIS), crashed, boom)
    return straight, crashed


def test_resume_continues_from_the_saved_epoch_and_matches_an_uninterrupted_run(tmp_path):
    straight, crashed = _straight_and_crashed_at_epoch_3(tmp_path)
    rep = ListReporter()
    result = train(_spec(IRIS), crashed, rep)
    assert result.status == "succeeded"
    assert [e.epoch for e in rep.epochs] == [4, 5, 6]
    assert ("info", "resumed from the checkpoint of epoch 3") in rep.logs
    a, b = _weights(straight), _weights(crashed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_after_a_machine_crash_tore_the_newest_checkpoint(tmp_path):
    """Checkpoints between the fsynced ones may not reach the disk before the machine goes
    down: a torn newest one is removed and training resumes from the one before, matching
    an uninterrupted run all the same."""
    straight, crashed = _straight_and_crashed_at_epoch_3(tmp_path)
    torn = crashed / "checkpoints" / checkpoints.checkpoint_name(3) / checkpoints.STATE_FILE
    torn.write_bytes(b"")
    rep = ListReporter()
    assert train(_spec(IRIS), crashed, rep).status == "succeeded"
    assert [e.epoch for e in rep.epochs] == [3, 4, 5, 6]
    assert ("info", "resumed from the checkpoint of epoch 2") in rep.logs
    assert any(level == "warning" and "epoch 3 is unreadable" in text for level, text in rep.logs)
    a, b = _weights(straight), _weights(crashed)
    assert all(torch.equal(a[k], b[k]) for k in a)


class _Clock:
    """Stands in for the loop's `time` module: `monotonic` moves only when a test moves it."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def _timed_reporter(clock: _Clock, seconds_per_epoch: float) -> ListReporter:
    rep = ListReporter()
    record = rep.epoch

    def epoch(*args):
        clock.now += seconds_per_epoch
        record(*args)
    rep.epoch = epoch
    return rep


def test_checkpoints_once_the_interval_has_passed_and_after_the_last_epoch(tmp_path,
                                                                           monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(loop, "time", clock)
    spec = _spec(IRIS, epochs=8, checkpoint_every_s=2.5)
    train(spec, tmp_path, _timed_reporter(clock, 1.0), keep_checkpoints=100)
    # Epoch e ends e - 1 s after the start: due at 3 s (epoch 4), then 3 s later (epoch 7).
    found = checkpoints.list_checkpoints(tmp_path / "checkpoints")
    assert [epoch for epoch, _ in found] == [4, 7, 8]


def test_a_crash_before_the_first_checkpoint_resumes_from_the_start(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "time", _Clock())  # frozen: no interval ever passes
    spec = _spec(IRIS, checkpoint_every_s=5)
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    train(spec, straight, ListReporter())
    assert [e for e, _ in checkpoints.list_checkpoints(straight / "checkpoints")] == [6]
    boom = ListReporter()
    boom.epoch = lambda epoch, *a: (_ for _ in ()).throw(_Crash()) if epoch == 3 else None
    with pytest.raises(_Crash):
        train(spec, crashed, boom)
    assert checkpoints.list_checkpoints(crashed / "checkpoints") == []
    rep = ListReporter()
    assert train(spec, crashed, rep).status == "succeeded"
    assert [e.epoch for e in rep.epochs] == [1, 2, 3, 4, 5, 6]
    a, b = _weights(straight), _weights(crashed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_rerun_of_a_finished_job_trains_no_more(tmp_path):
    first = train(_spec(IRIS), tmp_path, ListReporter())
    rep = ListReporter()
    again = train(_spec(IRIS), tmp_path, rep)
    assert rep.epochs == [] and again.metrics == first.metrics


def test_cancel_between_epochs(tmp_path):
    rep = ListReporter(cancel_when=lambda r: len(r.epochs) >= 2)
    result = train(_spec(IRIS), tmp_path, rep)
    assert result.status == "cancelled" and result.artifact_dir is None
    assert [e.epoch for e in rep.epochs] == [1, 2]
    assert result.metrics == rep.epochs[-1].metrics
    assert not (tmp_path / "artifact").exists()
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "cancelled"


def test_cancel_inside_an_epoch(tmp_path):
    # batch 1 on digits: ~1250 steps per epoch, far more than between two cancel checks
    spec = _spec({"dataset": {"name": "digits"}, "model": {"mlp": {}}},
                 batch_size=1, epochs=1)
    rep = ListReporter(cancel_when=lambda r: r.cancel_checks >= 3)
    result = train(spec, tmp_path, rep)
    assert result.status == "cancelled" and rep.epochs == [] and rep.cancel_checks == 3


def test_cancel_before_the_first_epoch(tmp_path):
    rep = ListReporter(cancel=True)
    assert train(_spec(IRIS), tmp_path, rep).status == "cancelled"
    assert rep.epochs == [] and not (tmp_path / "checkpoints").exists()


def test_divergence_is_a_readable_training_error(tmp_path):
    spec = _spec({"dataset": {"name": "diabetes", "normalize": "none"}, "model": {"mlp": {}},
                  "optimizer": {"name": "sgd", "lr": 1e6}, "training": {"epochs": 3}})
    with pytest.raises(errors.TrainingError, match="diverged in epoch 1.*lower learning rate"):
        train(spec, tmp_path, ListReporter())


def test_batch_too_small_for_the_workers_is_a_training_error(tmp_path):
    spec = _spec(IRIS, batch_size=1)
    with pytest.raises(errors.TrainingError, match="per worker"):
        train(spec, tmp_path, ListReporter(), world_size=2)  # fails before any collective


# --- DDP on two local processes (gloo), no Ray ---------------------------------------------

# Over-parameterized on a small noisy set: early stopping triggers long before 150 epochs.
EARLY = {"dataset": {"name": "xor", "num_samples": 120, "noise": 0.45},
         "model": {"mlp": {"hidden": [64, 64]}}, "optimizer": {"lr": 0.01},
         "split": {"val_fraction": 0.25},
         "training": {"epochs": 150, "batch_size": 16, "early_stopping": {"patience": 4}}}
GD = {"dataset": {"name": "iris"}, "model": {"mlp": {"hidden": [16]}},
      "optimizer": {"name": "gd", "lr": 0.5}, "training": {"epochs": 5}}


def _ddp_worker(rank, port, job_dirs, queue):
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        no_dropout = _spec(IRIS, epochs=4)
        no_dropout.model.mlp.dropout = 0
        full = train(no_dropout, job_dirs[0], ListReporter(), rank=rank, world_size=2)
        # rank 0 alone is asked; rank 1 must stop at the same step, not hang
        rep = ListReporter(cancel_when=lambda r: r.cancel_checks >= 3)
        spec = _spec({"dataset": {"name": "digits"}, "model": {"mlp": {}}},
                     batch_size=2, epochs=1)
        cancelled = train(spec, job_dirs[1], rep, rank=rank, world_size=2)
        early_rep = ListReporter()
        early = train(_spec(EARLY), job_dirs[2], early_rep, rank=rank, world_size=2)
        gd = train(_spec(GD), job_dirs[3], ListReporter(), rank=rank, world_size=2)
        queue.put((rank, full, cancelled.status, len(rep.epochs), early, len(early_rep.epochs),
                   gd))
    finally:
        dist.destroy_process_group()


def test_ddp_two_ranks_match_one_process_and_stop_together(tmp_path):
    dirs = [str(tmp_path / name) for name in ("ddp", "ddp-cancel", "ddp-early", "ddp-gd")]
    results = run_two_ranks(_ddp_worker, dirs)
    single = tmp_path / "single"
    no_dropout = _spec(IRIS, epochs=4)
    no_dropout.model.mlp.dropout = 0
    expected = train(no_dropout, single, ListReporter())
    for _rank, full, cancel_status, epochs, *_ in results:
        assert full.metrics == pytest.approx(expected.metrics, rel=1e-4)
        assert cancel_status == "cancelled" and epochs == 0
    a, b = _weights(single), _weights(tmp_path / "ddp")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    # early stopping: both ranks stop after the same epoch, with the same final metrics
    (_, _, _, _, early0, reported, gd0), (_, _, _, _, early1, _, gd1) = results
    assert early0.metrics == early1.metrics
    assert early0.metrics["stopped_epoch"] < 150 and reported == early0.metrics["stopped_epoch"]
    # full-batch gd: the all-reduced step over both shards is the single-process step
    gd_single = train(_spec(GD), tmp_path / "gd-single", ListReporter())
    assert gd0.metrics == gd1.metrics
    assert gd0.metrics == pytest.approx(gd_single.metrics, rel=1e-4)


def test_epoch_seeds_are_derived_per_epoch_and_rank_in_blocks():
    seeds = loop._EpochSeeds(7, rank=1, epochs=300)
    for epoch in (1, 2, 128, 129, 300, 301, 5):  # across blocks, past the end, and back
        assert seeds(epoch) == (loop.derive_seed(7, 1, epoch), loop.derive_seed(7, 2, epoch, 1),
                                loop.derive_seed(7, 3, epoch, 1))
    assert len(seeds.table) <= loop._EpochSeeds.BLOCK
