"""LocalStack without real servers: redis.conf, port checks, pid files, and stopping a
component's whole process tree (a stand-in process that ignores SIGTERM and forks)."""
from __future__ import annotations

import os
import signal
import socket
import sys
import time

import pytest

from trainserve.local import (COMPONENTS, Config, Launch, LocalStack, LocalStackError, PortInUse,
                              free_port, port_in_use, port_settings, redis_conf)
from trainserve.local.components.redis import write_redis_conf


@pytest.fixture
def config(tmp_path):
    """A config whose every port is free right now."""
    ports = {f: free_port() for f in port_settings()}
    return Config(state_dir=tmp_path / "state", **ports)


def test_redis_conf_is_loopback_and_durable(config):
    conf = redis_conf(config)
    lines = set(conf.splitlines())
    assert {"bind 127.0.0.1", f"port {config.redis_port}", "appendonly yes",
            "appendfsync always", "protected-mode no", "daemonize no", 'save ""'} <= lines
    assert f'dir "{config.redis_dir}"' in lines


def test_redis_conf_quotes_odd_paths(tmp_path):
    conf = redis_conf(Config(state_dir=tmp_path / 'a b"c'))
    assert 'dir "' + str(tmp_path / 'a b\\"c' / "redis") + '"' in conf


def test_write_redis_conf(config):
    path = write_redis_conf(config)
    assert path == config.state_dir / "redis" / "redis.conf"
    assert path.read_text() == redis_conf(config)


def test_port_in_use_detects_a_listener():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
    assert not port_in_use("127.0.0.1", port)


def test_up_refuses_a_taken_port_naming_it_and_the_component(config):
    with socket.socket() as s:
        s.bind(("127.0.0.1", config.ray_dashboard_port))
        s.listen()
        stack = LocalStack(config)
        with pytest.raises(PortInUse) as info:
            stack.check_ports(COMPONENTS, settle=0)
        with pytest.raises(PortInUse):
            stack.up()  # before starting anything
    message = str(info.value)
    assert f"port {config.ray_dashboard_port}" in message
    assert "Ray dashboard" in message and "ray cannot start" in message
    assert "--ray-dashboard-port" in message  # the setting's one name
    assert not any(stack.is_running(n) for n in COMPONENTS)


def test_a_port_configured_twice_is_an_error(config):
    stack = LocalStack(config.replace(api_port=config.redis_port))
    with pytest.raises(LocalStackError, match="configured twice"):
        stack.check_ports(COMPONENTS, settle=0)


def test_zero_disables_a_metrics_port(config):
    ports = [u.port for u in LocalStack(config.replace(api_metrics_port=0)).ports("api")]
    assert ports == [config.api_port]


def test_serve_ports_are_checked_only_while_ray_is_down(config, monkeypatch):
    stack = LocalStack(config)
    assert config.serve_http_port in [u.port for u in stack.ports("dispatcher")]
    monkeypatch.setattr(stack, "is_running", lambda name: name == "ray")
    assert config.serve_http_port not in [u.port for u in stack.ports("dispatcher")]


def test_status_of_a_fresh_state_dir(config):
    statuses = LocalStack(config).status()
    assert [s.name for s in statuses] == list(COMPONENTS)
    assert all(s.state == "stopped" and s.pid is None for s in statuses)


def test_a_stale_pid_file_counts_as_stopped(config):
    stack = LocalStack(config)
    config.run_dir.mkdir(parents=True)
    (config.run_dir / "api.pid").write_text(f"{os.getpid()}\n")  # alive, but not the API
    assert stack.pid("api") is None
    assert stack.stop("api") is False
    assert not (config.run_dir / "api.pid").exists()


def test_ray_env_pins_loopback_and_auth(config):
    env = LocalStack(config).ray_env()
    assert env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    assert env["RAY_AUTH_MODE"] == "token"
    token = config.run_dir / "ray-auth-token"
    assert env["RAY_AUTH_TOKEN_PATH"] == str(token)
    assert len(token.read_text()) == 64 and token.stat().st_mode & 0o777 == 0o600
    assert LocalStack(config).ray_env() == env  # the same token next time
    assert LocalStack(config.replace(ray_token_auth=False)).ray_env()["RAY_AUTH_MODE"] == \
        "disabled"


def test_ray_command(config):
    cmd = LocalStack(config.replace(ray_num_cpus=2)).launch("ray").argv
    assert cmd[1:4] == ["start", "--head", "--block"]
    assert "--node-ip-address=127.0.0.1" in cmd and f"--port={config.ray_gcs_port}" in cmd
    assert f"--temp-dir={config.ray_temp_path}" in cmd and "--num-cpus=2" in cmd
    assert "--min-worker-port=0" in cmd


# -- process handling, with a stand-in component ------------------------------------------

# Ignores SIGTERM, starts two children that ignore it too, then sleeps: `stop` must get all.
STUBBORN = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
children = [subprocess.Popen([sys.executable, "-c", code, "trainserve.api"]) for _ in range(2)]
print("PIDS", *[c.pid for c in children], flush=True)
time.sleep(600)
"""


@pytest.fixture
def stand_in(config, monkeypatch):
    """A LocalStack whose "api" is the STUBBORN script (ready once it printed its children's
    pids)."""
    stack = LocalStack(config)
    monkeypatch.setattr(stack, "launch", lambda name: Launch(
        [sys.executable, "-c", STUBBORN, "trainserve.api"], dict(os.environ), {}))
    monkeypatch.setattr(stack, "is_ready", lambda name: "\nPIDS " in stack.log_since_start(name))
    yield stack
    stack.kill("api")


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in "ZX"


def _children(stack) -> list[int]:
    line = next(l for l in stack.log_path("api").read_text().splitlines()
                if l.startswith("PIDS "))
    return [int(p) for p in line.split()[1:]]


def test_start_records_pid_and_log(stand_in, config):
    assert stand_in.start("api", timeout=20)
    pid = stand_in.pid("api")
    assert pid and (config.run_dir / "api.pid").read_text().strip() == str(pid)
    assert os.getsid(pid) == pid, "each component runs in a session of its own"
    assert stand_in.log_path("api").read_text().startswith("==== trainserve: starting api")
    assert stand_in.start("api") is False, "starting a running component is a no-op"
    assert stand_in.component_status("api").state == "ready"


def test_stop_escalates_to_sigkill_and_gets_the_whole_session(stand_in):
    stand_in.start("api", timeout=20)
    pids = [stand_in.pid("api"), *_children(stand_in)]
    assert sorted(stand_in.session_pids("api")) == sorted(pids)
    started = time.monotonic()
    assert stand_in.stop("api", grace=0.5)
    assert time.monotonic() - started < 10
    assert not any(_alive(p) for p in pids)
    assert stand_in.pid("api") is None and stand_in.stop("api") is False


def test_kill_is_immediate(stand_in):
    stand_in.start("api", timeout=20)
    pids = [stand_in.pid("api"), *_children(stand_in)]
    assert stand_in.kill("api")
    assert not any(_alive(p) for p in pids)


def test_stop_cleans_up_after_a_leader_that_died_alone(stand_in):
    stand_in.start("api", timeout=20)
    leader, children = stand_in.pid("api"), _children(stand_in)
    os.kill(leader, signal.SIGKILL)  # like an OOM kill of `ray start`: its children live on
    deadline = time.monotonic() + 10
    while stand_in.pid("api") is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _alive(children[0]) and _alive(children[1])
    assert stand_in.stop("api") is False  # not running, but
    assert not any(_alive(p) for p in children)  # nothing of it is left


def test_a_component_that_exits_while_starting_reports_its_log(config, monkeypatch):
    stack = LocalStack(config)
    monkeypatch.setattr(stack, "launch", lambda name: Launch(
        [sys.executable, "-c", "print('cannot bind: boom'); raise SystemExit(3)"],
        dict(os.environ), {}))
    with pytest.raises(LocalStackError) as info:
        stack.start("api", timeout=20)
    assert "api exited with exit code 3 while starting" in str(info.value)
    assert "cannot bind: boom" in str(info.value)
    assert stack.pid("api") is None


def test_a_component_that_never_gets_ready_is_stopped(config, monkeypatch):
    stack = LocalStack(config)
    monkeypatch.setattr(stack, "launch", lambda name: Launch(
        [sys.executable, "-c", "import time; print('waiting'); time.sleep(600)",
         "trainserve.api"], dict(os.environ), {}))
    monkeypatch.setattr(stack, "is_ready", lambda name: False)
    with pytest.raises(LocalStackError, match="api was not ready after 1s"):
        stack.start("api", timeout=1)
    assert stack.pid("api") is None


def test_up_rolls_back_what_it_started(config, monkeypatch):
    stack = LocalStack(config)
    started = []

    def fake_start(name, wait=True, timeout=None, check=True):
        if name == "api":
            raise LocalStackError("api broke")
        started.append(name)
    monkeypatch.setattr(stack, "start", fake_start)
    monkeypatch.setattr(stack, "wait_ready", lambda name, timeout=None: None)
    stopped = []
    monkeypatch.setattr(stack, "stop", lambda name, grace=None: stopped.append(name))
    with pytest.raises(LocalStackError, match="api broke"):
        stack.up()
    assert started == ["redis", "ray"] and stopped == ["ray", "redis"]


def test_up_starts_each_component_once_what_it_needs_is_ready(config, monkeypatch):
    stack = LocalStack(config)
    steps = []
    monkeypatch.setattr(stack, "start", lambda name, wait=True, timeout=None, check=True:
                        steps.append(("start", name)))
    monkeypatch.setattr(stack, "wait_ready", lambda name, timeout=None:
                        steps.append(("ready", name)))
    stack.up()
    # The API starts while the Ray head is still coming up; the dispatcher needs Ray, the
    # console the API.
    assert steps == [("start", "redis"), ("start", "ray"), ("ready", "redis"),
                     ("start", "api"), ("ready", "ray"), ("start", "dispatcher"),
                     ("ready", "api"), ("start", "console"), ("ready", "dispatcher"),
                     ("ready", "console")]


def test_ports_the_stack_draws_for_ray_avoid_its_configured_ones(config, monkeypatch):
    """HAProxy's and Ray's metrics ports are drawn when the head starts, when the API (started
    alongside) may not have bound its own ports yet: a draw equal to one of them is redrawn."""
    import itertools

    from trainserve.local import system
    stack = LocalStack(config)
    configured = [u.port for name in ("redis", "api", "dispatcher") for u in stack.ports(name)]
    spare = itertools.count(config.api_port + 1000)
    draws = iter(configured + [next(spare) for _ in range(20)])
    monkeypatch.setattr(system, "free_port", lambda host="127.0.0.1": next(draws))
    assert stack.spare_port() not in configured
    env = stack.launch("ray").env
    drawn = {int(env[k]) for k in ("AUTOSCALER_METRIC_PORT", "DASHBOARD_METRIC_PORT")}
    drawn |= {int(v) for k, v in env.items() if k.startswith("RAY_SERVE_HAPROXY_") and
              k.endswith("_PORT")}
    assert drawn and not drawn & set(configured)
    draws = iter(configured + [next(spare) for _ in range(20)])  # the head's own flags too
    flags = ("--ray-client-server-port=", "--dashboard-agent-listen-port=")
    drawn = {int(a.split("=")[1]) for a in stack.launch("ray").argv if a.startswith(flags)}
    assert len(drawn) == 2 and not drawn & set(configured)


def test_unknown_component(config):
    with pytest.raises(ValueError, match="unknown component 'redis2'"):
        LocalStack(config).start("redis2")


def test_signal_helper_ignores_gone_processes():
    from trainserve.local import signal_quietly
    signal_quietly(2 ** 22 + 12345, signal.SIGTERM)  # no such pid: no exception
