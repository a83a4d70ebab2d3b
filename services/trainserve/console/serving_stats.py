"""An endpoint's request rate, latency and errors, from the serving metrics
(docs/monitoring.md: `ray_trainserve_inference_requests_total{endpoint, model, version,
code}` and `ray_trainserve_inference_request_duration_seconds`).

Where they come from: Ray's metrics agents, whose addresses Ray lists in its service-discovery
file (`prom_metrics_service_discovery.json`, the file the stack's Prometheus reads too). The
console reads their Prometheus text itself, so the numbers are there without a Prometheus;
the rate is the change of the request counter between the reads of the last `WINDOW_S`.
Where the agents are out of reach (a cluster, whose console runs outside the Ray nodes), the
same totals come from a Prometheus that scrapes them (`--prometheus URL`), one instant query
per series, and the rate is worked out the same way.
The caller checks that the user may see the endpoint (GetDeployment) before asking.
"""
from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
import urllib.request
from collections import defaultdict, deque
from pathlib import Path
from typing import Any, Iterable

REQUESTS = "ray_trainserve_inference_requests_total"
DURATION = "ray_trainserve_inference_request_duration_seconds"
WINDOW_S = 60.0
SCRAPE_TIMEOUT_S = 2.0
MAX_TARGETS = 64
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\}\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def empty_totals() -> dict[str, Any]:
    """An endpoint's totals before any sample: requests by code and by model version, the
    latency histogram's buckets (le -> count), its sum and count."""
    return {"codes": defaultdict(float), "versions": defaultdict(float),
            "buckets": defaultdict(float), "sum": 0.0, "count": 0.0}


def parse(text: str, endpoint: str) -> dict[str, Any]:
    """The endpoint's series in one agent's Prometheus text: requests by code and by model
    version, the latency histogram's buckets (le -> count), sum and count."""
    out = empty_totals()
    for line in text.splitlines():
        if not line.startswith((REQUESTS, DURATION)):
            continue
        match = _SAMPLE.match(line)
        if not match:
            continue
        name, labels, value = match.group(1), dict(_LABEL.findall(match.group(2))), match.group(3)
        if labels.get("endpoint") != endpoint:
            continue
        _add(out, name, labels, float(value))
    return out


def _add(out: dict[str, Any], name: str, labels: dict[str, str], value: float) -> None:
    if name == REQUESTS:
        out["codes"][labels.get("code", "")] += value
        out["versions"][labels.get("version", "")] += value
    elif name == DURATION + "_bucket":
        out["buckets"][float(labels.get("le", "inf"))] += value
    elif name == DURATION + "_sum":
        out["sum"] += value
    elif name == DURATION + "_count":
        out["count"] += value


def merge(parts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    total = empty_totals()
    for part in parts:
        for key in ("codes", "versions", "buckets"):
            for k, v in part[key].items():
                total[key][k] += v
        total["sum"] += part["sum"]
        total["count"] += part["count"]
    return total


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """The q-quantile of a cumulative histogram, interpolated in its bucket (as Prometheus's
    histogram_quantile); None without observations."""
    edges = sorted(buckets.items())
    if not edges or edges[-1][1] <= 0:
        return None
    rank, low, below = q * edges[-1][1], 0.0, 0.0
    for le, count in edges:
        if count >= rank:
            if le == float("inf"):
                return low
            return low + (le - low) * ((rank - below) / (count - below) if count > below else 1)
        low, below = le, count
    return low


class ServingStats:
    """Reads the serving metrics for the console; remembers each endpoint's recent totals to
    tell its request rate."""

    def __init__(self, targets_file: Path | None, clock=time.monotonic,
                 prometheus: str | None = None):
        self.targets_file = targets_file
        self.prometheus = prometheus.rstrip("/") if prometheus else None
        self._clock = clock
        self._history: dict[str, deque] = {}
        self._lock = threading.Lock()

    def targets(self) -> list[str]:
        """host:port of each metrics agent Ray lists now (none without the file)."""
        if self.targets_file is None:
            return []
        try:
            groups = json.loads(Path(self.targets_file).read_text())
        except (OSError, ValueError):
            return []
        found = [t for g in groups if isinstance(g, dict) for t in g.get("targets", [])
                 if isinstance(t, str)]
        return found[:MAX_TARGETS]

    def endpoint(self, name: str) -> dict[str, Any]:
        """{"available", "requests", "errors", "by_code", "by_version", "rate_per_s",
        "error_rate_per_s", "latency_mean_ms", "latency_p50_ms", "latency_p99_ms"}."""
        if self.prometheus:
            try:
                totals = query_prometheus(self.prometheus, name)
            except (OSError, ValueError) as exc:
                return {"available": False, "source": f"Prometheus at {self.prometheus}: {exc}"}
            return self._summary(name, totals, f"Prometheus at {self.prometheus}")
        targets = self.targets()
        if not targets:
            return {"available": False, "source": "no serving metrics configured"}
        totals = merge(parse(text, name) for text in _scrape_all(targets))
        return self._summary(name, totals, f"{len(targets)} Ray metrics agent(s)")

    def _summary(self, name: str, totals: dict[str, Any], source: str) -> dict[str, Any]:
        requests = sum(totals["codes"].values())
        errors = requests - totals["codes"].get("OK", 0.0)
        rate, error_rate = self._rates(name, requests, errors)
        ms = lambda v: None if v is None else v * 1000  # noqa: E731
        return {"available": True, "source": source,
                "requests": requests, "errors": errors,
                "by_code": dict(totals["codes"]), "by_version": dict(totals["versions"]),
                "rate_per_s": rate, "error_rate_per_s": error_rate, "window_s": WINDOW_S,
                "latency_mean_ms": ms(totals["sum"] / totals["count"]) if totals["count"]
                else None,
                "latency_p50_ms": ms(quantile(totals["buckets"], 0.5)),
                "latency_p99_ms": ms(quantile(totals["buckets"], 0.99))}

    def _rates(self, name: str, requests: float, errors: float) -> tuple[float | None, ...]:
        """Requests and errors per second over the reads of the last WINDOW_S."""
        now = self._clock()
        with self._lock:
            history = self._history.setdefault(name, deque())
            history.append((now, requests, errors))
            while history and now - history[0][0] > WINDOW_S:
                history.popleft()
            first = history[0]
        span = now - first[0]
        if span <= 0:
            return None, None
        return max(0.0, (requests - first[1]) / span), max(0.0, (errors - first[2]) / span)


def _scrape_all(targets: list[str]) -> list[str]:
    """Each agent's /metrics text; an agent that does not answer in time is left out."""
    texts: list[str] = []
    threads = [threading.Thread(target=_scrape, args=(t, texts), daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SCRAPE_TIMEOUT_S + 0.5)
    return list(texts)


def _scrape(target: str, texts: list[str]) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://{target}/metrics", timeout=SCRAPE_TIMEOUT_S) as answer:
            texts.append(answer.read(32 << 20).decode("utf-8", "replace"))
    except (OSError, ValueError):
        pass


# One instant query per part of `parse`'s answer: (PromQL template, the part, its label).
_QUERIES = (
    (f"sum by (code) ({REQUESTS}{{endpoint=%s}})", "codes", "code"),
    (f"sum by (version) ({REQUESTS}{{endpoint=%s}})", "versions", "version"),
    (f"sum by (le) ({DURATION}_bucket{{endpoint=%s}})", "buckets", "le"),
    (f"sum({DURATION}_sum{{endpoint=%s}})", "sum", None),
    (f"sum({DURATION}_count{{endpoint=%s}})", "count", None),
)


def query_prometheus(base: str, endpoint: str) -> dict[str, Any]:
    """The endpoint's totals, as `parse` gives them, from Prometheus's HTTP API at `base`."""
    out = empty_totals()
    matcher = json.dumps(endpoint)  # a PromQL string literal: quotes and backslashes escaped
    for template, part, label in _QUERIES:
        for sample in _instant(base, template.replace("%s", matcher)):
            value = float(sample["value"][1])
            if label is None:
                out[part] += value
            elif label == "le":
                out[part][float(sample["metric"].get("le", "inf"))] += value
            else:
                out[part][sample["metric"].get(label, "")] += value
    return out


def _instant(base: str, promql: str) -> list[dict]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=SCRAPE_TIMEOUT_S) as answer:
        doc = json.loads(answer.read(8 << 20))
    if doc.get("status") != "success":
        raise ValueError(doc.get("error") or "query failed")
    return doc["data"]["result"]

