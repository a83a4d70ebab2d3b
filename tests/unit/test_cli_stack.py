"""`trainserve up / down / restart / status` without starting servers."""
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
    assert result.stdout.count("STOPPED") == 5  # redis, ray, api, dispatcher, console
    doc = json.loads(run("status", "-o", "json").stdout)
    assert doc["state_dir"] == str(tmp_path / "state")
    assert [c["name"] for c in doc["components"]] == ["redis", "ray", "api", "dispatcher",
                                                      "console"]
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


def _capture_up(monkeypatch) -> dict:
    started = {}
    monkeypatch.setattr(LocalStack, "up", lambda self, timeout=None: started.setdefault(
        "config", self.config))
    return started


def test_older_flag_names_are_hidden_aliases(run, monkeypatch):
    started = _capture_up(monkeypatch)
    result = run("up", "--ray-port", 7001, "--num-cpus", 2, "--serve-cpus", 0.5,
                 "--serve-target-ongoing", 4, "--timeout", 30)
    assert result.exit_code == 0, result.output
    c = started["config"]
    assert (c.ray_gcs_port, c.ray_num_cpus, c.serve_num_cpus,
            c.serve_target_ongoing_requests, c.ready_timeout_s) == (7001, 2, 0.5, 4.0, 30.0)
    both = run("up", "--ray-port", 7001, "--ray-gcs-port", 7002)
    assert both.exit_code == 2 and "--ray-port is an older name of --ray-gcs-port" in both.stderr
    shown = run("up", "--help").stdout
    assert "--ray-gcs-port" in shown and "--ray-port " not in shown and "--timeout" not in shown


def _recorded(state, **settings) -> Config:
    config = Config(state_dir=state, **settings)
    stack_file(state).parent.mkdir(parents=True, exist_ok=True)
    stack_file(state).write_text(json.dumps(config.to_dict()))
    return config


def test_up_may_change_how_long_it_waits_on_a_running_stack(run, tmp_path, monkeypatch):
    _recorded(tmp_path / "state")
    monkeypatch.setattr(LocalStack, "is_running", lambda self, name: name == "redis")
    started = _capture_up(monkeypatch)
    assert run("up", "--ready-timeout-s", 5).exit_code == 0
    assert started["config"].ready_timeout_s == 5


def test_down_and_restart_refuse_unknown_and_stopped_components(run, tmp_path):
    for command in ("down", "restart"):
        result = run(command, "redis2")
        assert result.exit_code == 2
        assert "unknown component 'redis2'; known: redis, ray, api, dispatcher, console, " \
            "prometheus" \
            in result.stderr
        result = run(command, "api")
        assert result.exit_code == 1
        assert f"api is not running in {tmp_path / 'state'} (running: nothing)" in result.stderr


def test_down_and_restart_leave_an_external_ray_cluster_alone(run, tmp_path):
    _recorded(tmp_path / "state", ray_external_address="10.0.0.5:6379")
    result = run("down", "ray")
    assert result.exit_code == 1
    assert "uses the Ray cluster at 10.0.0.5:6379; it neither starts nor stops ray" in \
        result.stderr


def test_down_one_component_stops_only_it(run, tmp_path, monkeypatch):
    _recorded(tmp_path / "state")
    running = {"redis", "ray", "api", "dispatcher"}
    monkeypatch.setattr(LocalStack, "is_running", lambda self, name: name in running)
    monkeypatch.setattr(LocalStack, "stop", lambda self, name, grace=None: (
        running.discard(name), True)[1])
    result = run("down", "ray")
    assert result.exit_code == 0 and "stopped ray" in result.stdout
    assert running == {"redis", "api", "dispatcher"}
    assert "note: dispatcher needs ray; `trainserve up` starts ray again" in result.stderr


def test_restart_stops_and_starts_the_one_component(run, tmp_path, monkeypatch):
    _recorded(tmp_path / "state")
    steps = []
    monkeypatch.setattr(LocalStack, "is_running", lambda self, name: name != "prometheus")
    monkeypatch.setattr(LocalStack, "restart", lambda self, name, timeout=None: steps.append(
        name))
    result = run("restart", "redis")
    assert result.exit_code == 0 and steps == ["redis"]
    assert "restarted redis" in result.stdout
    assert "note: api, dispatcher need redis; restart any of them that fails once redis is " \
        "back (`trainserve restart api`)" in result.stderr
