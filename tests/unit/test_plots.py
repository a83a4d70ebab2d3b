"""trainserve.plots on hand-built jobs (a search with a trial stopped early, a training job's
epoch events) and `trainserve plot` against the fake job API: valid, readable PNG files."""
from __future__ import annotations

import json

import matplotlib.image
import pytest

from tests.unit.test_cli_commands import assert_error, cli  # noqa: F401 - fixtures
from tests.unit.test_client_sdk import fake_api  # noqa: F401 - fixture
from trainserve import plots
from trainserve.pb import job_pb2, spec_pb2

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SPACE = {"optimizer.lr": "loguniform(1e-4, 1e-1)", "model.mlp.hidden": "choice([[32], [64, 64]])",
         "training.batch_size": "grid([16, 32])"}
# id, state, lr, hidden, batch size, val_accuracy per epoch
TRIALS = [("t-1", "finished", 0.01, [32], 16, [0.60, 0.75, 0.82, 0.86]),
          ("t-2", "finished", 0.001, [64, 64], 32, [0.55, 0.70, 0.80, 0.90]),
          ("t-3", "stopped_early", 0.0002, [32], 32, [0.30, 0.35]),
          ("t-4", "finished", 0.05, [64, 64], 16, [0.50, 0.62, 0.70, 0.74])]


def search_job() -> job_pb2.Job:
    spec = spec_pb2.JobSpec(name="xor-search", search=spec_pb2.SearchSpec(
        metric="val_accuracy", mode="max", space=SPACE))
    job = job_pb2.Job(id="j-1", spec=spec, state=job_pb2.JOB_STATE_SUCCEEDED, best_trial="t-2")
    for tid, state, lr, hidden, batch, curve in TRIALS:
        trial = job.trials.add(id=tid, state=state, epochs=len(curve), config={
            "optimizer.lr": json.dumps(lr), "model.mlp.hidden": json.dumps(hidden),
            "training.batch_size": json.dumps(batch)})
        for epoch, acc in enumerate(curve, 1):
            trial.curve.add(epoch=epoch, metrics={"val_accuracy": acc, "train_loss": 1 - acc})
        trial.metrics.update({"val_accuracy": curve[-1], "train_loss": 1 - curve[-1]})
    return job


def epoch_events(n: int = 5) -> list[job_pb2.JobEvent]:
    events = [job_pb2.JobEvent(state=job_pb2.StateChanged(state=job_pb2.JOB_STATE_RUNNING))]
    for epoch in range(1, n + 1):
        events.append(job_pb2.JobEvent(epoch=job_pb2.EpochMetrics(
            epoch=epoch, total_epochs=n, metrics={
                "train_loss": 1.0 / epoch, "val_loss": 1.2 / epoch,
                "train_accuracy": 0.5 + epoch / 20, "val_accuracy": 0.45 + epoch / 20,
                "lr": 0.01})))
        events.append(job_pb2.JobEvent(log=job_pb2.LogLine(level="INFO", text="epoch done")))
    return events


def assert_png(path, min_bytes: int = 5_000) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > min_bytes, (path, len(data))
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200, image.shape


# -- the plotting core ----------------------------------------------------------------------

def test_search_plots_write_both_pngs(tmp_path):
    paths = plots.search_plots(search_job(), tmp_path / "out")
    assert [p.name for p in paths] == [plots.TRIAL_CURVES, plots.TRIAL_PARAMS]
    for path in paths:
        assert_png(path)


def test_param_panels_place_values_by_axis_kind():
    panels = {p.path: p for p in plots.param_panels(search_job())}
    assert sorted(panels) == sorted(SPACE)
    lr = panels["optimizer.lr"]
    assert lr.kind == "loguniform" and not lr.categorical and lr.xs == [0.01, 0.001, 0.0002, 0.05]
    assert lr.stopped == [False, False, True, False] and lr.best == [False, True, False, False]
    hidden = panels["model.mlp.hidden"]
    assert hidden.kind == "choice" and hidden.categorical and hidden.labels == ["[32]", "[64, 64]"]
    assert hidden.xs == [0.0, 1.0, 0.0, 1.0]
    assert panels["training.batch_size"].labels == ["16", "32"]
    assert lr.ys == [0.86, 0.90, 0.35, 0.74]


def test_running_and_failed_trials_are_left_out_of_the_params_plot():
    job = search_job()
    job.trials.add(id="t-5", state="running", config={"optimizer.lr": "0.003"},
                   curve=[job_pb2.TrialPoint(epoch=1, metrics={"val_accuracy": 0.4})])
    job.trials.add(id="t-6", state="failed", config={"optimizer.lr": "0.004"})
    lr = next(p for p in plots.param_panels(job) if p.path == "optimizer.lr")
    assert len(lr.xs) == 4


def test_search_without_any_epoch_says_so(tmp_path):
    job = search_job()
    for trial in job.trials:
        del trial.curve[:]
    with pytest.raises(plots.NoEpochs, match="no epochs yet"):
        plots.search_plots(job, tmp_path)


def test_epoch_points_keep_epoch_events_in_order_latest_report_wins():
    events = epoch_events(3) + [job_pb2.JobEvent(epoch=job_pb2.EpochMetrics(
        epoch=2, metrics={"train_loss": 9.0}))]
    points = plots.epoch_points(events)
    assert [p.epoch for p in points] == [1, 2, 3]
    assert points[1].metrics["train_loss"] == 9.0


def test_metric_series_pairs_train_and_validation():
    series = plots.metric_series(plots.epoch_points(epoch_events(4)))
    assert list(series) == ["accuracy", "loss", "lr"]
    assert sorted(series["loss"]) == ["train", "val"] and list(series["lr"]) == [""]
    epochs, values = series["loss"]["val"]
    assert epochs == [1, 2, 3, 4] and values[0] == pytest.approx(1.2)


def test_training_plots_write_curves(tmp_path):
    job = job_pb2.Job(id="j-2", spec=spec_pb2.JobSpec(name="xor-mlp"))
    paths = plots.training_plots(job, plots.epoch_points(epoch_events()), tmp_path)
    assert [p.name for p in paths] == [plots.TRAINING_CURVES]
    assert_png(paths[0])


def test_training_plots_without_epochs_say_so(tmp_path):
    job = job_pb2.Job(id="j-2")
    with pytest.raises(plots.NoEpochs, match="j-2 has no epochs yet"):
        plots.training_plots(job, plots.epoch_points(epoch_events(0)), tmp_path)


# -- trainserve plot ------------------------------------------------------------------------

def test_plot_command_writes_a_search_s_plots(cli, tmp_path):  # noqa: F811
    cli.api.jobs["j-1"] = search_job()
    cli.api.events["j-1"] = []
    out = tmp_path / "plots"
    result = cli("plot", "j-1", "--out", out)
    assert result.exit_code == 0, result.output
    for name in (plots.TRIAL_CURVES, plots.TRIAL_PARAMS):
        assert str(out / name) in result.stdout
        assert_png(out / name)


def test_plot_command_replays_a_training_job_s_epochs(cli, tmp_path):  # noqa: F811
    cli.api.add_job("j-2", state=job_pb2.JOB_STATE_SUCCEEDED, epoch=5, total_epochs=5)
    for event in epoch_events():
        cli.api.add_event("j-2", **{event.WhichOneof("event"): getattr(
            event, event.WhichOneof("event"))})
    result = cli("plot", "j-2", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert str(tmp_path / plots.TRAINING_CURVES) in result.stdout
    assert_png(tmp_path / plots.TRAINING_CURVES)


def test_plot_command_stops_at_a_running_job_s_latest_epoch(cli, tmp_path):  # noqa: F811
    cli.api.add_job("j-3", state=job_pb2.JOB_STATE_RUNNING, epoch=2, total_epochs=5)
    for event in epoch_events(2):
        cli.api.add_event("j-3", **{event.WhichOneof("event"): getattr(
            event, event.WhichOneof("event"))})
    result = cli("plot", "j-3", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert_png(tmp_path / plots.TRAINING_CURVES)


def test_plot_command_errors(cli, tmp_path):  # noqa: F811
    assert_error(cli("plot", "j-404", "--out", tmp_path), 1, "job 'j-404' not found")
    cli.api.add_job("j-5", state=job_pb2.JOB_STATE_QUEUED)
    assert_error(cli("plot", "j-5", "--out", tmp_path), 1, "job j-5 has no epochs yet")
    assert not list(tmp_path.glob("*.png"))
