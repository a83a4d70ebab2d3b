"""The chart is secure by default: Redis and inference authentication, TLS on the job API
with a generated certificate kept across upgrades, metrics cluster-internal, keys mounted only
where used, read-only root filesystems, no service-account tokens where nothing needs them,
default per-user quotas. Rendered by Helm's own engine (tests/chart/helmtool.py)."""
from __future__ import annotations

import base64

import pytest

from tests.chart.test_chart import by_kind, one, pod_specs

RELEASE_PODS = [{"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "ts"}}}]


@pytest.fixture(scope="module")
def default(render):
    result = render()
    assert result["ok"], result.get("error")
    assert result["errors"] == []
    return result


def container(docs, kind, suffix):
    return one(docs, kind, suffix)["spec"]["template"]["spec"]["containers"][0]


def env_of(c) -> dict:
    return {e["name"]: e for e in c.get("env", [])}


def test_redis_requires_a_generated_password_given_only_to_its_clients(default):
    docs = default["docs"]
    secret = by_kind(docs, "Secret")["ts-trainserve-redis"]
    assert len(base64.b64decode(secret["data"]["redis-password"])) >= 32
    redis = container(docs, "StatefulSet", "-redis")
    script = redis["command"][-1]
    assert "--requirepass" not in script and "$REDIS_PASSWORD" in script  # never in argv
    assert "--include /run/redis-auth/auth.conf" in script
    auth = {v["name"]: v for v in one(docs, "StatefulSet", "-redis")["spec"]["template"]["spec"]
            ["volumes"]}["auth"]
    assert auth["emptyDir"]["medium"] == "Memory"
    assert env_of(redis)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "redis-password"
    for suffix in ("-api", "-dispatcher"):
        c = container(docs, "Deployment", suffix)
        ref = env_of(c)["TRAINSERVE_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "ts-trainserve-redis", "key": "redis-password"}
        assert not any("REDIS_PASSWORD" in a or "@" in a for a in c["args"])
    for name, spec in pod_specs(docs):
        if name.startswith("ray"):  # workers get the URL with each job, nothing at start
            assert not any("REDIS" in e for e in env_of(spec["containers"][0]))


def test_redis_caps_its_memory_and_evicts_nothing(default):
    conf = one(default["docs"], "ConfigMap", "-redis-config")["data"]["redis.conf"].splitlines()
    assert "maxmemory 768mb" in conf and "maxmemory-policy noeviction" in conf
    limit = container(default["docs"], "StatefulSet", "-redis")["resources"]["limits"]["memory"]
    assert limit == "1Gi"  # the cap stays below the container's limit


def test_inference_auth_is_on(default):
    docs = default["docs"]
    args = container(docs, "Deployment", "-dispatcher")["args"]
    assert any(a.startswith("--inference-token-file=") for a in args)
    assert "ts-trainserve-inference-tokens" in by_kind(docs, "Secret")


def test_api_serves_tls_with_a_generated_certificate(default):
    from cryptography import x509
    docs = default["docs"]
    api = container(docs, "Deployment", "-api")
    assert {"--tls-cert=/etc/trainserve/tls/tls.crt",
            "--tls-key=/etc/trainserve/tls/tls.key"} <= set(api["args"])
    secret = by_kind(docs, "Secret")["ts-trainserve-tls"]
    assert secret["type"] == "kubernetes.io/tls"
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "ts-trainserve-api.trainserve.svc" in names.get_values_for_type(x509.DNSName)
    assert b"PRIVATE KEY" in base64.b64decode(secret["data"]["tls.key"])


def test_generated_secrets_are_kept_across_upgrades(render, default):
    generated = ("ts-trainserve-redis", "ts-trainserve-tls", "ts-trainserve-api-admin",
                 "ts-trainserve-ray-auth")
    first = {n: s for n, s in by_kind(default["docs"], "Secret").items() if n in generated}
    assert set(first) == set(generated)
    fresh = by_kind(render()["docs"], "Secret")  # a new install: new values
    assert fresh["ts-trainserve-redis"]["data"] != first["ts-trainserve-redis"]["data"]
    assert fresh["ts-trainserve-tls"]["data"] != first["ts-trainserve-tls"]["data"]
    upgrade = render(existing=list(first.values()))  # the cluster holds the first ones
    assert upgrade["ok"], upgrade.get("error")
    kept = by_kind(upgrade["docs"], "Secret")
    for name in generated:
        assert kept[name]["data"] == first[name]["data"], name


def test_api_without_tokens_is_refused(render):
    result = render(values={"api": {"auth": {"enabled": False}}})
    assert not result["ok"] and "api.auth.enabled=false" in result["error"]


def test_metrics_are_cluster_internal(render):
    result = render(values={"api": {"service": {"type": "LoadBalancer"}},
                            "inference": {"service": {"type": "LoadBalancer"}}})
    assert result["ok"], result.get("error")
    docs = result["docs"]
    metrics_ports = {9100, 9101, 8080, 44217, 44227}
    for name, svc in by_kind(docs, "Service").items():
        ports = {p["port"] for p in svc["spec"]["ports"]}
        if svc["spec"].get("type") == "LoadBalancer":
            assert not ports & metrics_ports, name
    assert one(docs, "Service", "-api-metrics")["spec"]["type"] == "ClusterIP"
    selector = one(docs, "ServiceMonitor", "-api")["spec"]["selector"]["matchLabels"]
    assert selector.items() <= one(docs, "Service", "-api-metrics")["metadata"]["labels"].items()
    assert not selector.items() <= one(docs, "Service", "-api")["metadata"]["labels"].items()


def test_network_policies_admit_metrics_only_from_the_release_and_metrics_from(render):
    scraper = {"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "monitoring"}}}
    for values, allowed in (({}, RELEASE_PODS), ({"networkPolicy": {"metricsFrom": [scraper]}},
                                                  RELEASE_PODS + [scraper])):
        docs = render(values=values)["docs"]
        seen = set()
        for name, policy in by_kind(docs, "NetworkPolicy").items():
            for rule in policy["spec"]["ingress"]:
                ports = {p["port"] for p in rule.get("ports", [])}
                metrics = ports & {9100, 9101, 8080, 44217, 44227}
                if not rule.get("ports") or metrics:
                    assert rule.get("from"), (name, rule)  # never from anywhere
                    assert all(peer in allowed for peer in rule["from"]), (name, rule)
                    seen |= metrics
        assert {9100, 9101} <= seen


def test_keys_are_mounted_only_where_used(default):
    docs = default["docs"]
    for name, spec in pod_specs(docs):
        secrets = {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v
                   and v["secret"].get("items") != [{"key": "tls.crt", "path": "ca.crt"}]}
        if name.endswith("-api"):
            assert {"ts-trainserve-tls", "ts-trainserve-api-admin"} <= secrets
        else:  # the Ray head serves no job API: no TLS key, no admin token there (the
            # console mounts the API's certificate alone, to trust it)
            assert "ts-trainserve-tls" not in secrets, name
            assert "ts-trainserve-api-admin" not in secrets, name
        envs = env_of(spec["containers"][0])
        if not name.endswith(("-api", "-dispatcher", "-redis")):
            assert "TRAINSERVE_REDIS_PASSWORD" not in envs, name


def test_read_only_root_filesystems_with_writable_scratch(default):
    for name, spec in pod_specs(default["docs"]):
        for c in spec["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, name
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, name
        if name.endswith("-redis"):
            continue  # writes only its /data volume
        mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        for path in ("/tmp", "/home/ray"):
            assert "emptyDir" in volumes[mounts[path]], (name, path)
    [ray] = by_kind(default["docs"], "RayCluster").values()
    autoscaler = ray["spec"]["autoscalerOptions"]["securityContext"]
    assert autoscaler["readOnlyRootFilesystem"] is True


def test_service_account_tokens_only_where_needed(default, render):
    specs = dict(pod_specs(default["docs"]))
    for name, spec in specs.items():
        if name != "ray-head":
            assert spec["automountServiceAccountToken"] is False, name
    assert specs["ray-head"]["automountServiceAccountToken"] is True  # its autoscaler
    fixed = dict(pod_specs(render(values={"ray": {"autoscaler": {"enabled": False}}})["docs"]))
    assert fixed["ray-head"]["automountServiceAccountToken"] is False


def test_default_per_user_quotas(default, render):
    args = container(default["docs"], "Deployment", "-dispatcher")["args"]
    assert "--user-max-jobs=2" in args
    assert "--user-max-cpus=0" in args and "--user-max-gpus=0" in args
    api = container(default["docs"], "Deployment", "-api")["args"]
    assert "--max-user-dataset-bytes=2147483648" in api
    set_all = render(values={"api": {"userQuota": {"maxQueuedJobs": 20, "maxStreams": 4}}})
    api = container(set_all["docs"], "Deployment", "-api")["args"]
    assert {"--user-max-queued=20", "--user-max-streams=4"} <= set(api)


def test_jobs_have_a_wall_clock_maximum_and_finished_streams_expire(default, render):
    dispatcher = container(default["docs"], "Deployment", "-dispatcher")["args"]
    assert {"--max-job-duration-s=86400", "--job-retention-s=604800"} <= set(dispatcher)
    api = container(default["docs"], "Deployment", "-api")["args"]
    assert "--job-retention-s=604800" in api
    lowered = render(values={"dispatcher": {"maxJobDurationS": 3600, "jobRetentionS": 0}})
    dispatcher = container(lowered["docs"], "Deployment", "-dispatcher")["args"]
    assert {"--max-job-duration-s=3600", "--job-retention-s=0"} <= set(dispatcher)
    assert not render(values={"dispatcher": {"maxJobDurationS": 90000}})["ok"]


def test_redis_starts_with_the_password_from_its_script(default, tmp_path):
    """The rendered start script, run with a real redis-server and a password with quotes,
    a backslash and spaces: the server requires exactly that password."""
    import os
    import shutil
    import signal
    import subprocess
    import time

    import redis as redis_py

    from tests.conftest import free_port

    server = shutil.which("redis-server")
    assert server, "redis-server is installed by ./dev.sh"
    port, password = free_port(), 'a"b\\c d$e\'f'
    (tmp_path / "redis.conf").write_text(f'port {port}\nbind 127.0.0.1\nsave ""\n'
                                         f"dir {tmp_path}\n")
    (tmp_path / "auth").mkdir()
    script = container(default["docs"], "StatefulSet", "-redis")["command"][-1] \
        .replace("/run/redis-auth", str(tmp_path / "auth")) \
        .replace("/etc/redis/redis.conf", str(tmp_path / "redis.conf"))
    proc = subprocess.Popen(["sh", "-c", script], env={**os.environ, "REDIS_PASSWORD": password},
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        good = redis_py.Redis(port=port, password=password, socket_connect_timeout=1)
        for _ in range(50):
            try:
                assert good.ping()
                break
            except redis_py.ConnectionError:
                time.sleep(0.1)
        else:
            raise AssertionError("redis-server did not start from the chart's script")
        with pytest.raises(redis_py.AuthenticationError):
            redis_py.Redis(port=port).ping()
        assert password not in open(f"/proc/{proc.pid}/cmdline").read()  # exec'd: redis itself
        assert oct((tmp_path / "auth" / "auth.conf").stat().st_mode & 0o777) == "0o600"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
