"""The layers of docs/architecture.md hold: the import contracts in pyproject.toml pass, and
every module imports on its own (an import cycle shows up as an ImportError of a partly
initialised module only when that module happens to be imported first)."""
from __future__ import annotations

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
    # One interpreter per batch of modules would hide order effects, so each module gets a
    # fresh one; all start together and are read as they finish.
    procs = {m: subprocess.Popen([sys.executable, "-c", f"import {m}"], cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for m in _modules()}
    failed = {}
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        if proc.returncode:
            failed[name] = err.strip().splitlines()[-1:]
    assert not failed, failed


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
