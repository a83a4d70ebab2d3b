"""The shipped Grafana dashboards are valid dashboard JSON, and every trainserve metric and
label their queries use exists in the code's metric definitions (Ray's own metrics are checked
against a live scrape in tests/integration/test_metrics.py)."""
from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from tests.dashboard_queries import (dashboards, family, panels, queries, variable_queries)

EXPECTED = {"trainserve-jobs.json", "trainserve-training.json", "trainserve-searches.json",
            "trainserve-serving.json", "trainserve-cluster.json"}


def defined_metrics() -> dict[str, set[str]]:
    """Family name -> label names, from the definitions in the code."""
    from trainserve.api import metrics as api
    from trainserve.dispatch.metrics import DispatcherMetrics
    from trainserve.serve.metrics import EXPORTED

    dispatcher = DispatcherMetrics(CollectorRegistry())
    known: dict[str, set[str]] = {}
    for metric in (api.GRPC_REQUESTS, api.GRPC_LATENCY, api.SUBMISSIONS, api.REDIS_ERRORS,
                   *vars(dispatcher).values()):
        fam = metric.describe()[0]
        known[fam.name + ("_total" if fam.type == "counter" else "")] = set(metric._labelnames)
    for fam in [*api.JobStateCollector(None).describe(), *api.TrainingCollector(None).describe()]:
        known[fam.name] = set(fam._labelnames)
    known.update({name: set(labels) for name, labels in EXPORTED.items()})
    return known


def test_the_five_dashboards_ship():
    assert set(dashboards()) == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dashboard_is_valid_grafana_json(name):
    doc = dashboards()[name]
    assert isinstance(doc["schemaVersion"], int) and doc["schemaVersion"] >= 36
    assert doc["uid"] == name.removesuffix(".json") and doc["title"].startswith("trainserve / ")
    variables = doc["templating"]["list"]
    assert variables[0]["name"] == "datasource" and variables[0]["type"] == "datasource"
    assert variables[0]["query"] == "prometheus"
    ids = [p["id"] for p in panels(doc)]
    assert len(ids) == len(set(ids))
    graphs = [p for p in panels(doc) if p["type"] != "row"]
    assert graphs
    for p in graphs:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert set(p["gridPos"]) == {"h", "w", "x", "y"} and p["gridPos"]["x"] + \
            p["gridPos"]["w"] <= 24, p["title"]
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs))
        for t in p["targets"]:
            assert t["expr"].strip() and t["datasource"]["uid"] == "${datasource}"
    for v in variables[1:]:
        assert v["datasource"]["uid"] == "${datasource}" and v["includeAll"]
        assert v["allValue"] == ".*"


def test_every_trainserve_metric_and_label_in_a_dashboard_is_defined():
    known = defined_metrics()
    problems = []
    for q in queries():
        ours = {m for m in q.metrics() if m.startswith(("trainserve_", "ray_trainserve_"))}
        labels: set[str] = set()
        for m in ours:
            name = m if m in known else family(m)
            if name not in known:
                problems.append(f"unknown metric {m} in {q.where}")
            labels |= known.get(name, set())
        if ours and ours == q.metrics():  # only our metrics: every label must be theirs
            for label in (q.labels() | q.legend_labels()) - labels:
                problems.append(f"label {label} is not a label of {sorted(ours)} in {q.where}")
    assert not problems, "\n".join(problems)


def test_variables_read_defined_labels():
    known = defined_metrics()
    for dashboard, var, metric, label in variable_queries():
        if metric.startswith(("trainserve_", "ray_trainserve_")):
            assert label in known[metric], (dashboard, var)


def test_the_checks_can_fail():
    """A query on a misspelt metric or a label the metric lacks is caught."""
    from tests.dashboard_queries import Query
    known = defined_metrics()
    bad = Query("x", "p", 'sum by (endpoint) (trainserve_jobs{state="running"})', "")
    assert "endpoint" not in known["trainserve_jobs"] and "endpoint" in bad.labels()
    assert "trainserve_jobz" not in known
    q = Query("x", "p", 'histogram_quantile(0.5, sum by (le, method) '
              '(rate(trainserve_grpc_request_duration_seconds_bucket[$__rate_interval])))',
              "{{method}}")
    assert q.metrics() == {"trainserve_grpc_request_duration_seconds_bucket"}
    assert family(next(iter(q.metrics()))) in known and q.labels() == {"method"}
    assert q.filled({}, "20s").endswith("[20s])))")
