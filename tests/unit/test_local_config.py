"""Config: defaults (the ports of the design), environment overrides, explicit overrides,
the recorded stack, and where clients find the job API."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainserve.core.locations import api_address
from trainserve.local import Config, default_state_dir, recorded_config, stack_file


def test_defaults_are_the_documented_ports(tmp_path):
    c = Config(state_dir=tmp_path)
    assert c.api_address == "127.0.0.1:50051"
    assert (c.serve_http, c.serve_grpc) == ("127.0.0.1:8000", "127.0.0.1:9000")
    assert (c.api_metrics_port, c.dispatcher_metrics_port) == (9100, 9101)
    assert c.dashboard_url == "http://127.0.0.1:8265"
    assert c.redis_url == "redis://127.0.0.1:6380/0"
    assert c.ray_address == "127.0.0.1:6379"
    assert c.storage_path == tmp_path / "storage"
    assert c.loopback and c.ray_token_auth


def test_state_dir_default(monkeypatch):
    monkeypatch.delenv("TRAINSERVE_STATE_DIR", raising=False)
    assert default_state_dir() == Path.home() / ".trainserve"
    assert default_state_dir({"TRAINSERVE_STATE_DIR": "/srv/ts"}) == Path("/srv/ts")


def test_environment_then_explicit_overrides(tmp_path):
    env = {"TRAINSERVE_STATE_DIR": str(tmp_path), "TRAINSERVE_REDIS_PORT": "7000",
           "TRAINSERVE_API_PORT": "6000", "TRAINSERVE_RAY_NUM_CPUS": "2",
           "TRAINSERVE_READY_TIMEOUT_S": "5.5", "TRAINSERVE_RAY_TOKEN_AUTH": "false"}
    c = Config.from_env(env, api_port=6001, redis_port=None)
    assert c.state_dir == tmp_path
    assert c.redis_port == 7000          # env
    assert c.api_port == 6001            # explicit beats env
    assert c.ray_num_cpus == 2 and c.ready_timeout_s == 5.5 and c.ray_token_auth is False


@pytest.mark.parametrize("var,value", [("TRAINSERVE_REDIS_PORT", "six"),
                                       ("TRAINSERVE_RAY_TOKEN_AUTH", "maybe")])
def test_bad_environment_values_name_the_variable(tmp_path, var, value):
    with pytest.raises(ValueError, match=var):
        Config.from_env({"TRAINSERVE_STATE_DIR": str(tmp_path), var: value})


def test_ray_temp_dir_is_short_and_per_state_dir(tmp_path):
    deep = tmp_path / ("x" * 150)
    a, b = Config(state_dir=deep), Config(state_dir=tmp_path)
    # Ray's socket paths (session_<date>_<pid>/sockets/plasma_store) must stay < 108 bytes.
    assert len(str(a.ray_temp_path)) < 30
    assert a.ray_temp_path != b.ray_temp_path
    assert Config(state_dir=tmp_path, ray_temp_dir="/tmp/r").ray_temp_path == Path("/tmp/r")


def test_round_trip_through_the_recorded_stack(tmp_path):
    c = Config(state_dir=tmp_path, api_port=6123, ray_num_cpus=3)
    assert recorded_config(tmp_path) is None
    stack_file(tmp_path).parent.mkdir(parents=True)
    stack_file(tmp_path).write_text(json.dumps(c.to_dict()))
    assert recorded_config(tmp_path) == c


def test_api_address_resolution(tmp_path):
    env = {"TRAINSERVE_STATE_DIR": str(tmp_path)}
    assert api_address(None, env) == "127.0.0.1:50051"
    stack_file(tmp_path).parent.mkdir(parents=True)
    stack_file(tmp_path).write_text(json.dumps(Config(state_dir=tmp_path,
                                                      api_port=6123).to_dict()))
    assert api_address(None, env) == "127.0.0.1:6123"
    assert api_address(None, {**env, "TRAINSERVE_API": "h:1"}) == "h:1"
    assert api_address("x:2", {**env, "TRAINSERVE_API": "h:1"}) == "x:2"


def test_redis_password_joins_the_url_once_made(tmp_path):
    from trainserve.local import LocalStack
    c = Config(state_dir=tmp_path)
    assert c.redis_password == "" and c.redis_url == c.redis_address_url
    conf = LocalStack(c).write_redis_conf()           # the first start makes the password
    password = c.redis_password
    assert len(password) == 64
    assert oct(c.redis_password_path.stat().st_mode & 0o777) == "0o600"
    assert oct(conf.stat().st_mode & 0o777) == "0o600"  # it holds requirepass
    assert c.redis_url == f"redis://:{password}@127.0.0.1:6380/0"
    assert c.redis_address_url == "redis://127.0.0.1:6380/0"
    text = conf.read_text()
    assert f'requirepass "{password}"' in text
    assert "maxmemory 2gb" in text and "maxmemory-policy noeviction" in text
    LocalStack(c).write_redis_conf()
    assert c.redis_password == password               # kept across starts
    assert password not in json.dumps(c.to_dict())    # not in the recorded stack.json


def test_redis_password_reaches_services_by_environment_only(tmp_path):
    from trainserve.local import LocalStack
    from trainserve.store.redis import REDIS_PASSWORD_ENV
    stack = LocalStack(Config(state_dir=tmp_path, ray_token_auth=False))
    stack.write_redis_conf()
    password = stack.config.redis_password
    for name in ("api", "dispatcher"):
        cmd, env, _ = stack.launch(name)
        assert env[REDIS_PASSWORD_ENV] == password
        assert not any(password in arg for arg in cmd)
    _, ray_env, _ = stack.launch("ray")
    assert REDIS_PASSWORD_ENV not in ray_env


@pytest.mark.parametrize("value,ok", [("2gb", True), ("512mb", True), ("0", True),
                                      ("100000", True), ("2 GB", False), ("lots", False)])
def test_redis_maxmemory_is_checked(tmp_path, value, ok):
    if ok:
        assert Config(state_dir=tmp_path, redis_maxmemory=value).redis_maxmemory == value
    else:
        with pytest.raises(ValueError, match="redis_maxmemory"):
            Config(state_dir=tmp_path, redis_maxmemory=value)


def test_api_without_auth_runs_in_insecure_loopback_mode(tmp_path):
    from trainserve.local import LocalStack
    on = LocalStack(Config(state_dir=tmp_path)).launch("api").argv
    assert "--insecure" not in on and "--admin-token-file" in on
    off = LocalStack(Config(state_dir=tmp_path, api_auth=False)).launch("api").argv
    assert "--insecure" in off and "--admin-token-file" not in off
