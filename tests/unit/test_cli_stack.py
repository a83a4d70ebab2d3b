"""`trainserve up / down / status` without starting servers."""
from __future__ import annotations

import json
import socket

import pytest
from typer.testing import CliRunner

from trainserve.cli.main import app
from trainserve.local import Config, stack_file
from trainserve.local import LocalStack, free_port

PORT_FLAGS = ("--api-port", "--redis-port", "--ray-port", "--dashboard-port",
              "--serve-http-port", "--serve-grpc-port", "--metrics-port",
              "--dispatcher-metrics-port")


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINSERVE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("COLUMNS", "200")
    return lambda *args: CliRunner().invoke(app, [str(a) for a in args])


def test_status_of_nothing(run, tmp_path):
    result = run("status")
    assert result.exit_code == 0
    assert result.stdout.count("STOPPED") == 4
    doc = json.loads(run("status", "-o", "json").stdout)
    assert doc["state_dir"] == str(tmp_path / "state")
    assert [c["name"] for c in doc["components"]] == ["redis", "ray", "api", "dispatcher"]
    assert not any(c["running"] for c in doc["components"])


def test_down_with_nothing_running(run, tmp_path):
    result = run("down")
    assert result.exit_code == 0
    assert f"nothing running in {tmp_path / 'state'}" in result.stdout


def test_up_with_a_taken_port_fails_before_starting_anything(run):
    ports = {flag: free_port() for flag in PORT_FLAGS}
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports["--redis-port"]))
        s.listen()
        result = run("up", *[x for kv in ports.items() for x in kv])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert f"port {ports['--redis-port']} on 127.0.0.1 (redis) is already in use" in \
        result.stderr
    assert "--redis-port" in result.stderr
    assert "started" not in result.stdout


def test_up_refuses_to_change_the_ports_of_a_running_stack(run, tmp_path, monkeypatch):
    state = tmp_path / "state"
    stack_file(state).parent.mkdir(parents=True)
    stack_file(state).write_text(json.dumps(Config(state_dir=state, api_port=6001).to_dict()))
    monkeypatch.setattr(LocalStack, "is_running", lambda self, name: name == "redis")
    result = run("up", "--api-port", "6002")
    assert result.exit_code == 1
    assert "is running (redis) with other settings" in result.stderr


def test_up_invalid_port_and_env_are_usage_errors(run, monkeypatch):
    assert run("up", "--api-port", "0").exit_code == 2
    monkeypatch.setenv("TRAINSERVE_REDIS_PORT", "lots")
    result = run("up")
    assert result.exit_code == 2 and "TRAINSERVE_REDIS_PORT" in result.stderr


def test_up_redis_maxmemory_flag(run, tmp_path, monkeypatch):
    """`--redis-maxmemory` reaches the config `up` starts with; a malformed size is refused
    before anything starts."""
    result = run("up", "--redis-maxmemory", "2 GB")
    assert result.exit_code != 0 and "redis_maxmemory" in result.stderr
    assert not stack_file(tmp_path / "state").exists()
    started = {}
    monkeypatch.setattr(LocalStack, "up", lambda self, timeout=None: started.setdefault(
        "config", self.config))
    run("up", "--redis-maxmemory", "512mb")
    assert started["config"].redis_maxmemory == "512mb"
