"""The chart's values against the settings (`trainserve.local.Config`): every setting that
declares a chart value (`chart=`) has it in values.yaml, with the setting's default unless
listed below, and a value given there reaches the same flag or redis.conf line of the same
component as the setting does in the local stack."""
from __future__ import annotations

from dataclasses import fields

import pytest
import yaml

from tests.chart.conftest import CHART
from trainserve.local import Config, LocalStack, redis_conf
from trainserve.store.jobs import RETENTION_S

CHARTED = {f.metadata["chart"]: f for f in fields(Config) if f.metadata["chart"]}
# A setting whose default is None leaves the service its own default: these are those.
SERVICE_DEFAULTS = {"job_retention_s": RETENTION_S}
# Chart values whose default differs from the local stack's, and why.
OTHER_DEFAULTS = {
    "redis.port": "the chart's Redis has a pod of its own, on Redis's usual port; on one "
                  "machine 6379 is the Ray head's",
    "redis.maxmemory": "below the Redis pod's memory limit",
    "dispatcher.userQuota.maxJobs": "a shared cluster's quota of running jobs per user",
    "inference.auth.enabled": "a cluster's endpoints are reachable from other machines",
}
# The chart refuses these values by design.
REFUSED = {("api.auth.enabled", False): "the job API runs without tokens only on loopback"}
COMPONENTS = ("api", "dispatcher", "redis")


def _values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def _get(doc: dict, path: str):
    for key in path.split("."):
        doc = doc[key]
    return doc


def _nested(path: str, value) -> dict:
    for key in reversed(path.split(".")):
        value = {key: value}
    return value


def _pairs(argv: list[str]) -> set[tuple[str, str]]:
    """(flag, value) of a command line, `--flag=value` and `--flag value` alike."""
    pairs, i = set(), 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--") and "=" in arg:
            pairs.add(tuple(arg.split("=", 1)))
        elif arg.startswith("--") and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            pairs.add((arg, argv[i + 1]))
            i += 1
        elif arg.startswith("--"):
            pairs.add((arg, ""))
        i += 1
    return pairs - {p for p in pairs if p[0] == "--consumer"}  # a new one per start


def _conf(text: str) -> set[tuple[str, str]]:
    lines = [line.split(" ", 1) for line in text.splitlines() if line and line[0] != "#"]
    return {(words[0], words[-1]) for words in lines}


def _local(config: Config) -> set[tuple[str, str, str]]:
    """(component, flag or redis.conf key, value) of the local stack with `config`."""
    stack = LocalStack(config)
    items = {("redis", k, v) for k, v in _conf(redis_conf(config))}
    for name in ("api", "dispatcher"):
        items |= {(name, k, v) for k, v in _pairs(stack.launch(name).argv)}
    return items


def _chart(docs: list[dict]) -> set[tuple[str, str, str]]:
    """The same of the chart's render: container args and the Redis ConfigMap's lines."""
    items = set()
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            for c in doc["spec"]["template"]["spec"]["containers"]:
                if c["name"] in COMPONENTS:
                    items |= {(c["name"], k, v) for k, v in _pairs(c.get("args", []))}
        elif doc["kind"] == "ConfigMap" and doc["metadata"]["name"].endswith("-redis-config"):
            items |= {("redis", k, v) for k, v in _conf(doc["data"]["redis.conf"])}
    return items


def _probe(value, default):
    """A value unlike `default` of the same kind."""
    if isinstance(default, bool) or isinstance(value, bool):
        return not value
    if isinstance(default, str):
        return "123mb"
    return 12345


def _changed(a: set, b: set) -> set[tuple[str, str]]:
    return {(component, key) for component, key, _ in a ^ b}


def test_every_charted_setting_is_a_chart_value_with_its_default():
    values = _values()
    for path, f in CHARTED.items():
        chart_default = _get(values, path)  # KeyError: the chart has no such value
        ours = SERVICE_DEFAULTS.get(f.name, f.default)
        if path in OTHER_DEFAULTS:
            assert chart_default != ours, f"{path} has the setting's default now: unlist it"
        else:
            assert chart_default == ours, (path, chart_default, f.name, ours)


@pytest.fixture(scope="module")
def rendered_default(render):
    result = render()
    assert result["ok"], result.get("error")
    return _chart(result["docs"])


@pytest.mark.parametrize("path", sorted(CHARTED))
def test_a_chart_value_reaches_what_its_setting_reaches_locally(path, render, tmp_path,
                                                                 rendered_default):
    f = CHARTED[path]
    base = Config(state_dir=tmp_path)
    local_value = _probe(f.default, f.default)
    chart_value = _probe(_get(_values(), path), f.default)
    result = render(values=_nested(path, chart_value))
    if (path, chart_value) in REFUSED:
        assert not result["ok"] and path in result["error"], result
        return
    assert result["ok"], result.get("error")
    local = _changed(_local(base), _local(base.replace(**{f.name: local_value})))
    chart = _changed(rendered_default, _chart(result["docs"]))
    assert local, f"{f.name} changes nothing the test compares"
    assert local <= chart, (f"{path} does not reach what {f.name} does locally",
                            sorted(local - chart))
