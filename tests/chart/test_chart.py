"""The Helm chart, rendered by Helm's own engine (helm-sdkpy) and validated against the
Kubernetes schemas and the CRD schemas of RayCluster, ServiceMonitor and PodMonitor."""
from __future__ import annotations

import json

import pytest

from tests.chart.conftest import CHART

GPU_VALUES = CHART / "values-gpu.yaml"


def by_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def one(docs, kind, suffix):
    [doc] = [d for name, d in by_kind(docs, kind).items() if name.endswith(suffix)]
    return doc


def pod_specs(docs):
    """(name, pod spec) of every pod template the chart renders, Ray's included."""
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            yield d["metadata"]["name"], d["spec"]["template"]["spec"]
        elif d["kind"] == "RayCluster":
            yield "ray-head", d["spec"]["headGroupSpec"]["template"]["spec"]
            for group in d["spec"]["workerGroupSpecs"]:
                yield f"ray-{group['groupName']}", group["template"]["spec"]


@pytest.fixture(scope="module")
def default(render):
    result = render()
    assert result["ok"], result.get("error")
    return result


@pytest.fixture(scope="module")
def gpu(render):
    result = render(values_files=[GPU_VALUES])
    assert result["ok"], result.get("error")
    return result


@pytest.mark.parametrize("case", ["default", "gpu"])
def test_every_manifest_validates(case, request):
    result = request.getfixturevalue(case)
    assert result["errors"] == []
    kinds = {d["kind"] for d in result["docs"]}
    assert {"Deployment", "StatefulSet", "Service", "PodDisruptionBudget", "NetworkPolicy",
            "PersistentVolumeClaim", "Secret", "RayCluster", "ServiceMonitor",
            "PodMonitor"} <= kinds


def test_validation_catches_bad_manifests(render, chart_copy):
    """The checks can fail: an unknown field in a core kind and in each custom resource."""
    (chart_copy / "templates" / "broken.yaml").write_text("""\
apiVersion: v1
kind: Service
metadata: {name: broken}
spec:
  ports: [{port: 80, targtPort: 8080}]
---
apiVersion: ray.io/v1
kind: RayCluster
metadata: {name: broken}
spec:
  enableInTreeAutoscale: true
  headGroupSpec: {template: {spec: {containers: [{name: h, image: x, portz: []}]}}}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: broken}
spec:
  selector: {}
  endpoints: [{port: metrics, interval: 30 seconds}]
""")
    result = render(chart_copy)
    assert result["ok"], result.get("error")
    text = "\n".join(result["errors"])
    assert "Service/broken" in text and "targtPort" in text
    assert "RayCluster/broken" in text and "enableInTreeAutoscale" in text and "portz" in text
    assert "ServiceMonitor/broken" in text and "30 seconds" in text


def test_api_has_health_probes_and_pdb(default, render):
    docs = default["docs"]
    api = one(docs, "Deployment", "-api")
    [container] = api["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):  # TLS on: port probes
        assert container[probe]["tcpSocket"]["port"] == 50051
    plain = render(values={"tls": {"enabled": False}})
    [plain_api] = one(plain["docs"], "Deployment", "-api")["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):  # grpc.health.v1
        assert plain_api[probe]["grpc"]["port"] == 50051
    assert "--listen=0.0.0.0:50051" in container["args"]
    assert container["resources"]["requests"]["cpu"]
    for suffix in ("-api", "-dispatcher"):
        pdb = one(docs, "PodDisruptionBudget", suffix)
        deployment = one(docs, "Deployment", suffix)
        assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_redis_is_durable(default):
    docs = default["docs"]
    conf = one(docs, "ConfigMap", "-redis-config")["data"]["redis.conf"].splitlines()
    assert "appendonly yes" in conf and "appendfsync always" in conf and "dir /data" in conf
    redis = one(docs, "StatefulSet", "-redis")
    [claim] = redis["spec"]["volumeClaimTemplates"]
    mounts = redis["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in mounts
    url = f"redis://{one(docs, 'Service', '-redis')['metadata']['name']}:6379/0"
    for suffix in ("-api", "-dispatcher"):
        args = one(docs, "Deployment", suffix)["spec"]["template"]["spec"]["containers"][0]["args"]
        assert f"--redis-url={url}" in args


def test_raycluster_autoscales_with_the_same_image(default, gpu):
    docs = default["docs"]
    image = one(docs, "Deployment", "-api")["spec"]["template"]["spec"]["containers"][0]["image"]
    [ray] = by_kind(docs, "RayCluster").values()
    assert ray["spec"]["enableInTreeAutoscaling"] is True
    images = {c["image"] for name, spec in pod_specs(docs) if name.startswith("ray")
              for c in spec["containers"]}
    assert images == {image}
    dispatcher = one(docs, "Deployment", "-dispatcher")["spec"]["template"]["spec"]["containers"][0]
    assert f"--ray-address={ray['metadata']['name']}-head-svc:6379" in dispatcher["args"]
    [gray] = by_kind(gpu["docs"], "RayCluster").values()
    groups = {g["groupName"]: g for g in gray["spec"]["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    limits = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert int(limits["nvidia.com/gpu"]) >= 1
    assert "nvidia.com/gpu" not in groups["cpu"]["template"]["spec"]["containers"][0]["resources"].get("limits", {})
    assert groups["gpu"]["maxReplicas"] >= groups["gpu"]["minReplicas"]


def test_every_trainserve_pod_shares_storage_and_ray_auth(default):
    docs = default["docs"]
    [claim] = by_kind(docs, "PersistentVolumeClaim").values()
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    seen = set()
    for name, spec in pod_specs(docs):
        if name.endswith(("-redis", "-console")):  # the console reads through the API only
            continue
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["storage"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        container = spec["containers"][0]
        env = {e["name"]: e for e in container["env"]}
        mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "storage")
        assert env["TRAINSERVE_STORAGE_DIR"]["value"] == f"{mount}/storage"
        if not name.endswith("-api"):  # Ray nodes and the dispatcher (a Ray driver)
            assert env["RAY_AUTH_MODE"]["value"] == "token"
            assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "auth-token"
        seen.add(name)
    assert {"ray-head", "ray-cpu"} <= seen and len(seen) == 4


def test_services_for_api_and_inference(default):
    docs = default["docs"]
    api = one(docs, "Service", "-api")
    assert {p["name"]: p["port"] for p in api["spec"]["ports"]} == {"grpc": 50051}
    metrics = one(docs, "Service", "-api-metrics")
    assert {p["name"]: p["port"] for p in metrics["spec"]["ports"]} == {"metrics": 9100}
    inference = one(docs, "Service", "-inference")
    assert {p["name"]: p["port"] for p in inference["spec"]["ports"]} == {"http": 8000, "grpc": 9000}
    assert inference["spec"]["selector"]["ray.io/node-type"] == "head"
    head = next(spec for name, spec in pod_specs(docs) if name == "ray-head")
    ports = {p["name"] for p in head["containers"][0]["ports"]}
    assert {p["targetPort"] for p in inference["spec"]["ports"]} <= ports


def test_network_policies_keep_gcs_and_dashboard_internal(default):
    docs = default["docs"]
    release = {"app.kubernetes.io/instance": "ts"}
    for name, policy in by_kind(docs, "NetworkPolicy").items():
        for rule in policy["spec"]["ingress"]:
            ports = {p["port"] for p in rule.get("ports", [])}
            internal_only = [{"podSelector": {"matchLabels": release}}]
            if rule.get("from") != internal_only:
                # Anything reachable from outside the release lists its ports, and those are
                # never Redis, Ray's GCS or its dashboard.
                assert ports and not ports & {6379, 8265, 10001}, (name, rule)
    ray = one(docs, "NetworkPolicy", "-ray")
    assert ray["spec"]["podSelector"]["matchLabels"] == {"ray.io/cluster": "ts-trainserve-ray"}


def test_monitors_scrape_api_dispatcher_and_ray(default):
    docs = default["docs"]
    api_monitor = one(docs, "ServiceMonitor", "-api")
    assert [e["port"] for e in api_monitor["spec"]["endpoints"]] == ["metrics"]
    dispatcher = one(docs, "PodMonitor", "-dispatcher")
    assert [e["port"] for e in dispatcher["spec"]["podMetricsEndpoints"]] == ["metrics"]
    container = one(docs, "Deployment", "-dispatcher")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "metrics", "containerPort": 9101} in container["ports"]
    ray = one(docs, "PodMonitor", "-ray")
    head = next(spec for name, spec in pod_specs(docs) if name == "ray-head")
    head_ports = {p["name"]: p["containerPort"] for p in head["containers"][0]["ports"]}
    scraped = [e["port"] for e in ray["spec"]["podMetricsEndpoints"]]
    assert scraped == ["metrics", "as-metrics", "dash-metrics"]
    assert [head_ports[p] for p in scraped] == [8080, 44217, 44227]


def test_dashboards_become_sidecar_configmaps(render, chart_copy):
    result = render(chart_copy)
    assert result["ok"], result.get("error")
    assert not [d for d in result["docs"] if d["metadata"].get("labels", {}).get("grafana_dashboard")]
    (chart_copy / "dashboards").mkdir()
    panels = {"title": "Jobs", "panels": [{"type": "timeseries", "title": "queued"}]}
    (chart_copy / "dashboards" / "jobs.json").write_text(json.dumps(panels))
    (chart_copy / "dashboards" / "Ray_Serve.json").write_text(json.dumps({"title": "Serve"}))
    result = render(chart_copy)
    assert result["ok"], result.get("error")
    assert result["errors"] == []
    maps = [d for d in result["docs"] if d["kind"] == "ConfigMap"
            and d["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert sorted(m["metadata"]["name"] for m in maps) == [
        "ts-trainserve-dashboard-jobs", "ts-trainserve-dashboard-ray-serve"]
    jobs = next(m for m in maps if m["metadata"]["name"].endswith("-jobs"))
    assert json.loads(jobs["data"]["jobs.json"]) == panels


@pytest.mark.parametrize("values, expected", [
    ({"api": {"port": "fifty"}}, "port"),
    ({"api": {"replicas": 0}}, "replicas"),
    ({"redis": {"appendfsync": "sometimes"}}, "appendfsync"),
    ({"ray": {"workerGroups": [{"name": "Bad_Name", "minReplicas": 0, "maxReplicas": 1,
                                "resources": {}}]}}, "name"),
    ({"metrics": {"serviceMonitor": {"interval": "every minute"}}}, "interval"),
    ({"storage": {"type": "nfs"}}, "type"),
    ({"nodes": 3}, "nodes"),
])
def test_schema_refuses_bad_values(render, values, expected):
    result = render(values=values)
    assert not result["ok"], f"{values} rendered"
    assert "schema" in result["error"].lower() and expected in result["error"], result["error"]


def test_s3_storage_is_refused_with_the_way_out(render):
    result = render(values={"storage": {"type": "s3", "s3": {"uri": "s3://bucket/ts"}}})
    assert not result["ok"]
    assert "storage.type=s3" in result["error"] and "existingClaim" in result["error"]


def test_inference_tokens_and_existing_secrets(render):
    result = render(values={"inference": {"auth": {"enabled": True}},
                            "ray": {"auth": {"existingSecret": "my-ray-token"}},
                            "redis": {"auth": {"enabled": True, "existingSecret": "my-redis"}}})
    assert result["ok"], result.get("error")
    assert result["errors"] == []
    docs = result["docs"]
    secrets = by_kind(docs, "Secret")
    assert "ts-trainserve-inference-tokens" in secrets and "ts-trainserve-ray-auth" not in secrets
    dispatcher = one(docs, "Deployment", "-dispatcher")["spec"]["template"]["spec"]
    args = dispatcher["containers"][0]["args"]
    token_file = next(a.split("=", 1)[1] for a in args if a.startswith("--inference-token-file="))
    env = {e["name"]: e for e in dispatcher["containers"][0]["env"]}
    assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "my-ray-token"
    password = env["TRAINSERVE_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert password == {"name": "my-redis", "key": "redis-password"}
    assert "--redis-url=redis://ts-trainserve-redis:6379/0" in args  # no password in args
    for name, spec in pod_specs(docs):
        if name.startswith("ray"):  # the gateway runs in Serve, on the Ray nodes
            mounts = {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
            assert token_file.rsplit("/", 1)[0] in mounts


def test_dispatcher_records_the_public_inference_addresses(default):
    api = one(default["docs"], "Deployment", "-api")["spec"]["template"]["spec"]
    dispatcher = one(default["docs"], "Deployment", "-dispatcher")["spec"]["template"]["spec"]
    api_args = dict(a.split("=", 1) for a in api["containers"][0]["args"] if "=" in a)
    args = dict(a.split("=", 1) for a in dispatcher["containers"][0]["args"] if "=" in a)
    assert args["--serve-http"].startswith("0.0.0.0:")  # where Serve binds, in the head pod
    assert args["--public-http"] == api_args["--serve-http"]  # what deployments record
    assert args["--public-grpc"] == api_args["--serve-grpc"]


def test_api_checks_tokens_by_default_with_the_admin_token_from_a_secret(default):
    api = one(default["docs"], "Deployment", "-api")["spec"]["template"]["spec"]
    args = api["containers"][0]["args"]
    assert "--insecure" not in args  # tokens are the API's default
    token_file = next(a.split("=", 1)[1] for a in args if a.startswith("--admin-token-file="))
    mounts = {m["name"]: m["mountPath"] for m in api["containers"][0]["volumeMounts"]}
    assert token_file.startswith(mounts["admin-token"] + "/")
    secret_name = next(v["secret"]["secretName"] for v in api["volumes"]
                       if v["name"] == "admin-token")
    secret = by_kind(default["docs"], "Secret")[secret_name]
    assert token_file.rsplit("/", 1)[1] in secret["data"]


def test_api_serves_tls_and_mutual_tls(render):
    result = render(values={"tls": {"enabled": True, "existingSecret": "api-cert",
                                    "mutual": True},
                            "console": {"apiClientSecret": "console-client"}})
    assert result["ok"], result.get("error")
    assert result["errors"] == []
    api = one(result["docs"], "Deployment", "-api")["spec"]["template"]["spec"]
    [container] = api["containers"]
    assert {"--tls-cert=/etc/trainserve/tls/tls.crt", "--tls-key=/etc/trainserve/tls/tls.key",
            "--tls-client-ca=/etc/trainserve/tls/ca.crt"} <= set(container["args"])
    assert "--insecure" not in container["args"]
    # Kubernetes' gRPC probes speak no TLS: the port is probed instead.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["tcpSocket"]["port"] == 50051 and "grpc" not in container[probe]
