"""The console as a component of the local stack (its command line, port, readiness, where it
runs) and `trainserve console`, which prints a one-time sign-in link."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from trainserve.cli.main import app
from trainserve.console import links
from trainserve.local import COMPONENTS, Config, LocalStack, stack_file


def test_the_console_is_a_default_component_on_its_own_port(tmp_path):
    config = Config(state_dir=tmp_path / "state", console_port=18270)
    stack = LocalStack(config)
    assert "console" in COMPONENTS and "console" in stack.components
    argv = stack.launch("console").argv
    assert argv[argv.index("--listen") + 1] == "127.0.0.1:18270"
    assert argv[argv.index("--api") + 1] == config.api_address
    assert argv[argv.index("--state-dir") + 1] == str(config.state_dir)
    assert [u.port for u in stack.ports("console")] == [18270]
    assert stack.address("console") == config.console_url == "http://127.0.0.1:18270"
    assert not stack.is_ready("console")  # nothing listens there


def test_the_console_runs_on_a_loopback_host_only(tmp_path):
    assert "console" not in LocalStack(Config(state_dir=tmp_path, host="10.0.0.5")).components


def test_trainserve_console_needs_the_console_running(tmp_path):
    result = CliRunner().invoke(app, ["console", "--state-dir", str(tmp_path / "state")])
    assert result.exit_code == 1 and "`trainserve up` starts it" in result.stderr


def test_trainserve_console_prints_a_one_time_link(tmp_path, monkeypatch):
    state = tmp_path / "state"
    stack_file(state).parent.mkdir(parents=True)
    stack_file(state).write_text(json.dumps(
        Config(state_dir=state, console_port=18271).to_dict()))
    monkeypatch.setattr(LocalStack, "is_running", lambda self, name: name == "console")
    result = CliRunner().invoke(app, ["console", "--state-dir", str(state)])
    assert result.exit_code == 0, result.output
    url = result.stdout.strip()
    prefix = "http://127.0.0.1:18271/signin/"
    assert url.startswith(prefix) and "valid 10 minutes" in result.stderr
    assert links.redeem(state, url[len(prefix):])
