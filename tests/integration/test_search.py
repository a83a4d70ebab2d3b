"""Hyperparameter searches on the real stack: gRPC SubmitJob of a spec with `search` →
dispatcher → Ray Tune trials → best trial registered (with its lineage) → deployed → answers;
grid coverage, cancel, and a search resumed after its dispatcher is killed."""
from __future__ import annotations

import itertools
import json
import time

import numpy as np
import pytest

from tests.integration.helpers import get_model, rpc_error, submit, wait_job, watch
from tests.integration.test_spine import oip_labels, raw_test_split
from trainserve.core.spec import parse_spec
from trainserve.core.state import JobState
from trainserve.core.pb import job_pb2

pytestmark = pytest.mark.integration

BASE = {"dataset": {"name": "digits"}, "model": {"mlp": {"hidden": [32]}},
        "training": {"epochs": 4, "batch_size": 64}}


def _spec(name: str, **search):
    return parse_spec(BASE | {"name": name, "search": search})


def _get(stubs, job_id: str) -> job_pb2.Job:
    return stubs.jobs.GetJob(job_pb2.GetJobRequest(job_id=job_id), timeout=10)


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value is not None and value is not False:
            return value
        time.sleep(0.5)
    raise TimeoutError(what)


@pytest.fixture(scope="module")
def asha_search(stubs):
    # One trial at a time: ASHA's decisions depend on the order results arrive in, and this
    # makes that order (and so the test) the same on every run.
    spec = _spec("digits-search", space={"optimizer.lr": "loguniform(1e-5, 1e-1)",
                                         "model.mlp.hidden": "choice([[16], [64]])"},
                 scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2},
                 num_samples=6, max_concurrent_trials=1, trial_resources={"cpus": 0.5})
    spec.deploy.SetInParent()
    job = submit(stubs, spec)
    events = watch(stubs, job.id, timeout=400)
    return wait_job(stubs, job.id), events


def test_search_runs_trials_and_streams_them(asha_search):
    job, events = asha_search
    assert JobState(job.state) == JobState.SUCCEEDED, job.message
    assert len(job.trials) == 6
    kinds = {(e.trial.kind, e.trial.trial.id) for e in events if e.HasField("trial")}
    for trial in job.trials:
        assert {("started", trial.id), ("ended", trial.id)} <= kinds
        assert set(trial.config) == {"optimizer.lr", "model.mlp.hidden"}
        assert json.loads(trial.config["model.mlp.hidden"]) in ([16], [64])
        assert [p.epoch for p in trial.curve] == list(range(1, trial.epochs + 1))
    assert any(e.trial.kind == "reported" for e in events if e.HasField("trial"))


def test_asha_stops_poor_trials_early(asha_search):
    job, _ = asha_search
    states = [t.state for t in job.trials]
    assert "stopped_early" in states, states
    stopped = [t for t in job.trials if t.state == "stopped_early"]
    assert all(t.epochs < 4 for t in stopped)
    assert sum(t.epochs for t in job.trials) < 6 * 4


def test_best_trial_is_registered_with_lineage_and_answers(stack, stubs, asha_search):
    job, _ = asha_search
    best = {t.id: t for t in job.trials}[job.best_trial]
    assert best.state == "finished"
    finished = [t for t in job.trials if t.state == "finished"]
    assert best.metrics["val_accuracy"] == max(t.metrics["val_accuracy"] for t in finished)
    model = get_model(stubs, job.model_name, job.model_version)
    assert model.job_id == job.id and model.trial_id == best.id
    assert dict(model.search_config) == dict(best.config)
    assert not model.spec.HasField("search")
    assert model.spec.optimizer.lr == pytest.approx(json.loads(best.config["optimizer.lr"]))
    assert job.metrics["test_accuracy"] == pytest.approx(best.metrics["test_accuracy"])
    assert job.deployment == "digits-search"
    x, y = raw_test_split(model.spec)
    labels = _wait_for(lambda: _labels(stack, x), 120, "the best model's endpoint")
    assert (np.asarray(labels) == y).mean() >= 0.85


def _labels(stack, x):
    try:
        return oip_labels(stack, "digits-search", x, "http")
    except Exception:  # noqa: BLE001 - the endpoint is still coming up
        return None


def test_grid_covers_the_grid_exactly_once(stubs):
    lrs, widths = [0.003, 0.03], [[8], [24]]
    spec = _spec("digits-grid", algorithm="grid",
                 space={"optimizer.lr": f"grid({lrs})", "model.mlp.hidden": f"grid({widths})"},
                 trial_resources={"cpus": 0.5})
    spec.training.epochs = 1
    job = wait_job(stubs, submit(stubs, spec).id, timeout=300)
    assert JobState(job.state) == JobState.SUCCEEDED, job.message
    seen = sorted((json.loads(t.config["optimizer.lr"]), json.loads(t.config["model.mlp.hidden"]))
                  for t in job.trials)
    assert seen == sorted(itertools.product(lrs, widths))
    assert all(t.state == "finished" for t in job.trials)


def test_cancel_stops_every_trial(stubs):
    spec = _spec("digits-cancel", space={"optimizer.lr": "loguniform(1e-4, 1e-3)"},
                 num_samples=20, trial_resources={"cpus": 0.5})
    spec.training.epochs = 200
    job = submit(stubs, spec)
    _wait_for(lambda: any(t.epochs >= 1 for t in _get(stubs, job.id).trials), 120,
              "a trial's first epoch")
    stubs.jobs.CancelJob(job_pb2.CancelJobRequest(job_id=job.id), timeout=10)
    done = wait_job(stubs, job.id, timeout=120)
    assert JobState(done.state) == JobState.CANCELLED, done.message
    assert done.trials and all(t.state != "running" for t in done.trials), \
        [t.state for t in done.trials]
    assert len(done.trials) < 20


def test_a_search_resumes_after_its_dispatcher_is_killed(stack, stubs):
    spec = _spec("digits-resume", space={"optimizer.lr": "loguniform(1e-3, 1e-2)"},
                 num_samples=3, max_concurrent_trials=1, trial_resources={"cpus": 1})
    spec.training.epochs = 40
    job = submit(stubs, spec)
    _wait_for(lambda: sum(t.state == "finished" for t in _get(stubs, job.id).trials) >= 1
              and any(t.state == "running" and t.epochs >= 1 for t in _get(stubs, job.id).trials),
              240, "one finished trial and one running")
    before = {t.id: t for t in _get(stubs, job.id).trials}
    assert stack.kill("dispatcher")
    stack.start("dispatcher", timeout=180)
    done = wait_job(stubs, job.id, timeout=400)
    assert JobState(done.state) == JobState.SUCCEEDED, done.message
    assert done.attempts == 2
    after = {t.id: t for t in done.trials}
    assert len(after) == 3 and all(t.state == "finished" for t in after.values())
    for tid, t in before.items():
        if t.state == "finished":  # not trained again: its curve is the one it had
            assert [p.epoch for p in after[tid].curve] == [p.epoch for p in t.curve]


def test_bad_searches_are_refused_over_grpc(stubs):
    import grpc
    err = rpc_error(submit, stubs, _spec("bad", space={"optimizer.lrr": "uniform(0.1, 0.2)"}))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert 'spec.search.space["optimizer.lrr"]' in err.details()


def test_tpe_ranks_trials_by_cross_validated_auc(stubs):
    from tests.integration.helpers import example
    spec = example("tune_breast_cancer_optuna", name="bc-tpe")
    spec.search.num_samples, spec.split.folds, spec.training.epochs = 3, 3, 8
    job = wait_job(stubs, submit(stubs, spec).id, timeout=400)
    assert JobState(job.state) == JobState.SUCCEEDED, job.message
    assert len(job.trials) == 3 and all(t.state == "finished" for t in job.trials)
    scores = {t.id: t.metrics["cv_auc_mean"] for t in job.trials}
    assert job.best_trial == max(scores, key=scores.get)
    assert job.metrics["best_cv_auc_mean"] == pytest.approx(max(scores.values()))
    assert job.metrics["test_auc"] > 0.9


def test_pbt_hands_checkpoints_between_trials_and_finishes(stubs):
    spec = _spec("digits-pbt", space={"optimizer.lr": "loguniform(1e-4, 1e-1)"},
                 scheduler={"name": "pbt", "perturbation_interval": 1}, num_samples=4,
                 trial_resources={"cpus": 0.5})
    job = wait_job(stubs, submit(stubs, spec).id, timeout=400)
    assert JobState(job.state) == JobState.SUCCEEDED, job.message
    assert len(job.trials) == 4 and all(t.state == "finished" for t in job.trials)
    assert job.metrics["test_accuracy"] > 0.8


def test_a_trial_may_itself_be_a_two_worker_ddp_run(stubs):
    spec = _spec("digits-ddp-search", space={"optimizer.lr": "grid([0.003, 0.01])"},
                 algorithm="grid")
    spec.scaling.num_workers, spec.scaling.cpus_per_worker = 2, 0.5
    spec.training.epochs = 3
    job = submit(stubs, spec)
    logs = [e.log.text for e in watch(stubs, job.id, timeout=400) if e.HasField("log")]
    done = wait_job(stubs, job.id)
    assert JobState(done.state) == JobState.SUCCEEDED, (done.message, logs[-5:])
    assert len(done.trials) == 2 and all(t.state == "finished" for t in done.trials)
    assert all([p.epoch for p in t.curve] == [1, 2, 3] for t in done.trials)
    model = get_model(stubs, done.model_name, done.model_version)
    assert model.spec.scaling.num_workers == 2 and model.trial_id == done.best_trial


@pytest.mark.parametrize("scheduler", ["hyperband", "median"])
def test_other_schedulers_run_a_search_to_its_end(stubs, scheduler):
    spec = _spec(f"digits-{scheduler}", space={"optimizer.lr": "loguniform(1e-5, 1e-1)"},
                 scheduler={"name": scheduler, "grace_period": 1, "reduction_factor": 2},
                 num_samples=4, trial_resources={"cpus": 0.5})
    job = wait_job(stubs, submit(stubs, spec).id, timeout=300)
    assert JobState(job.state) == JobState.SUCCEEDED, job.message
    assert len(job.trials) == 4
    assert {t.state for t in job.trials} <= {"finished", "stopped_early"}


def test_the_time_budget_ends_a_search_with_the_best_trial_so_far(stubs):
    spec = _spec("digits-budget", space={"optimizer.lr": "loguniform(1e-3, 1e-2)"},
                 num_samples=500, time_budget_s=20, trial_resources={"cpus": 0.5})
    spec.training.epochs = 1
    started = time.time()
    job = wait_job(stubs, submit(stubs, spec).id, timeout=300)
    assert JobState(job.state) == JobState.SUCCEEDED, job.message
    assert time.time() - started < 120
    assert 1 <= len(job.trials) < 500
    assert job.best_trial in {t.id for t in job.trials if t.state == "finished"}


def test_a_search_ranks_by_a_clinical_metric_its_trials_early_stop_on(stubs):
    """Per-epoch clinical metrics through the stack: the trials report val_brier and
    val_malignant_sensitivity each epoch, stop early on the sensitivity, and the search keeps
    the trial with the lowest Brier score."""
    spec = parse_spec({
        "name": "bc-brier", "dataset": {"name": "breast_cancer"},
        "model": {"mlp": {"hidden": [16]}},
        "training": {"epochs": 30, "batch_size": 32, "early_stopping": {
            "metric": "val_malignant_sensitivity", "patience": 2}},
        "search": {"algorithm": "grid", "space": {"optimizer.lr": "grid([0.0003, 0.01])"},
                   "metric": "val_brier", "trial_resources": {"cpus": 0.5}}})
    job = wait_job(stubs, submit(stubs, spec).id, timeout=300)
    assert JobState(job.state) == JobState.SUCCEEDED, job.message
    assert job.spec.search.mode == "min" and job.spec.training.epoch_clinical_metrics
    assert job.spec.training.early_stopping.mode == "max"
    assert len(job.trials) == 2 and all(t.state == "finished" for t in job.trials)
    for trial in job.trials:
        assert all({"val_brier", "val_malignant_sensitivity", "val_benign_ppv"}
                   <= set(p.metrics) for p in trial.curve)
        assert trial.metrics["stopped_epoch"] < 30  # stopped on the sensitivity
    briers = {t.id: t.metrics["val_brier"] for t in job.trials}
    assert job.best_trial == min(briers, key=briers.get)
    curves = stubs.jobs.GetJobCurves(job_pb2.GetJobCurvesRequest(job_id=job.id), timeout=10)
    assert "val_brier" in curves.trials[job.best_trial].metrics
    bad = parse_spec(BASE | {"name": "bad-metric", "search": {
        "space": {"optimizer.lr": "uniform(0.001, 0.01)"}, "metric": "val_sensitivity"}})
    err = rpc_error(submit, stubs, bad)
    assert err.code().name == "INVALID_ARGUMENT" and "spec.search.metric" in err.details()
    assert "val_7_sensitivity" in err.details()
