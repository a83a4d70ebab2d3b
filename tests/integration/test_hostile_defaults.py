"""Secure by default, against real servers (real redis-server, real gRPC over sockets, the
real `python -m trainserve.api` process): the job API refuses to run open on a network, a
caller nobody authenticated is nobody, a revoked bootstrap admin token stays revoked, and a
full Redis is a clear RESOURCE_EXHAUSTED, not INTERNAL."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from tests.conftest import free_port
from tests.integration.test_api_auth import Server, _cfg
from trainserve.core import errors
from trainserve.core.pb import auth_pb2, auth_pb2_grpc

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "xor_mlp.yaml"


def _api(redis_url: str, tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "trainserve.api", "--redis-url", redis_url, "--storage-dir",
         str(tmp_path / "storage"), "--metrics-port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "TRAINSERVE_TOKEN": ""})


def _who(address: str, metadata=(), deadline: float = 30.0):
    """WhoAmI without a token, retried while the server starts."""
    end = time.monotonic() + deadline
    with grpc.insecure_channel(address) as ch:
        stub = auth_pb2_grpc.AuthServiceStub(ch)
        while True:
            try:
                return stub.WhoAmI(auth_pb2.WhoAmIRequest(), timeout=5, metadata=metadata)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > end:
                    raise
                time.sleep(0.2)


def test_insecure_api_refuses_a_network_address(redis_server, tmp_path):
    proc = _api(redis_server.url, tmp_path, "--insecure", "--listen", f"0.0.0.0:{free_port()}")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out
    assert "--insecure listens on loopback only" in out and "0.0.0.0" in out


def test_api_config_without_auth_is_loopback_only():
    from trainserve.api.server import ApiConfig
    with pytest.raises(ValueError, match="loopback only"):
        ApiConfig(listen="0.0.0.0:50051", auth=False)
    with pytest.raises(ValueError, match="loopback only"):
        ApiConfig(listen="[::]:50051", auth=False)
    assert ApiConfig(listen="[::1]:50051", auth=False).auth is False
    assert ApiConfig().auth is True  # the default needs tokens


def test_api_requires_tokens_unless_told_insecure(redis_server, redis_client, tmp_path):
    address = f"127.0.0.1:{free_port()}"
    proc = _api(redis_server.url, tmp_path, "--listen", address)  # no flag: auth on
    try:
        with pytest.raises(grpc.RpcError) as err:
            _who(address)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as err:  # asserting a name is not a token
            _who(address, metadata=(("x-trainserve-user", "admin"),))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        proc.terminate()
        proc.wait(15)
    address = f"127.0.0.1:{free_port()}"
    proc = _api(redis_server.url, tmp_path, "--insecure", "--listen", address)
    try:
        me = _who(address, metadata=(("x-trainserve-user", "admin"),))
        assert (me.user, me.role, me.auth_enabled) == ("admin", "user", False)
    finally:
        proc.terminate()
        proc.wait(15)


def test_a_revoked_bootstrap_admin_token_stays_revoked(redis_server, redis_client, tmp_path):
    from trainserve.client import Client
    token_file = tmp_path / "run" / "admin-token"
    cfg = _cfg(redis_server, tmp_path, admin_token_file=str(token_file))
    with Server(cfg) as server:
        admin = token_file.read_text().strip()
        with Client(server.address, token=admin, retry_for=5) as c:
            assert c.whoami().role == "admin"
            token_id = c.call_auth("ListTokens", auth_pb2.ListTokensRequest()).tokens[0].id
            c.call_auth("RevokeToken", auth_pb2.RevokeTokenRequest(id=token_id))
            with pytest.raises(errors.Unauthenticated):
                c.whoami()
    with Server(cfg) as server:  # a restart reads the same file: the token is not let back
        with Client(server.address, token=admin, retry_for=5) as c:
            with pytest.raises(errors.Unauthenticated):
                c.whoami()
    token_file.unlink()  # the documented way out: a new file, a new token
    with Server(cfg) as server:
        with Client(server.address, token=token_file.read_text().strip(), retry_for=5) as c:
            assert c.whoami().role == "admin"


def test_a_full_redis_is_resource_exhausted_with_a_clear_message(redis_server, redis_client,
                                                                 tmp_path):
    from trainserve.client import Client
    token_file = tmp_path / "run" / "admin-token"
    with Server(_cfg(redis_server, tmp_path, admin_token_file=str(token_file))) as server:
        with Client(server.address, token=token_file.read_text().strip(), retry_for=2) as c:
            assert c.whoami().role == "admin"
            redis_client.config_set("maxmemory-policy", "noeviction")
            redis_client.config_set("maxmemory", "1")  # below what it holds: writes refused
            try:
                with pytest.raises(errors.ResourceExhausted, match="maxmemory"):
                    c.submit(str(EXAMPLE))
                assert c.whoami().role == "admin"  # reads still work
            finally:
                redis_client.config_set("maxmemory", "0")
