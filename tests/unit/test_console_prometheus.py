"""The console's serving metrics read from a real Prometheus (`--prometheus URL`, a cluster's
console) agree with the same metrics read from the agents directly."""
from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from tests.unit.test_console_manage import metrics_agent  # noqa: F401 - a fixture
from trainserve.console import serving_stats
from trainserve.console.__main__ import parse_args
from trainserve.core.ports import free_port


def scraped(url: str) -> bool:
    try:
        return bool(serving_stats._instant(url, serving_stats.REQUESTS))
    except (OSError, ValueError):
        return False


@pytest.fixture
def prometheus(metrics_agent, tmp_path):  # noqa: F811 - the fixture imported above
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed (./dev.sh test installs it)")
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "ray", "file_sd_configs": [
            {"files": [str(metrics_agent)], "refresh_interval": "1s"}]}]}))
    port = free_port()
    proc = subprocess.Popen([binary, f"--config.file={config}",
                             f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not scraped(url):
        assert proc.poll() is None and time.monotonic() < deadline, "no scrape within 60 s"
        time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_prometheus_gives_what_the_agents_give(prometheus, metrics_agent):  # noqa: F811
    direct = serving_stats.ServingStats(metrics_agent).endpoint("ep-alice")
    via = serving_stats.ServingStats(None, prometheus=prometheus).endpoint("ep-alice")
    assert via["available"] and via["source"] == f"Prometheus at {prometheus}"
    for key in ("requests", "errors", "by_code", "by_version", "latency_mean_ms",
                "latency_p50_ms", "latency_p99_ms"):
        assert via[key] == pytest.approx(direct[key]), key
    assert via["requests"] == 10 and via["by_version"] == {"1": 8, "2": 2}
    # A name is a PromQL string literal, never PromQL: quotes find nothing, break nothing.
    odd = serving_stats.ServingStats(None, prometheus=prometheus).endpoint('x"} or vector(1)')
    assert odd["available"] and odd["requests"] == 0


def test_an_unreachable_prometheus_is_said_so():
    url = f"http://127.0.0.1:{free_port()}"
    answer = serving_stats.ServingStats(None, prometheus=url).endpoint("ep-alice")
    assert answer["available"] is False and answer["source"].startswith(f"Prometheus at {url}")


def test_the_prometheus_url_is_http():
    assert parse_args(["--listen", "127.0.0.1:1", "--api", "127.0.0.1:2", "--prometheus",
                       "http://prom:9090"]).prometheus == "http://prom:9090"
    with pytest.raises(SystemExit):
        parse_args(["--listen", "127.0.0.1:1", "--api", "127.0.0.1:2", "--prometheus",
                    "file:///etc/passwd"])
