"""A local stack on an external Ray cluster (`Config.ray_external_address`, `trainserve up
--ray-address`), without starting servers."""
from __future__ import annotations

import socket

import pytest

from trainserve.local import Config, recorded_config
from trainserve.local import LocalStack, LocalStackError


def test_the_stack_starts_no_ray_head_and_the_dispatcher_joins_the_cluster(tmp_path):
    token = tmp_path / "token"
    token.write_text("t0k3n")
    stack = LocalStack(Config(state_dir=tmp_path, ray_external_address="127.0.0.2:7000",
                              ray_token_file=str(token)))
    assert stack.components == ("redis", "api", "dispatcher", "console")
    assert stack.config.ray_address == "127.0.0.2:7000"
    cmd, env, _ = stack.launch("dispatcher")
    assert cmd[cmd.index("--ray-address") + 1] == "127.0.0.2:7000"
    assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN_PATH"] == str(token)
    # The one-node switch would keep the driver from the cluster's other nodes.
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in env
    with pytest.raises(LocalStackError, match="does not start ray itself"):
        stack.start("ray")


def test_own_head_is_unchanged(tmp_path):
    stack = LocalStack(Config(state_dir=tmp_path))
    assert stack.components == ("redis", "ray", "api", "dispatcher", "console")
    assert stack.config.ray_address == f"127.0.0.1:{stack.config.ray_gcs_port}"
    assert stack.ray_env()["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"


def test_token_modes_of_an_external_cluster(tmp_path):
    default = LocalStack(Config(state_dir=tmp_path, ray_external_address="10.0.0.10:6379"))
    assert default.ray_env() == {"RAY_AUTH_MODE": "token"}  # Ray's ~/.ray/auth_token
    off = LocalStack(Config(state_dir=tmp_path, ray_external_address="10.0.0.10:6379",
                            ray_token_auth=False))
    assert off.ray_env() == {"RAY_AUTH_MODE": "disabled"}
    missing = LocalStack(Config(state_dir=tmp_path, ray_external_address="10.0.0.10:6379",
                                ray_token_file=str(tmp_path / "nope")))
    with pytest.raises(LocalStackError, match="does not exist"):
        missing.ray_env()


@pytest.mark.parametrize("address", ["10.0.0.10", ":6379", "host:0", "host:x", "host:70000"])
def test_bad_addresses_are_refused(tmp_path, address):
    with pytest.raises(ValueError, match="HOST:PORT"):
        Config(state_dir=tmp_path, ray_external_address=address)


def test_status_reports_whether_the_cluster_answers(tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        stack = LocalStack(Config(state_dir=tmp_path,
                                  ray_external_address=f"127.0.0.1:{port}"))
        ray = {s.name: s for s in stack.status()}["ray"]
        assert (ray.running, ray.ready, ray.pid) == (True, True, None)
        assert ray.address == f"127.0.0.1:{port} (external)"
    ray = {s.name: s for s in stack.status()}["ray"]
    assert (ray.running, ray.ready) == (False, False)


def test_cli_up_refuses_a_bad_ray_address(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from trainserve.cli.main import app
    monkeypatch.setenv("TRAINSERVE_STATE_DIR", str(tmp_path / "state"))
    result = CliRunner().invoke(app, ["up", "--ray-address", "nohost", "--timeout", "1"])
    assert result.exit_code != 0 and "HOST:PORT" in result.output
    assert recorded_config(tmp_path / "state") is None


def test_cli_flags_make_the_config(tmp_path):
    from trainserve.cli.stack import _config
    token = tmp_path / "token"
    config = _config(tmp_path / "state", {"ray_external_address": "127.0.0.2:7000",
                                          "ray_token_file": str(token)})
    assert (config.ray_external_address, config.ray_token_file) == ("127.0.0.2:7000",
                                                                    str(token))
    assert config.external_ray and config.ray_address == "127.0.0.2:7000"
