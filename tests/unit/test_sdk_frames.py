"""Notebook helpers of the SDK: `Client.jobs()`, `Client.trials()` and `Client.curves()` give a
list or dict with `to_pandas()` (pandas optional: a clear error without it) and, for curves,
`plot()` returning a matplotlib Figure."""
from __future__ import annotations

import sys

import pytest
from matplotlib.figure import Figure

from tests.unit.test_cli_commands import finish
from tests.unit.test_cli_search import search_job
from tests.unit.test_client_sdk import client, fake_api  # noqa: F401 - fixtures
from trainserve.client.frames import PANDAS_MISSING, Curves, JobList
from trainserve.core.pb import job_pb2


@pytest.fixture
def finished(fake_api):  # noqa: F811
    api, _ = fake_api
    for job_id in ("j-1", "j-2"):
        job = api.add_job(job_id)
        finish(api, job)
    return api


def test_jobs_to_pandas_has_a_row_per_job_and_a_column_per_metric(client, finished):  # noqa: F811
    jobs = client.jobs()
    assert isinstance(jobs, JobList) and [j.id for j in jobs] == ["j-1", "j-2"]
    frame = jobs.to_pandas()
    assert list(frame["id"]) == ["j-1", "j-2"] and set(frame["state"]) == {"succeeded"}
    assert list(frame["test_accuracy"]) == [1.0, 1.0] and frame["model"][0] == "xor-mlp:1"
    assert str(frame["created"].dtype).startswith("datetime64")
    assert len(client.jobs(limit=1)) == 1


def test_curves_to_pandas_is_a_row_per_epoch(client, finished):  # noqa: F811
    curves = client.curves("j-1")
    assert isinstance(curves, Curves) and curves["job_id"] == "j-1"  # still the plain dict
    frame = curves.to_pandas()
    assert list(frame.index) == [1, 2, 3] and frame.index.name == "epoch"
    assert frame.loc[2, "train_loss"] == pytest.approx(0.5)
    assert frame.loc[3, "val_accuracy"] == pytest.approx(0.8)


def test_curves_plot_returns_a_figure_with_a_panel_per_metric(client, finished):  # noqa: F811
    fig = client.curves("j-1").plot()
    assert isinstance(fig, Figure)
    titles = sorted(ax.get_title() for ax in fig.axes)
    assert titles == ["accuracy", "loss"]
    loss = next(ax for ax in fig.axes if ax.get_title() == "loss")
    assert list(loss.lines[0].get_xdata()) == [1, 2, 3]
    assert [ax.get_title() for ax in client.curves("j-1").plot(metrics=["loss"]).axes] == \
        ["loss"]


def test_a_search_gives_its_trials_and_its_best_trials_curves(client, fake_api):  # noqa: F811
    api, _ = fake_api
    job = api.add_job("j-9", state=job_pb2.JOB_STATE_SUCCEEDED)
    job.CopyFrom(search_job(job_id="j-9"))
    trials = client.trials("j-9").to_pandas()
    assert list(trials["id"]) == ["t-1", "t-2", "t-3", "t-4", "t-5"]
    assert trials.loc[2, "model.mlp.hidden"] == [16, 16]
    assert trials.loc[2, "optimizer.lr"] == pytest.approx(0.001234567)
    curves = client.curves("j-9").to_pandas()  # the best trial's (t-3)
    assert list(curves["val_accuracy"]) == [0.7, 0.95]
    assert list(client.curves("j-9").to_pandas(trial="t-1")["val_accuracy"]) == [0.6, 0.8]


def test_without_pandas_the_error_says_how_to_get_it(client, finished, monkeypatch):  # noqa: F811
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if it were not installed
    with pytest.raises(ImportError, match="pip install pandas"):
        client.jobs().to_pandas()
    with pytest.raises(ImportError) as missing:
        client.curves("j-1").to_pandas()
    assert str(missing.value) == PANDAS_MISSING
    assert isinstance(client.curves("j-1").plot(), Figure)  # plots need no pandas
