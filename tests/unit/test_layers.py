"""The layers of docs/architecture.md hold: the import contracts in pyproject.toml pass, and
every module imports on its own (an import cycle shows up as an ImportError of a partly
initialised module only when that module happens to be imported first)."""
from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import trainserve

ROOT = Path(__file__).resolve().parents[2]


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(trainserve.__path__, "trainserve.")
                  if not m.name.startswith("trainserve._gen"))


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def test_every_module_imports_alone():
    # Each module is imported in a process of its own (forked after the third-party libraries
    # are loaded, see import_probe.py), so an import cycle cannot hide behind import order.
    probe = Path(__file__).with_name("import_probe.py")
    out = subprocess.run([sys.executable, str(probe)], cwd=ROOT, capture_output=True,
                         text=True, input="\n".join(_modules()), timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    failed = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert not failed, failed


def test_the_import_probe_finds_a_cycle(tmp_path):
    (tmp_path / "cyc_a.py").write_text("from cyc_b import B\nA = 1\n")
    (tmp_path / "cyc_b.py").write_text("from cyc_a import A\nB = 1\n")
    probe = Path(__file__).with_name("import_probe.py")
    out = subprocess.run([sys.executable, str(probe), "2"], cwd=tmp_path, capture_output=True,
                         text=True, input="cyc_a\njson\n", timeout=120,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)})
    failed = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [f["module"] for f in failed] == ["cyc_a"], out
    assert "partially initialized" in failed[0]["error"][0]


@pytest.mark.parametrize("package", ["trainserve.core", "trainserve.training"])
def test_the_cores_load_neither_ray_nor_redis(package):
    """The domain and the training core run in a notebook without a cluster: importing all
    of either loads neither Ray, nor a Redis client, nor gRPC."""
    mods = [m for m in _modules() if m == package or m.startswith(package + ".")]
    code = ("import sys\n" + "".join(f"import {m}\n" for m in mods) +
            "print(sorted(k for k in ('ray', 'redis', 'grpc') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    loaded = eval(out.stdout.strip())
    assert loaded == [], loaded
