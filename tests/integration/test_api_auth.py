"""Authentication of the job API on a real server (real gRPC over sockets, real Redis):
bearer tokens on every RPC but health checks, roles, the admin token file, TLS and mutual TLS.
Tenancy (who sees which jobs, models, datasets and deployments) is tested in
test_api_tenancy.py."""
from __future__ import annotations

import asyncio
import datetime
import os
import stat
import threading
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from trainserve.core.pb import auth_pb2, auth_pb2_grpc, job_pb2, job_pb2_grpc
from trainserve.store import keys

pytestmark = pytest.mark.integration


class Server:
    """`create_server` running in a thread of its own, on a free loopback port."""

    def __init__(self, cfg):
        self.cfg = cfg
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _create(self):
        from trainserve.api.server import create_server
        self.server, self.port, self.health = create_server(self.cfg)
        self.address = f"127.0.0.1:{self.port}"

    def __enter__(self):
        self._thread.start()
        self._run(self._create())
        self._run(self.server.start())
        self._run(self.health.set("", health_pb2.HealthCheckResponse.SERVING))
        return self

    def __exit__(self, *exc):
        self._run(self.server.stop(0))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)


def _cfg(redis_server, tmp_path, **kw):
    from trainserve.api.server import ApiConfig
    return ApiConfig(listen="127.0.0.1:0", redis_url=redis_server.url,
                     storage_dir=str(tmp_path / "storage"), **kw)


@pytest.fixture
def auth_server(redis_server, redis_client, tmp_path):
    token_file = tmp_path / "run" / "admin-token"
    with Server(_cfg(redis_server, tmp_path, auth=True,
                     admin_token_file=str(token_file))) as server:
        server.admin_token = token_file.read_text().strip()
        server.token_file = token_file
        yield server


def _channel(address: str, token: str | None):
    from trainserve.client import api_channel
    return api_channel(address, token or "")


def test_every_rpc_but_health_needs_a_token(auth_server):
    with _channel(auth_server.address, None) as ch:
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(),
                                                      timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        for call, request in ((job_pb2_grpc.JobServiceStub(ch).ListJobs,
                               job_pb2.ListJobsRequest()),
                              (auth_pb2_grpc.AuthServiceStub(ch).WhoAmI,
                               auth_pb2.WhoAmIRequest())):
            with pytest.raises(grpc.RpcError) as err:
                call(request, timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "bearer token" in err.value.details()
    with _channel(auth_server.address, "tsk_wrong") as ch:
        with pytest.raises(grpc.RpcError) as err:
            job_pb2_grpc.JobServiceStub(ch).ListJobs(job_pb2.ListJobsRequest(), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_admin_token_file_is_private_and_works(auth_server):
    assert stat.S_IMODE(os.stat(auth_server.token_file).st_mode) == 0o600
    with _channel(auth_server.address, auth_server.admin_token) as ch:
        me = auth_pb2_grpc.AuthServiceStub(ch).WhoAmI(auth_pb2.WhoAmIRequest(), timeout=10)
    assert (me.user, me.role, me.auth_enabled) == ("admin", "admin", True)


def test_tokens_are_stored_hashed_and_managed_by_admins_only(auth_server, redis_client):
    with _channel(auth_server.address, auth_server.admin_token) as ch:
        admin = auth_pb2_grpc.AuthServiceStub(ch)
        made = admin.CreateToken(auth_pb2.CreateTokenRequest(user="alice", label="laptop"),
                                 timeout=10)
        with pytest.raises(grpc.RpcError) as err:
            admin.CreateToken(auth_pb2.CreateTokenRequest(user="Bad User"), timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details().startswith("user:")
        listed = admin.ListTokens(auth_pb2.ListTokensRequest(), timeout=10).tokens
    assert made.info.role == "user" and made.info.id in {t.id for t in listed}
    stored = b"".join(k + v for k, v in redis_client.hgetall(keys.TOKENS).items())
    assert made.token.encode() not in stored and auth_server.admin_token.encode() not in stored

    with _channel(auth_server.address, made.token) as ch:
        alice = auth_pb2_grpc.AuthServiceStub(ch)
        assert alice.WhoAmI(auth_pb2.WhoAmIRequest(), timeout=10).user == "alice"
        with pytest.raises(grpc.RpcError) as err:
            alice.ListTokens(auth_pb2.ListTokensRequest(), timeout=10)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED

    with _channel(auth_server.address, auth_server.admin_token) as ch:
        auth_pb2_grpc.AuthServiceStub(ch).RevokeToken(
            auth_pb2.RevokeTokenRequest(id=made.info.id[:8]), timeout=10)
    with _channel(auth_server.address, made.token) as ch, pytest.raises(grpc.RpcError) as err:
        auth_pb2_grpc.AuthServiceStub(ch).WhoAmI(auth_pb2.WhoAmIRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_cli_whoami_and_api_tokens(auth_server):
    from typer.testing import CliRunner

    from trainserve.cli.main import app

    def cli(*args, token=auth_server.admin_token):
        return CliRunner().invoke(app, ["--api", auth_server.address, "--token", token, *args],
                                  env={"TRAINSERVE_TOKEN": ""})
    assert cli("whoami").output.strip() == "admin (admin)"
    made = cli("api-token", "create", "bob", "--label", "course")
    assert made.exit_code == 0, made.output
    bob = made.stdout.strip().splitlines()[-1]
    assert cli("whoami", token=bob).output.strip() == "bob (user)"
    refused = cli("api-token", "list", token=bob)
    assert refused.exit_code == 1 and "admin" in refused.output
    listed = cli("api-token", "list")
    assert "bob" in listed.output and "course" in listed.output
    token_id = next(line.split()[0] for line in listed.output.splitlines() if " bob " in line)
    assert cli("api-token", "revoke", token_id).exit_code == 0
    gone = cli("whoami", token=bob)
    assert gone.exit_code == 1 and "TRAINSERVE_TOKEN" in gone.output


def test_without_auth_callers_are_plain_users(redis_server, redis_client, tmp_path):
    """Auth off (loopback development mode): the asserted name is a user, never an admin,
    unless the server lists it in `insecure_admins`."""
    with Server(_cfg(redis_server, tmp_path, auth=False,
                     insecure_admins=("teacher",))) as server:
        with _channel(server.address, None) as ch:
            stub = auth_pb2_grpc.AuthServiceStub(ch)
            me = stub.WhoAmI(auth_pb2.WhoAmIRequest(), timeout=10)
            eve = stub.WhoAmI(auth_pb2.WhoAmIRequest(), timeout=10,
                              metadata=(("x-trainserve-user", "eve"),))
            teacher = stub.WhoAmI(auth_pb2.WhoAmIRequest(), timeout=10,
                                  metadata=(("x-trainserve-user", "teacher"),))
            with pytest.raises(grpc.RpcError) as err:  # token management needs an admin
                stub.ListTokens(auth_pb2.ListTokensRequest(), timeout=10,
                                metadata=(("x-trainserve-user", "admin"),))
    assert (me.user, me.role, me.auth_enabled) == ("anonymous", "user", False)
    assert (eve.user, eve.role) == ("eve", "user")
    assert (teacher.user, teacher.role) == ("teacher", "admin")
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


# ------------------------------------------------------------------------------ TLS

def _pki(tmp: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(cn, key, issuer_name, issuer_key, ca=False, san=None):
        b = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(issuer_name)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    out = {}

    def write(label, key, crt):
        out[f"{label}_key"] = tmp / f"{label}.key"
        out[f"{label}_key"].write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        out[f"{label}_crt"] = tmp / f"{label}.crt"
        out[f"{label}_crt"].write_bytes(crt.public_bytes(serialization.Encoding.PEM))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("trainserve test CA", ca_key, name("trainserve test CA"), ca_key, ca=True)
    write("ca", ca_key, ca)
    server_key = ec.generate_private_key(ec.SECP256R1())
    write("server", server_key, cert("localhost", server_key, ca.subject, ca_key, san=[
        x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]))
    client_key = ec.generate_private_key(ec.SECP256R1())
    write("client", client_key, cert("alice", client_key, ca.subject, ca_key))
    return out


def _who(address: str, tls, token: str):
    from trainserve.client import api_channel
    with api_channel(address, token, tls) as ch:
        return auth_pb2_grpc.AuthServiceStub(ch).WhoAmI(auth_pb2.WhoAmIRequest(), timeout=10)


def test_tls_and_mutual_tls(redis_server, redis_client, tmp_path):
    from trainserve.client import TlsFiles
    pki = _pki(tmp_path)
    tls = dict(tls_cert=str(pki["server_crt"]), tls_key=str(pki["server_key"]))
    trust = TlsFiles(ca=str(pki["ca_crt"]))
    with Server(_cfg(redis_server, tmp_path, auth=False, **tls)) as server:
        assert _who(server.address, trust, "").role == "user"
        with grpc.insecure_channel(server.address) as ch, pytest.raises(grpc.RpcError):
            auth_pb2_grpc.AuthServiceStub(ch).WhoAmI(auth_pb2.WhoAmIRequest(), timeout=5)
    with Server(_cfg(redis_server, tmp_path, auth=False, tls_client_ca=str(pki["ca_crt"]),
                     **tls)) as server:
        with pytest.raises(grpc.RpcError):  # no client certificate
            _who(server.address, trust, "")
        mutual = TlsFiles(ca=str(pki["ca_crt"]), cert=str(pki["client_crt"]),
                          key=str(pki["client_key"]))
        assert _who(server.address, mutual, "").auth_enabled is False


def test_api_config_refuses_half_a_tls_setup(tmp_path):
    from trainserve.api.server import ApiConfig
    with pytest.raises(ValueError, match="go together"):
        ApiConfig(tls_cert=str(tmp_path / "c.pem"))
    with pytest.raises(ValueError, match="mutual TLS"):
        ApiConfig(tls_client_ca=str(tmp_path / "ca.pem"))
