"""Create (or reuse) the chart test tools' virtualenv, `.venv-chart/` at the repository root.

helm-sdkpy (Helm's library) needs Python >= 3.12; the project itself runs on 3.11, so the tools
live in a virtualenv of their own. Idempotent: a stamp of requirements.txt makes a second run
a no-op. Stdlib only, so `./dev.sh` and the tests can call it from any Python.

    python tests/chart/ensure_tools.py     # prints the tool venv's python, or why there is none
"""
from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("CHART_VENV") or ROOT / ".venv-chart")
REQUIREMENTS = Path(__file__).resolve().parent / "requirements.txt"


class ToolsUnavailable(RuntimeError):
    """No Python >= 3.12 here, or the packages could not be installed; the message says which."""


def _version_ok(python: str) -> bool:
    try:
        out = subprocess.run([python, "-c", "import sys, venv; print(sys.version_info >= (3, 12))"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() == "True"


def find_python() -> str | None:
    """A Python >= 3.12 with venv: $CHART_PYTHON, python3.13/3.12 on PATH, or pyenv's."""
    candidates = [os.environ.get("CHART_PYTHON", "")]
    candidates += [shutil.which(n) or "" for n in ("python3.13", "python3.12")]
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/3.1[2-9]*/bin/python3"), reverse=True)
    return next((c for c in candidates if c and _version_ok(c)), None)


def ensure() -> Path:
    """The tool venv's python, creating the venv and installing requirements.txt if needed."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".installed"
    want = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:16]
    if python.exists() and stamp.exists() and stamp.read_text().strip() == want:
        return python
    base = find_python()
    if base is None:
        raise ToolsUnavailable("no Python >= 3.12 found (python3.12 on PATH, pyenv, or "
                               "$CHART_PYTHON): helm-sdkpy, which renders the chart, needs it")
    if not python.exists():
        subprocess.run([base, "-m", "venv", str(VENV)], check=True)
    result = subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise ToolsUnavailable(f"installing {REQUIREMENTS.name} into {VENV} failed:\n"
                               f"{result.stderr[-2000:]}")
    stamp.write_text(want + "\n")
    return python


if __name__ == "__main__":
    try:
        print(ensure())
    except ToolsUnavailable as exc:
        print(f"chart tools unavailable: {exc}", file=sys.stderr)
        sys.exit(3)
