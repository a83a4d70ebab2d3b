"""How the CLI shows a hyperparameter search (spec.search): the trials' leaderboard (best
first), `trainserve job` and its JSON, `trainserve watch`'s trial lines, and the outcome."""
from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from tests.unit.test_cli_commands import cli  # noqa: F401 - fixture
from tests.unit.test_client_sdk import fake_api  # noqa: F401 - fixture
from trainserve.cli import render
from trainserve.cli.watch import SearchProgress, print_outcome
from trainserve.core.metrics import search_metric
from trainserve.core.pb import job_pb2, spec_pb2

# id, state, val_accuracy per epoch, optimizer.lr, hidden, message
TRIALS = [
    ("t-1", "finished", [0.6, 0.8], 0.01, [8], ""),
    ("t-2", "stopped_early", [0.55], 0.1, [8], ""),
    ("t-3", "finished", [0.7, 0.95], 0.001234567, [16, 16], ""),
    ("t-4", "running", [], 0.003, [16, 16], ""),
    ("t-5", "failed", [0.4], 0.5, [8], "loss diverged"),
]


def search_spec(mode: str = "max") -> spec_pb2.JobSpec:
    spec = spec_pb2.JobSpec(name="xor-search", dataset={"name": "xor"})
    spec.search.space.update({"optimizer.lr": "loguniform(1e-4, 1)",
                              "model.mlp.hidden": "choice([[8], [16, 16]])"})
    spec.search.metric, spec.search.mode = "val_accuracy", mode
    spec.search.scheduler.name = "asha"
    return spec


def make_trial(tid, state, curve, lr, hidden, message="") -> job_pb2.Trial:
    trial = job_pb2.Trial(id=tid, state=state, epochs=len(curve), message=message,
                          config={"optimizer.lr": json.dumps(lr),
                                  "model.mlp.hidden": json.dumps(hidden)})
    for epoch, acc in enumerate(curve, 1):
        trial.curve.add(epoch=epoch, metrics={"val_accuracy": acc, "train_loss": 1.0 / epoch})
    if curve:
        trial.metrics.update({"val_accuracy": curve[-1], "train_loss": 1.0 / len(curve)})
    return trial


def search_job(mode: str = "max", job_id: str = "j-1") -> job_pb2.Job:
    job = job_pb2.Job(id=job_id, spec=search_spec(mode), state=job_pb2.JOB_STATE_SUCCEEDED,
                      best_trial="t-3" if mode == "max" else "t-5")
    job.trials.extend(make_trial(*t) for t in TRIALS)
    job.metrics.update({"test_accuracy": 0.97, "best_val_accuracy": 0.95, "trials": 5})
    return job


def rendered(renderable, terminal: bool = False) -> str:
    console = Console(file=io.StringIO(), width=200, force_terminal=terminal,
                      color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def row_order(text: str, ids=("t-1", "t-2", "t-3", "t-4", "t-5")) -> list[str]:
    rows = [line.split()[0] for line in text.splitlines() if line.strip()]
    return [r for r in rows if r in ids]


# -- the leaderboard ------------------------------------------------------------------------

def test_trials_table_is_sorted_best_first_with_states_and_config():
    job = search_job()
    text = rendered(render.trials_table(job.trials, "val_accuracy", "max", best="t-3"))
    # Scored trials by val_accuracy descending; the running trial (no metric yet) last.
    assert row_order(text) == ["t-3", "t-1", "t-2", "t-5", "t-4"]
    for cell in ("FINISHED", "STOPPED EARLY", "RUNNING", "FAILED", "loss diverged",
                 "val_accuracy (max)", "optimizer.lr", "model.mlp.hidden", "0.001235",
                 "[16, 16]", "t-3 *", "* best trial"):
        assert cell in text, cell


def test_trials_table_min_mode_puts_the_lowest_first():
    job = search_job("min")
    text = rendered(render.trials_table(job.trials, "val_accuracy", "min"))
    assert row_order(text) == ["t-5", "t-2", "t-1", "t-3", "t-4"]


def test_trial_metric_falls_back_to_the_curve_and_the_mode_to_the_metric():
    trial = make_trial("t-9", "running", [0.5, 0.75], 0.1, [8])
    trial.metrics.clear()
    assert render.trial_metric(trial, "val_accuracy") == 0.75
    assert render.trial_metric(trial, "val_r2") is None
    spec = spec_pb2.JobSpec()
    assert search_metric(spec) == ("val_loss", "min")
    spec.search.metric = "cv_accuracy_mean"  # cross-validated: ranked as accuracy is
    assert search_metric(spec) == ("cv_accuracy_mean", "max")
    spec.search.metric = "cv_loss_mean"
    assert search_metric(spec) == ("cv_loss_mean", "min")
    assert render.config_value('"adam"') == "adam" and render.config_value("3") == "3"


def test_a_cross_validated_search_is_ranked_best_first():
    """cv_accuracy_mean (the spec names no mode) is maximized: the CLI ranks the trials as
    the server and its plots do."""
    job = search_job()
    job.spec.search.metric, job.spec.search.mode = "cv_accuracy_mean", ""
    for trial in job.trials:
        for point in trial.curve:
            point.metrics["cv_accuracy_mean"] = point.metrics.pop("val_accuracy")
        if "val_accuracy" in trial.metrics:
            trial.metrics["cv_accuracy_mean"] = trial.metrics.pop("val_accuracy")
    text = "".join(rendered(part) for part in render.job_detail(job))
    assert "cv_accuracy_mean (max)" in text
    assert row_order(text) == ["t-3", "t-1", "t-2", "t-5", "t-4"]


# -- trainserve job -------------------------------------------------------------------------

def test_job_shows_the_search_trials_and_best(cli):  # noqa: F811
    job = cli.api.add_job("j-1", state=job_pb2.JOB_STATE_SUCCEEDED)
    job.CopyFrom(search_job())
    result = cli("job", "j-1")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "asha" in out and "val_accuracy (max)" in out
    assert "5 (2 finished, 1 stopped early, 1 running, 1 failed)" in out
    assert "t-3: val_accuracy 0.95" in out
    assert row_order(out) == ["t-3", "t-1", "t-2", "t-5", "t-4"]


def test_job_json_has_every_trial_with_config_state_and_curve(cli):  # noqa: F811
    job = cli.api.add_job("j-1")
    job.CopyFrom(search_job())
    doc = json.loads(cli("job", "j-1", "-o", "json").stdout)
    assert doc["best_trial"] == "t-3"
    assert [t["id"] for t in doc["trials"]] == [t[0] for t in TRIALS]
    by_id = {t["id"]: t for t in doc["trials"]}
    assert by_id["t-2"]["state"] == "stopped_early"
    assert json.loads(by_id["t-3"]["config"]["model.mlp.hidden"]) == [16, 16]
    assert [p["epoch"] for p in by_id["t-3"]["curve"]] == [1, 2]
    assert by_id["t-3"]["curve"][1]["metrics"]["val_accuracy"] == 0.95
    assert by_id["t-4"]["curve"] == [] and by_id["t-5"]["message"] == "loss diverged"


# -- trainserve watch -----------------------------------------------------------------------

def script_search(api, job: job_pb2.Job) -> None:
    """RUNNING, two trials started / reported / ended, then SUCCEEDED."""
    a, b = make_trial("t-1", "running", [0.6], 0.01, [8]), make_trial(
        "t-3", "running", [0.7], 0.001, [16, 16])
    api.add_event(job.id, state=job_pb2.StateChanged(state=job_pb2.JOB_STATE_RUNNING))
    for trial in (a, b):
        api.add_event(job.id, trial=job_pb2.TrialEvent(kind="started", trial=trial))
    for trial in (a, b):
        api.add_event(job.id, trial=job_pb2.TrialEvent(kind="reported", trial=trial))
    a.state, b.state, b.epochs = "finished", "finished", 2
    b.metrics["val_accuracy"] = 0.95
    for trial in (a, b):
        api.add_event(job.id, trial=job_pb2.TrialEvent(kind="ended", trial=trial))
    api.add_event(job.id, state=job_pb2.StateChanged(state=job_pb2.JOB_STATE_SUCCEEDED))


def test_watch_prints_trial_lines_a_board_and_the_best_trial(cli):  # noqa: F811
    job = cli.api.add_job("j-1")
    job.CopyFrom(search_job())
    script_search(cli.api, job)
    result = cli("watch", "j-1")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    started = [line for line in lines if "started" in line]
    assert len(started) == 2 and "trial t-1 started  model.mlp.hidden=[8]" in started[0]
    assert any("trial t-3 FINISHED after 2 epochs  val_accuracy 0.95" in line
               for line in lines)
    assert not any("reported" in line for line in lines)
    # The board is reprinted after each trial end (not a terminal), best first.
    titles = [line for line in lines if line.startswith("search j-1: trials")]
    assert len(titles) == 2
    last_board = result.stdout.rsplit("search j-1: trials", 1)[1]
    assert row_order(last_board)[:2] == ["t-3", "t-1"]
    assert "best trial t-3: val_accuracy 0.95" in result.stdout


def test_live_board_updates_on_reports_without_lines():
    job = search_job()
    job.ClearField("trials")
    console = Console(file=io.StringIO(), width=200, force_terminal=True, color_system=None)
    events = []
    for kind, value in (("started", 0.5), ("reported", 0.6), ("reported", 0.9)):
        trial = make_trial("t-1", "running", [value], 0.01, [8])
        events.append(job_pb2.JobEvent(job_id="j-1", trial=job_pb2.TrialEvent(
            kind=kind, trial=trial)))
    with SearchProgress(console, job) as progress:
        assert progress.live
        for event in events:
            progress.on_event(event)
        assert render.trial_metric(progress.trials["t-1"], "val_accuracy") == 0.9
    out = console.file.getvalue()
    assert out.count("trial t-1 started") == 1 and "0.9" in out


def test_print_outcome_names_the_best_trial_and_its_values():
    console = Console(file=io.StringIO(), width=200, color_system=None)
    print_outcome(console, search_job())
    out = console.file.getvalue()
    assert "SUCCEEDED" in out
    assert ("best trial t-3: val_accuracy 0.95  model.mlp.hidden=[16, 16]  "
            "optimizer.lr=0.001235") in out
    assert "best_val_accuracy" in out


@pytest.mark.parametrize("live", [False, True])
def test_a_plain_job_is_watched_as_before(live):
    from trainserve.cli.watch import JobProgress, progress_for
    job = job_pb2.Job(id="j-2", spec=spec_pb2.JobSpec(name="xor-mlp"))
    console = Console(file=io.StringIO(), width=200, color_system=None)
    assert isinstance(progress_for(console, job, live), JobProgress)
    assert isinstance(progress_for(console, search_job(), live), SearchProgress)
