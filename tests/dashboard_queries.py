"""The shipped Grafana dashboards (helm/trainserve/dashboards/*.json) as data for the tests:
every panel query, its variables filled in, and the metric names and labels it uses."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

DASHBOARDS = Path(__file__).resolve().parents[1] / "helm" / "trainserve" / "dashboards"
_METRIC = re.compile(r"\b((?:trainserve|ray)_[A-Za-z0-9_]+)\b")
_SELECTOR = re.compile(r"\b([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_LEGEND = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
# Histogram and summary series beside the family's name.
SUFFIXES = ("_bucket", "_sum", "_count")


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str
    expr: str
    legend: str

    @property
    def where(self) -> str:
        return f"{self.dashboard} / {self.panel}: {self.expr}"

    def metrics(self) -> set[str]:
        return set(_METRIC.findall(_QUOTED.sub('""', self.expr)))

    def labels(self) -> set[str]:
        """Labels the query matches on or groups by (not `le`, which histograms add)."""
        bare = _QUOTED.sub('""', self.expr)
        found = {m for _, body in _SELECTOR.findall(bare) for m in _MATCHER.findall(body)}
        found |= {x.strip() for g in _GROUPING.findall(bare) for x in g.split(",") if x.strip()}
        return found - {"le", "__name__"}

    def legend_labels(self) -> set[str]:
        return set(_LEGEND.findall(self.legend))

    def filled(self, values: dict[str, str], rate_interval: str) -> str:
        """The expression as Grafana sends it: `$__rate_interval` and every `$var` replaced."""
        expr = self.expr.replace("$__rate_interval", rate_interval)
        for name, value in sorted(values.items(), key=lambda kv: -len(kv[0])):
            expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
        return expr


def dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(doc: dict):
    for p in doc.get("panels", []):
        yield p
        yield from p.get("panels", [])  # a collapsed row holds its panels


def queries() -> list[Query]:
    out = []
    for name, doc in dashboards().items():
        for p in panels(doc):
            for t in p.get("targets", []):
                out.append(Query(name, p.get("title", ""), t["expr"], t.get("legendFormat", "")))
    return out


def variable_queries() -> list[tuple[str, str, str, str]]:
    """(dashboard, variable, metric, label) of every `label_values(metric, label)` variable."""
    out = []
    for name, doc in dashboards().items():
        for v in doc["templating"]["list"]:
            if v.get("type") != "query":
                continue
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\(\s*([A-Za-z0-9_:]+)\s*,\s*([A-Za-z0-9_]+)\s*\)", q)
            assert m, f"{name}: variable {v['name']} is not label_values(metric, label): {q}"
            out.append((name, v["name"], m.group(1), m.group(2)))
    return out


def all_values() -> dict[str, str]:
    """Each query variable set to "All" (its allValue, a match-everything regex)."""
    return {v["name"]: v.get("allValue") or ".*" for doc in dashboards().values()
            for v in doc["templating"]["list"] if v.get("type") == "query"}


def family(name: str) -> str:
    """`x_bucket` -> `x` (a histogram's series belong to its family)."""
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def needs_gpu(query: Query) -> bool:
    """GPU panels have data only where a job or a Ray node uses a GPU."""
    return any("gpu" in m or "gram" in m for m in query.metrics())
