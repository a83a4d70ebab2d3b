"""Fixtures of the chart tests: the tool venv (Python >= 3.12 with helm-sdkpy) and a renderer
that runs tests/chart/helmtool.py in it. On a developer machine without them (no Python >= 3.12)
the tests skip, with the reason; in CI (`CI` set, as `.ci/run` does) that is a failure, so a
green CI always means the chart was rendered and validated."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.chart import ensure_tools

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "trainserve"
HELMTOOL = Path(__file__).resolve().parent / "helmtool.py"


@pytest.fixture(scope="session")
def chart_python() -> Path:
    try:
        return ensure_tools.ensure()
    except ensure_tools.ToolsUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"chart tools unavailable in CI: {exc}")
        pytest.skip(f"chart tools unavailable: {exc}")


class Renderer:
    def __init__(self, python: Path):
        self.python = python

    def __call__(self, chart: Path = CHART, values_files=(), values: dict | None = None,
                 existing: list[dict] | None = None) -> dict:
        """Helm's render of `chart` and its validation: {"ok", "docs", "errors"} or
        {"ok": False, "error"}. `existing`: objects already in the cluster that the chart's
        `lookup`s find (an upgrade)."""
        cmd = [str(self.python), str(HELMTOOL), str(chart), "--set-json", json.dumps(values or {}),
               "--existing", json.dumps(existing or [])]
        for path in values_files:
            cmd += ["--values", str(path)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout)


@pytest.fixture(scope="session")
def render(chart_python) -> Renderer:
    return Renderer(chart_python)


@pytest.fixture
def chart_copy(tmp_path) -> Path:
    """A copy of the chart without whatever dashboards/ holds (tests add their own)."""
    dest = tmp_path / "trainserve"
    shutil.copytree(CHART, dest, ignore=shutil.ignore_patterns("dashboards"))
    return dest
