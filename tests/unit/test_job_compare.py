"""The rules of GetJobCurves, CompareJobs and ListJobs' label selectors, on hand-built protos
(`jobs.curves`, `jobs.compare`, `jobs.labels`); the SDK and the CLI over them against the fake
job API, which answers with these same functions."""
from __future__ import annotations

import json
import math

import pytest

from tests.unit.test_cli_commands import assert_error, cli  # noqa: F401 - fixtures
from tests.unit.test_client_sdk import client, fake_api  # noqa: F401 - fixtures
from trainserve.core import errors
from trainserve.core.pb import job_pb2, spec_pb2
from trainserve.core.spec import parse_spec
from trainserve.jobs import compare, curves, labels

XOR = {"name": "xor-mlp", "dataset": {"name": "xor"}, "model": {"mlp": {"hidden": [8]}},
       "optimizer": {"name": "adam", "lr": 0.05}, "training": {"epochs": 3}}


def epoch_event(epoch: int, **metrics) -> job_pb2.JobEvent:
    return job_pb2.JobEvent(epoch=job_pb2.EpochMetrics(epoch=epoch, total_epochs=3,
                                                       metrics=metrics))


def points(*rows: dict) -> list[job_pb2.EpochMetrics]:
    return [job_pb2.EpochMetrics(epoch=i, metrics=row) for i, row in enumerate(rows, 1)]


# -- curves -------------------------------------------------------------------------------------

def test_epoch_points_keep_epoch_events_in_order_latest_report_wins():
    events = [epoch_event(1, train_loss=1.0), job_pb2.JobEvent(log=job_pb2.LogLine(text="x")),
              epoch_event(3, train_loss=0.5), epoch_event(2, train_loss=0.7),
              epoch_event(2, train_loss=9.0)]
    got = curves.epoch_points(events)
    assert [p.epoch for p in got] == [1, 2, 3]
    assert got[1].metrics["train_loss"] == 9.0


def test_job_curves_are_the_epoch_events_metric_by_metric():
    events = [epoch_event(1, train_loss=1.0, val_accuracy=0.5),
              epoch_event(2, train_loss=0.5, val_accuracy=0.75, lr=0.1),
              epoch_event(3, train_loss=float("nan"), val_accuracy=1.0)]
    got = curves.job_curves(job_pb2.Job(id="j-1"), events)
    assert got.job_id == "j-1" and got.stride == 1 and not got.trials
    assert sorted(got.metrics) == ["lr", "train_loss", "val_accuracy"]
    assert list(got.metrics["val_accuracy"].epochs) == [1, 2, 3]
    assert list(got.metrics["val_accuracy"].values) == [0.5, 0.75, 1.0]
    assert list(got.metrics["lr"].epochs) == [2]  # reported once: one point
    assert math.isnan(got.metrics["train_loss"].values[2])  # kept as reported


def test_a_search_has_curves_per_trial():
    trial = job_pb2.Trial(id="t-1", curve=[
        job_pb2.TrialPoint(epoch=2, metrics={"val_loss": 0.4}),
        job_pb2.TrialPoint(epoch=1, metrics={"val_loss": 0.9})])
    got = curves.job_curves(job_pb2.Job(id="j-1"), [], [trial, job_pb2.Trial(id="t-2")], "t-1")
    assert got.best_trial == "t-1" and not got.metrics
    assert list(got.trials["t-1"].metrics["val_loss"].epochs) == [1, 2]
    assert list(got.trials["t-1"].metrics["val_loss"].values) == [0.9, 0.4]


def test_an_answer_over_the_point_limit_keeps_every_kth_point_and_the_last():
    events = [epoch_event(e, a=float(e), b=-float(e)) for e in range(1, 102)]
    got = curves.job_curves(job_pb2.Job(id="j"), events, max_points=50)
    kept = list(got.metrics["a"].epochs)
    assert got.stride > 1 and kept[0] == 1 and kept[-1] == 101
    assert all(b - a == got.stride for a, b in zip(kept, kept[1:-1]))
    assert sum(len(c.epochs) for c in got.metrics.values()) <= 50
    assert list(got.metrics["a"].values) == [float(e) for e in kept]


def test_thinning_stops_at_first_and_last_with_more_curves_than_points():
    trials = [job_pb2.Trial(id=f"t-{i}", curve=[job_pb2.TrialPoint(epoch=e, metrics={"m": 1.0})
                                                 for e in range(1, 6)]) for i in range(10)]
    got = curves.job_curves(job_pb2.Job(id="j"), [], trials, max_points=5)
    assert all(list(t.metrics["m"].epochs) == [1, 5] for t in got.trials.values())


# -- best epochs ---------------------------------------------------------------------------------

def test_best_epoch_goes_the_metric_s_way_first_epoch_on_ties_nan_skipped():
    best = compare.best_epochs(points(
        {"val_loss": 0.9, "val_accuracy": 0.5, "cv_accuracy_mean": 0.1},
        {"val_loss": 0.3, "val_accuracy": 0.8, "cv_accuracy_mean": 0.2},
        {"val_loss": float("nan"), "val_accuracy": 0.8, "cv_accuracy_mean": 0.15},
        {"val_loss": 0.4, "val_accuracy": 0.7, "train_loss": float("inf")}))
    assert (best["val_loss"].value, best["val_loss"].epoch, best["val_loss"].mode) == \
        (0.3, 2, "min")
    assert (best["val_accuracy"].value, best["val_accuracy"].epoch,
            best["val_accuracy"].mode) == (0.8, 2, "max")
    assert (best["cv_accuracy_mean"].epoch, best["cv_accuracy_mean"].mode) == (2, "max")
    assert "train_loss" not in best  # never finite


def test_compared_job_has_final_metrics_best_epochs_and_epoch_count():
    job = job_pb2.Job(id="j-1", spec=spec_pb2.JobSpec(name="x"), state=job_pb2.JOB_STATE_SUCCEEDED,
                      metrics={"test_accuracy": 1.0})
    row = compare.compared_job(job, points({"val_loss": 0.5}, {"val_loss": 0.2}))
    assert (row.job_id, row.name, row.epochs) == ("j-1", "x", 2)
    assert dict(row.final_metrics) == {"test_accuracy": 1.0}
    assert row.best["val_loss"].epoch == 2


# -- spec differences ----------------------------------------------------------------------------

def test_flat_spec_paths_are_proto3_json_with_proto_names():
    spec = parse_spec({**XOR, "labels": {"course": "week3", "a.b": "x"}})
    flat = compare.flat_spec(spec)
    assert flat["optimizer.lr"] == "0.05"
    assert flat["model.mlp.hidden"] == "[8]"  # a list is one field
    assert flat["model.mlp.dropout"] == "0.0"  # defaults without presence show
    assert flat["labels.course"] == '"week3"' and flat['labels["a.b"]'] == '"x"'
    assert "labels" not in flat and "deploy" not in flat


def test_differences_are_only_the_fields_that_differ_with_each_job_s_value():
    a = parse_spec(XOR)
    b = parse_spec({**XOR, "optimizer": {"name": "adam", "lr": 0.01},
                    "model": {"mlp": {"hidden": [8], "dropout": 0.2}}})
    diffs = compare.spec_differences([a, b])
    assert {d.path: list(d.values) for d in diffs} == {
        "optimizer.lr": ["0.05", "0.01"], "model.mlp.dropout": ["0.0", "0.2"]}
    assert compare.spec_differences([a, parse_spec(XOR)]) == []


def test_a_field_one_spec_lacks_is_unset_and_an_empty_message_shows():
    a = parse_spec(XOR)
    b = parse_spec({**XOR, "model": {"perceptron": {}}, "labels": {"course": "w3"}})
    diffs = {d.path: list(d.values) for d in compare.spec_differences([a, b])}
    assert diffs["model.perceptron"] == [compare.UNSET, "{}"]
    assert diffs["model.mlp.hidden"] == ["[8]", compare.UNSET]
    assert diffs["labels.course"] == [compare.UNSET, '"w3"']
    assert "labels" not in diffs


@pytest.mark.parametrize("ids, field", [
    (["j-1"], "job_ids"), ([f"j-{i}" for i in range(21)], "job_ids"),
    (["j-1", ""], "job_ids[1]"), (["j-1", "j-2", "j-1"], "job_ids[2]")])
def test_compare_takes_2_to_20_distinct_ids(ids, field):
    with pytest.raises(errors.InvalidArgument) as info:
        compare.check_ids(ids)
    assert info.value.field == field


# -- label selectors ----------------------------------------------------------------------------

def test_label_selectors_all_must_match_whole():
    job = job_pb2.Job(spec=spec_pb2.JobSpec(labels={"course": "week3", "by": "ana", "e": ""}))
    assert labels.matches(job, labels.parse_selector(["course=week3", "by=ana"]))
    assert labels.matches(job, labels.parse_selector(["e="]))
    assert not labels.matches(job, labels.parse_selector(["course=week"]))
    assert not labels.matches(job, labels.parse_selector(["course=week3", "by=bo"]))
    assert not labels.matches(job, labels.parse_selector(["missing="]))
    assert labels.parse_selector(["k=a=b"]) == [("k", "a=b")]


@pytest.mark.parametrize("selectors, field", [
    (["course"], "labels[0]"), (["a=b", "=x"], "labels[1]"),
    ([f"k{i}=v" for i in range(17)], "labels")])
def test_bad_label_selectors_name_the_field(selectors, field):
    with pytest.raises(errors.InvalidArgument) as info:
        labels.parse_selector(selectors)
    assert info.value.field == field


# -- SDK and CLI --------------------------------------------------------------------------------

def finished(api, job_id: str, lr: float, dropout: float = 0.0, **labelled):
    job = api.add_job(job_id, state=job_pb2.JOB_STATE_SUCCEEDED, metrics={"test_accuracy": 1.0})
    job.spec.CopyFrom(parse_spec({**XOR, "optimizer": {"name": "adam", "lr": lr},
                                  "model": {"mlp": {"hidden": [8], "dropout": dropout}},
                                  "labels": labelled}))
    for epoch, loss in enumerate((0.9, 0.2, 0.4), 1):
        api.add_event(job_id, epoch=job_pb2.EpochMetrics(
            epoch=epoch, total_epochs=3, metrics={"val_loss": loss, "val_accuracy": 1 - loss}))
    return job


def test_sdk_curves_are_plain_python(client, fake_api):  # noqa: F811
    api, _ = fake_api
    finished(api, "j-1", 0.05)
    got = client.curves("j-1")
    assert got["metrics"]["val_loss"] == [(1, 0.9), (2, 0.2), (3, 0.4)]
    assert got["trials"] == {} and got["stride"] == 1 and got["job_id"] == "j-1"
    with pytest.raises(errors.NotFound, match="nope"):
        client.curves("nope")


def test_sdk_compare_and_list_by_labels(client, fake_api):  # noqa: F811
    api, _ = fake_api
    finished(api, "j-1", 0.05, course="w3")
    finished(api, "j-2", 0.01, 0.2, course="w4")
    got = client.compare(["j-1", "j-2"])
    assert [j.job_id for j in got.jobs] == ["j-1", "j-2"]
    assert got.jobs[0].best["val_loss"].epoch == 2
    assert {d.path for d in got.differences} == {"optimizer.lr", "model.mlp.dropout",
                                                  "labels.course"}
    assert [j.id for j in client.iter_jobs(labels={"course": "w4"})] == ["j-2"]
    assert [j.id for j in client.list_jobs(labels="course=w3").jobs] == ["j-1"]
    with pytest.raises(errors.InvalidArgument, match="labels\\[0\\]"):
        client.list_jobs(labels=["course"])
    with pytest.raises(errors.InvalidArgument, match="job_ids"):
        client.compare(["j-1"])


def test_cli_compare_prints_metrics_and_differences(cli):  # noqa: F811
    finished(cli.api, "j-1", 0.05)
    finished(cli.api, "j-2", 0.01, 0.2)
    result = cli("compare", "j-1", "j-2")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "val_loss" in out and "0.2 (2)" in out and "test_accuracy" in out
    assert "optimizer.lr" in out and "0.01" in out and "model.mlp.dropout" in out
    assert "training.epochs" not in out  # the same in both
    doc = json.loads(cli("compare", "j-1", "j-2", "-o", "json").stdout)
    assert [d["path"] for d in doc["differences"]] == ["model.mlp.dropout", "optimizer.lr"]
    assert doc["jobs"][1]["best"]["val_accuracy"] == {"value": 0.8, "epoch": 2, "mode": "max"}


def test_cli_compare_refuses_one_job_and_unknown_ones(cli):  # noqa: F811
    finished(cli.api, "j-1", 0.05)
    assert_error(cli("compare", "j-1"), 2, "job_ids")
    assert_error(cli("compare", "j-1", "j-9"), 1, "j-9")


def test_cli_curves_table_and_json(cli):  # noqa: F811
    finished(cli.api, "j-1", 0.05)
    result = cli("curves", "j-1")
    assert result.exit_code == 0, result.output
    assert "EPOCH" in result.stdout and "val_accuracy" in result.stdout
    doc = json.loads(cli("curves", "j-1", "-o", "json").stdout)
    assert doc["metrics"]["val_loss"]["epochs"] == [1, 2, 3]


def test_cli_jobs_label_filter(cli):  # noqa: F811
    finished(cli.api, "j-1", 0.05, course="w3")
    finished(cli.api, "j-2", 0.05, course="w4", by="ana")
    result = cli("jobs", "-l", "course=w4", "--label", "by=ana", "-o", "json")
    assert [j["id"] for j in json.loads(result.stdout)["jobs"]] == ["j-2"]
    assert "no jobs labelled course=w5" in cli("jobs", "-l", "course=w5").stdout
    assert_error(cli("jobs", "-l", "course"), 2, "labels[0]")
