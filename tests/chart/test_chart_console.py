"""The chart's web console: HTTPS with a certificate of its own, a client of the job API that
trusts only the API's certificate and holds no credential, the Host names it answers to, and
the settings it refuses. Rendered by Helm's own engine (tests/chart/helmtool.py)."""
from __future__ import annotations

import base64

import pytest

from tests.chart.test_chart import by_kind, one
from tests.chart.test_chart_security import container, env_of

SVC = "ts-trainserve-console"


@pytest.fixture(scope="module")
def default(render):
    result = render()
    assert result["ok"], result.get("error")
    assert result["errors"] == []
    return result


def pod(docs):
    return one(docs, "Deployment", "-console")["spec"]["template"]["spec"]


def test_the_console_serves_https_as_a_client_of_the_api(default):
    docs = default["docs"]
    c = container(docs, "Deployment", "-console")
    args = c["args"]
    assert args[0] == "console" and "--listen=0.0.0.0:8270" in args
    assert "--api=ts-trainserve-api:50051" in args
    assert {"--tls-cert=/etc/trainserve/console-tls/tls.crt",
            "--tls-key=/etc/trainserve/console-tls/tls.key"} <= set(args)
    assert f"--public-host={SVC}.trainserve.svc" in args
    assert env_of(c)["TRAINSERVE_TLS_CA"]["value"] == "/etc/trainserve/api-ca/ca.crt"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = c[probe]["httpGet"]
        assert get["scheme"] == "HTTPS" and get["path"] == "/healthz"
        assert get["httpHeaders"] == [{"name": "Host", "value": "localhost"}]
    assert one(docs, "Deployment", "-console")["spec"]["replicas"] == 1  # sessions in-process
    service = one(docs, "Service", "-console")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"][0]["port"] == 8270


def test_the_console_holds_no_key_of_the_api_and_no_token(default):
    volumes = {v["name"]: v for v in pod(default["docs"])["volumes"]}
    secrets = {v["secret"]["secretName"]: v["secret"] for v in volumes.values() if "secret" in v}
    assert "ts-trainserve-api-admin" not in secrets
    assert secrets["ts-trainserve-tls"]["items"] == [{"key": "tls.crt", "path": "ca.crt"}]
    assert f"{SVC}-tls" in secrets
    assert pod(default["docs"])["automountServiceAccountToken"] is False


def test_its_generated_certificate_names_its_service_and_is_kept(render, default):
    from cryptography import x509
    secret = by_kind(default["docs"], "Secret")[f"{SVC}-tls"]
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {SVC, f"{SVC}.trainserve.svc", "localhost"} <= set(
        names.get_values_for_type(x509.DNSName))
    upgrade = render(existing=[secret])
    assert by_kind(upgrade["docs"], "Secret")[f"{SVC}-tls"]["data"] == secret["data"]


def test_public_hosts_and_network_peers(render):
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}}}
    result = render(values={"console": {"publicHosts": ["console.example.org"]},
                            "networkPolicy": {"consoleFrom": [peer]}})
    assert result["ok"] and result["errors"] == [], result.get("error") or result["errors"]
    assert "--public-host=console.example.org" in container(
        result["docs"], "Deployment", "-console")["args"]
    policy = by_kind(result["docs"], "NetworkPolicy")[SVC]
    assert policy["spec"]["ingress"] == [{"ports": [{"port": 8270, "protocol": "TCP"}],
                                          "from": [peer]}]
    bad = render(values={"console": {"publicHosts": ["evil.example/<script>"]}})
    assert not bad["ok"] and "schema" in bad["error"].lower()


def test_the_console_reads_serving_metrics_from_a_prometheus(render, default):
    args = container(default["docs"], "Deployment", "-console")["args"]
    assert not [a for a in args if a.startswith("--prometheus")]
    url = "http://prometheus-operated.monitoring:9090"
    result = render(values={"console": {"prometheusUrl": url}})
    assert result["ok"], result.get("error")
    assert f"--prometheus={url}" in container(result["docs"], "Deployment", "-console")["args"]
    bad = render(values={"console": {"prometheusUrl": "file:///etc/passwd"}})
    assert not bad["ok"] and "schema" in bad["error"].lower()


def test_mutual_tls_gives_the_console_its_client_certificate(render):
    refused = render(values={"tls": {"mutual": True, "clientCA": "PEM"}})
    assert not refused["ok"] and "console.apiClientSecret" in refused["error"]
    result = render(values={"tls": {"mutual": True, "clientCA": "PEM"},
                            "console": {"apiClientSecret": "console-client"}})
    assert result["ok"], result.get("error")
    env = env_of(container(result["docs"], "Deployment", "-console"))
    assert env["TRAINSERVE_TLS_CERT"]["value"] == "/etc/trainserve/api-client/tls.crt"


def test_without_api_tls_the_console_still_serves_https_or_is_off(render):
    plain = render(values={"tls": {"enabled": False}})
    assert plain["ok"] and plain["errors"] == [], plain.get("error") or plain["errors"]
    c = container(plain["docs"], "Deployment", "-console")
    assert "--tls-cert=/etc/trainserve/console-tls/tls.crt" in c["args"]
    assert env_of(c)["TRAINSERVE_ALLOW_INSECURE_TOKEN"]["value"] == "1"
    assert "TRAINSERVE_TLS_CA" not in env_of(c)
    off = render(values={"console": {"enabled": False}})
    assert off["ok"], off.get("error")
    assert not [d for d in off["docs"] if d["metadata"]["name"].startswith(SVC)]
