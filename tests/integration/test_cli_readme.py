"""The README's Python snippet, run as a user would paste it: from a folder that is not the
checkout, against the real local stack (Ray, Serve), found through its state folder."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"


def python_snippet() -> str:
    text = README.read_text()
    section = text[text.index("### From Python"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_sdk_snippet_runs_from_any_folder(stack, tmp_path):
    code = python_snippet()
    assert "examples/" not in code  # nothing relative to the checkout
    env = {**os.environ, "TRAINSERVE_STATE_DIR": str(stack.config.state_dir)}
    env.pop("TRAINSERVE_API", None)
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert any(re.search(r"epoch 30/30  train_loss \S+  val_loss \S+", line) for line in lines), \
        run.stdout
    assert any(re.search(r"\d\d:\d\d:\d\d  SUCCEEDED", line) for line in lines), run.stdout
    assert len(lines) < 100  # one line an event, not protobuf dumps
    assert "'label'" in lines[-1] or '"label"' in lines[-1]
