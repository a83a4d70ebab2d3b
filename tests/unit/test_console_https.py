"""The console in a cluster: HTTPS on every address, the Host names it answers to, the
`Secure` session cookie and HSTS — a real console process reached over TLS."""
from __future__ import annotations

import datetime
import ipaddress
import ssl
import subprocess
import sys
import time

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from trainserve.console.__main__ import parse_args
from trainserve.core.ports import free_port


def test_another_address_than_loopback_needs_a_certificate(tmp_path):
    api = ["--api", "10.0.0.1:50051"]
    with pytest.raises(SystemExit):
        parse_args(["--listen", "0.0.0.0:8270", *api])
    with pytest.raises(SystemExit):  # a certificate without its key
        parse_args(["--listen", "0.0.0.0:8270", "--tls-cert", str(tmp_path / "c"), *api])
    settings = parse_args(["--listen", "0.0.0.0:8270", "--tls-cert", str(tmp_path / "c"),
                           "--tls-key", str(tmp_path / "k"), "--public-host", "ts.example",
                           *api])
    assert settings.https and "ts.example" in settings.allowed_hosts
    assert "evil.example" not in settings.allowed_hosts


def self_signed(folder) -> tuple:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "trainserve-console")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.DNSName("ts.example"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "tls.crt", folder / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def https_console(tmp_path):
    cert, key = self_signed(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainserve.console", "--listen", f"0.0.0.0:{port}",
         "--api", "127.0.0.1:1", "--tls-cert", str(cert), "--tls-key", str(key),
         "--public-host", "ts.example"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    client = httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=ssl.create_default_context(cafile=str(cert)),
                          timeout=5)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.get("/healthz", headers={"host": "localhost"})
            break
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"the console did not start: {proc.stderr.read().decode()}")
            time.sleep(0.2)
    yield client, port
    client.close()
    proc.terminate()
    proc.wait(timeout=10)


def test_the_console_serves_https_with_a_secure_cookie_and_hsts(https_console):
    client, port = https_console
    page = client.get("/signin", headers={"host": f"ts.example:{port}"})
    assert page.status_code == 200
    assert page.headers["strict-transport-security"].startswith("max-age=")
    cookie = page.headers["set-cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert client.get("/healthz", headers={"host": "evil.example"}).status_code == 400
    with pytest.raises(httpx.TransportError):  # no plain HTTP on the same port
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
