"""trainserve.jobs.plots on hand-built jobs (a search with a trial stopped early, a training job's
epoch events), on hand-built evaluation arrays (every task's plots) and `trainserve plot`
against the fake job API: valid, readable PNG files."""
from __future__ import annotations

import json
import struct

import matplotlib.image
import numpy as np
import pytest

from tests.unit.test_cli_commands import assert_error, cli  # noqa: F401 - fixtures
from tests.unit.test_client_sdk import fake_api  # noqa: F401 - fixture
from trainserve.jobs import plots
from trainserve.jobs.curves import epoch_points
from trainserve.core.pb import job_pb2, spec_pb2

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
    width, height = png_size(data)
    assert width > 200 and height > 150, (path, width, height)
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[:2] == (height, width), image.shape


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, which a PNG must start with."""
    assert data[12:16] == b"IHDR", data[:16]
    return struct.unpack(">II", data[16:24])


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


def test_metric_series_pairs_train_and_validation():
    series = plots.metric_series(epoch_points(epoch_events(4)))
    assert list(series) == ["accuracy", "loss", "lr"]
    assert sorted(series["loss"]) == ["train", "val"] and list(series["lr"]) == [""]
    epochs, values = series["loss"]["val"]
    assert epochs == [1, 2, 3, 4] and values[0] == pytest.approx(1.2)


def test_training_plots_write_curves(tmp_path):
    job = job_pb2.Job(id="j-2", spec=spec_pb2.JobSpec(name="xor-mlp"))
    paths = plots.training_plots(job, epoch_points(epoch_events()), tmp_path)
    assert [p.name for p in paths] == [plots.TRAINING_CURVES]
    assert_png(paths[0])


def test_training_plots_without_epochs_say_so(tmp_path):
    job = job_pb2.Job(id="j-2")
    with pytest.raises(plots.NoEpochs, match="j-2 has no epochs yet"):
        plots.training_plots(job, epoch_points(epoch_events(0)), tmp_path)


# -- evaluation plots (training.evaluation's arrays) ---------------------------------------------

RNG = np.random.default_rng(0)


def classification_arrays(num_classes: int, n: int = 120) -> dict[str, np.ndarray]:
    y = np.arange(n) % num_classes
    logits = RNG.normal(size=(n, num_classes)) + 2.0 * np.eye(num_classes)[y]
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return {"kind": np.array("classification"), "y_true": y.astype(np.int64),
            "probabilities": prob.astype(np.float32),
            "class_names": np.array([f"class {c}" for c in range(num_classes)])}


def test_binary_classifier_gets_confusion_matrix_and_roc(tmp_path):
    paths = plots.evaluation_plots(classification_arrays(2), tmp_path, "bc")
    assert [p.name for p in paths] == [plots.CONFUSION, plots.ROC, plots.RELIABILITY]
    for path in paths:
        assert_png(path)


def test_multiclass_classifier_gets_a_confusion_matrix_and_reliability(tmp_path):
    paths = plots.evaluation_plots(classification_arrays(10), tmp_path)
    assert [p.name for p in paths] == [plots.CONFUSION, plots.RELIABILITY]
    for path in paths:
        assert_png(path)


def test_confusion_counts_rows_are_true_classes():
    cm = plots.confusion_counts(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]


def test_roc_points_match_scikit_learn():
    from sklearn.metrics import roc_auc_score
    y = np.array([0, 0, 1, 1, 0, 1, 1, 0, 1, 0])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.9, 0.4, 0.2, 0.7, 0.05])  # ties at 0.4
    fpr, tpr, auc = plots.roc_points(y, scores)
    assert auc == pytest.approx(roc_auc_score(y, scores))
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)


def test_regression_gets_predicted_against_true(tmp_path):
    y = RNG.normal(size=(80, 1)).astype(np.float32)
    arrays = {"kind": np.array("regression"), "y_true": y, "y_pred": y + 0.1}
    paths = plots.evaluation_plots(arrays, tmp_path)
    assert [p.name for p in paths] == [plots.PREDICTIONS]
    assert_png(paths[0])


def test_image_vae_gets_reconstructions_and_a_sample_grid(tmp_path):
    images = RNG.uniform(0, 16, size=(8, 1, 8, 8)).astype(np.float32)
    arrays = {"kind": np.array("reconstruction"), "originals": images,
              "reconstructions": images * 0.9,
              "samples": RNG.uniform(0, 16, size=(64, 1, 8, 8)).astype(np.float32)}
    paths = plots.evaluation_plots(arrays, tmp_path)
    assert [p.name for p in paths] == [plots.RECONSTRUCTIONS, plots.SAMPLES]
    for path in paths:
        assert_png(path)


def test_tabular_autoencoder_reconstructions_are_drawn_per_feature(tmp_path):
    x = RNG.normal(size=(8, 30)).astype(np.float32)
    arrays = {"kind": np.array("reconstruction"), "originals": x, "reconstructions": x / 2}
    paths = plots.evaluation_plots(arrays, tmp_path)
    assert [p.name for p in paths] == [plots.RECONSTRUCTIONS]
    assert_png(paths[0])


def test_2d_gan_samples_are_scattered_over_the_real_points(tmp_path):
    angle = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    real = np.repeat(np.c_[np.cos(angle), np.sin(angle)] * 2, 20, axis=0)
    arrays = {"kind": np.array("generation"), "samples": RNG.normal(size=(1000, 2)),
              "real": real.astype(np.float32), "real_labels": np.repeat(np.arange(8), 20)}
    paths = plots.evaluation_plots(arrays, tmp_path)
    assert [p.name for p in paths] == [plots.SAMPLES]
    assert_png(paths[0])


def test_image_gan_samples_are_a_grid(tmp_path):
    arrays = {"kind": np.array("generation"),
              "samples": RNG.uniform(size=(64, 1, 8, 8)).astype(np.float32),
              "real": np.zeros((0, 1, 8, 8), np.float32), "real_labels": np.zeros(0, np.int64)}
    paths = plots.evaluation_plots(arrays, tmp_path)
    assert_png(paths[0])


def test_load_evaluation_never_unpickles(tmp_path):
    path = tmp_path / "evaluation.npz"
    np.savez(path, kind=np.array("classification"), bad=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        plots.load_evaluation(path)


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


def test_plot_command_draws_a_running_job_s_epochs_so_far(cli, tmp_path):  # noqa: F811
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


def _drawn_panels(monkeypatch, events, tmp_path) -> list[str]:
    """The metric panels `training_plots` asks for (the PNG itself is drawn as usual)."""
    drawn = []
    real = plots.plot_training_curves

    def spy(series, path, title=""):
        drawn.extend(series)
        return real(series, path, title)
    monkeypatch.setattr(plots, "plot_training_curves", spy)
    plots.training_plots(job_pb2.Job(id="j-3"), epoch_points(events), tmp_path)
    return drawn


def test_a_constant_learning_rate_gets_no_panel(monkeypatch, tmp_path):
    assert _drawn_panels(monkeypatch, epoch_events(4), tmp_path) == ["accuracy", "loss"]


def test_a_scheduled_learning_rate_keeps_its_panel(monkeypatch, tmp_path):
    events = epoch_events(4)
    for i, event in enumerate(e for e in events if e.HasField("epoch")):
        event.epoch.metrics["lr"] = 0.01 / (i + 1)
    assert _drawn_panels(monkeypatch, events, tmp_path) == ["accuracy", "loss", "lr"]
