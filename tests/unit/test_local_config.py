"""Config: defaults (the ports of the design), environment overrides, explicit overrides,
the recorded stack, and where clients find the job API."""
from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from trainserve.core.locations import api_address
from trainserve.local import Config, default_state_dir, recorded_config, stack_file
from trainserve.local.components.redis import write_redis_conf


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
    c = Config(state_dir=tmp_path)
    assert c.redis_password == "" and c.redis_url == c.redis_address_url
    conf = write_redis_conf(c)                        # the first start makes the password
    password = c.redis_password
    assert len(password) == 64
    assert oct(c.redis_password_path.stat().st_mode & 0o777) == "0o600"
    assert oct(conf.stat().st_mode & 0o777) == "0o600"  # it holds requirepass
    assert c.redis_url == f"redis://:{password}@127.0.0.1:6380/0"
    assert c.redis_address_url == "redis://127.0.0.1:6380/0"
    text = conf.read_text()
    assert f'requirepass "{password}"' in text
    assert "maxmemory 2gb" in text and "maxmemory-policy noeviction" in text
    write_redis_conf(c)
    assert c.redis_password == password               # kept across starts
    assert password not in json.dumps(c.to_dict())    # not in the recorded stack.json


def test_redis_password_reaches_services_by_environment_only(tmp_path):
    from trainserve.local import LocalStack
    from trainserve.store.redis import REDIS_PASSWORD_ENV
    stack = LocalStack(Config(state_dir=tmp_path, ray_token_auth=False))
    write_redis_conf(stack.config)
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


# -- one name per setting -----------------------------------------------------------------------

def test_every_setting_is_a_flag_of_up_a_variable_and_a_recorded_key(tmp_path):
    """`--<field>` on `trainserve up` (older names hidden), `TRAINSERVE_<FIELD>`, and the key
    of stack.json, for every field of Config."""
    import typer

    from trainserve.cli.main import app
    from trainserve.local.settings import flag
    up = typer.main.get_command(app).commands["up"]
    shown = {o for p in up.params if not p.hidden for o in p.opts + p.secondary_opts}
    hidden = {o for p in up.params if p.hidden for o in p.opts}
    names = [f.name for f in fields(Config)]
    assert {flag(n) for n in names} <= shown
    assert hidden == {a for f in fields(Config) for a in f.metadata["aliases"]}
    assert not hidden & shown
    assert all(f.metadata["doc"] for f in fields(Config))
    assert set(Config(state_dir=tmp_path).to_dict()) == set(names)
    values = {"ray_num_cpus": "3", "serve_num_gpus": "0.5", "ray_token_auth": "off",
              "serve_mode": "default", "ready_timeout_s": "9"}
    c = Config.from_env({f"TRAINSERVE_{k.upper()}": v for k, v in values.items()},
                        state_dir=tmp_path)
    assert (c.ray_num_cpus, c.serve_num_gpus, c.ray_token_auth, c.serve_mode,
            c.ready_timeout_s) == (3, 0.5, False, "default", 9.0)


def test_serve_settings_are_serve_config_fields_of_the_same_name_and_default(tmp_path):
    from trainserve.local.settings import SERVE_HEAD_SETTINGS, serve_settings
    from trainserve.serve.config import ServeConfig
    serve_fields = {f.name: f.default for f in fields(ServeConfig)}
    prefixed = [f for f in fields(Config) if f.name.startswith("serve_")]
    assert {f.name for f in prefixed} == set(serve_settings()) | set(SERVE_HEAD_SETTINGS)
    for f in prefixed:
        if f.name not in SERVE_HEAD_SETTINGS:
            assert serve_fields[f.name[len("serve_"):]] == f.default, f.name
    c = Config(state_dir=tmp_path, serve_replicas=2, serve_max_replicas=4,
               serve_num_gpus=0.25, serve_http_port=8100)
    serve = c.serve_config()
    assert (serve.replicas, serve.max_replicas, serve.num_gpus) == (2, 4, 0.25)
    assert (serve.http_host, serve.http_port, serve.grpc_port) == ("127.0.0.1", 8100, 9000)
    assert serve.redis_url == c.redis_address_url and serve.storage_dir == str(c.storage_path)


def test_a_bad_serve_combination_names_the_settings(tmp_path):
    with pytest.raises(ValueError, match=r"serve_max_replicas \(1\) must be >= "
                                         r"serve_replicas \(2\)"):
        Config(state_dir=tmp_path, serve_replicas=2, serve_max_replicas=1)
    with pytest.raises(ValueError, match="serve_http_port and serve_grpc_port must differ"):
        Config(state_dir=tmp_path, serve_http_port=9000)


def test_the_dispatcher_gets_the_serve_settings_by_their_serve_names(tmp_path):
    from trainserve.local import LocalStack
    from trainserve.serve.config import ServeConfig, parse_option
    c = Config(state_dir=tmp_path, serve_replicas=0, serve_max_replicas=3,
               serve_target_ongoing_requests=8, serve_num_cpus=0.5)
    argv = LocalStack(c).launch("dispatcher").argv
    given = dict(parse_option(a.split("=", 1)[1]) for a in argv
                 if a.startswith("--serve-option="))
    assert given == {k: v for k, v in c.serve_options().items()
                     if k not in ("http_port", "grpc_port")}
    assert argv[argv.index("--serve-http") + 1] == c.serve_http
    assert ServeConfig(**given).host_options()["autoscaling_config"] == {
        "min_replicas": 0, "max_replicas": 3, "target_ongoing_requests": 8.0}
    assert parse_option("host_max_replicas=3") == ("max_replicas", 3)  # an older name


def test_the_older_flag_names_are_documented_with_the_one_name():
    from trainserve.local.settings import flag
    text = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    for f in fields(Config):
        for alias in f.metadata["aliases"]:
            assert f"| `{alias}` | `{flag(f.name)}` |" in text, alias


def test_port_settings_are_every_port_field():
    """A stack moved onto free ports moves every one (a port added later is not missed)."""
    import dataclasses

    from trainserve.local import port_settings
    names = {f.name for f in dataclasses.fields(Config)}
    assert set(port_settings()) == {n for n in names if n.endswith("_port")}
