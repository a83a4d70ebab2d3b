"""Render the chart with Helm's own engine and validate what it renders; runs in the chart tool
virtualenv (Python >= 3.12, helm-sdkpy, kubernetes-validate, jsonschema, PyYAML).

    helmtool.py CHART [--values FILE]... [--set-json JSON] [--namespace NS] [--existing JSON]

prints one JSON object: {"ok": true, "manifest": "...", "docs": [...], "errors": [...]}
or {"ok": false, "error": "..."} when Helm refuses to render (values.schema.json, `fail`,
`required`, a template error).

helm-sdkpy carries Helm's library but no `helm template`: its `Install` renders the chart and
then sends each object to a Kubernetes API server. So this starts a small in-process API
server that answers discovery (the kinds the chart uses, CRDs included, so that
.Capabilities.APIVersions sees them), says "not found" to every lookup but of the objects
given with --existing (a JSON list: what an upgrade finds in the cluster, e.g. the Secrets
an earlier render generated) and accepts every create (Helm's release record included). The manifest Helm returns
is exactly what `helm template`/`helm install` would apply.

Validation: core kinds against the Kubernetes OpenAPI schemas of kubernetes-validate
(strict: unknown fields are errors); custom resources against the CRD schemas in
schemas/ (see schemas/README.md) with jsonschema, in the same registry, so that their pod
templates are checked against Kubernetes' own PodTemplateSpec.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

KUBE_VERSION = "1.33.0"
HERE = Path(__file__).resolve().parent

# (group, version, kind, plural, namespaced): what the fake API server advertises.
RESOURCES = [
    ("", "v1", "ConfigMap", "configmaps", True),
    ("", "v1", "Secret", "secrets", True),
    ("", "v1", "Service", "services", True),
    ("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True),
    ("", "v1", "ServiceAccount", "serviceaccounts", True),
    ("", "v1", "Namespace", "namespaces", False),
    ("apps", "v1", "Deployment", "deployments", True),
    ("apps", "v1", "StatefulSet", "statefulsets", True),
    ("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", True),
    ("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", True),
    ("ray.io", "v1", "RayCluster", "rayclusters", True),
    ("monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors", True),
    ("monitoring.coreos.com", "v1", "PodMonitor", "podmonitors", True),
]
# Custom resources: (apiVersion, kind) -> schema file under schemas/.
CRD_SCHEMAS = {
    ("ray.io/v1", "RayCluster"): "raycluster-ray-v1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor-monitoring-v1.json",
}


class _FakeApi(BaseHTTPRequestHandler):
    # Path of a namespaced core object (/api/v1/namespaces/NS/secrets/NAME) -> the object.
    existing: dict[str, dict] = {}

    def _json(self, code: int, obj) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server's naming
        path = self.path.split("?")[0].rstrip("/")
        if path == "/version":
            major, minor, _ = KUBE_VERSION.split(".")
            return self._json(200, {"major": major, "minor": minor, "gitVersion": f"v{KUBE_VERSION}"})
        if path == "/api":
            return self._json(200, {"kind": "APIVersions", "versions": ["v1"]})
        if path in self.existing:
            return self._json(200, self.existing[path])
        if path == "/apis":
            groups = sorted({(g, v) for g, v, *_ in RESOURCES if g})
            return self._json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                 "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v}}
                for g, v in groups]})
        for prefix, gv in [("/api/v1", ("", "v1"))] + [
                (f"/apis/{g}/{v}", (g, v)) for g, v, *_ in RESOURCES if g]:
            if path == prefix:
                return self._json(200, {
                    "kind": "APIResourceList", "groupVersion": "/".join(x for x in gv if x),
                    "resources": [{"name": p, "singularName": k.lower(), "namespaced": ns,
                                   "kind": k, "verbs": ["create", "delete", "get", "list",
                                                        "patch", "update", "watch"]}
                                  for g, v, k, p, ns in RESOURCES if (g, v) == gv]})
        return self._json(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                "reason": "NotFound", "code": 404, "message": "not found"})

    def do_POST(self):  # noqa: N802
        # Echo the object back as created, in the encoding it came in (client-go sends
        # built-in types as protobuf, e.g. Helm's release record).
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(201)
        self.send_header("Content-Type", self.headers.get("Content-Type") or "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_PATCH = do_POST

    def log_message(self, *args):
        pass


def render(chart: str, values: dict, namespace: str, existing: list[dict] = ()) -> str:
    """The manifest Helm renders for `values` (lookups finding `existing`); raises
    helm_sdkpy's error when it refuses."""
    import helm_sdkpy

    _FakeApi.existing = {
        f"/api/v1/namespaces/{namespace}/{obj['kind'].lower()}s/{obj['metadata']['name']}":
            _owned(obj, namespace) for obj in existing}

    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    import yaml
    kubeconfig = yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}],
        "users": [{"name": "fake", "user": {"token": "fake"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
    })
    try:
        config = helm_sdkpy.Configuration(namespace=namespace, kubeconfig=kubeconfig)
        release = asyncio.run(helm_sdkpy.Install(config).run(
            "ts", chart, values=values, wait=False, timeout=60))
    finally:
        server.shutdown()
    return release["manifest"]


def _owned(obj: dict, namespace: str) -> dict:
    """`obj` as the release "ts" left it in the cluster: with Helm's ownership metadata (so
    that Install adopts it, as an upgrade would update it)."""
    meta = dict(obj["metadata"], namespace=namespace)
    meta["annotations"] = {**meta.get("annotations", {}), "meta.helm.sh/release-name": "ts",
                           "meta.helm.sh/release-namespace": namespace}
    meta["labels"] = {**meta.get("labels", {}), "app.kubernetes.io/managed-by": "Helm"}
    return {**obj, "apiVersion": "v1", "metadata": meta}


def validate(docs: list[dict]) -> list[str]:
    """Every schema error of every rendered object, as 'Kind/name: path: message' lines."""
    import jsonschema
    from kubernetes_validate import utils
    from referencing import Registry, Resource

    strict_dir = f"kubernetes-json-schema/v{KUBE_VERSION}-local-strict"
    defs = Resource.from_contents(utils.schema_contents(f"{strict_dir}/_definitions.json",
                                                       KUBE_VERSION))
    errors = []
    for doc in docs:
        where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        crd = CRD_SCHEMAS.get((doc.get("apiVersion"), doc.get("kind")))
        if crd:
            schema = json.loads((HERE / "schemas" / crd).read_text())
        else:
            # kubernetes-validate's own file naming: apps/v1 -> apps-v1, networking.k8s.io/v1
            # -> networking-v1, v1 -> v1.
            api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", str(doc.get("apiVersion")))
            try:
                schema = utils.schema_contents(
                    f"{strict_dir}/{str(doc.get('kind')).lower()}-{api}.json", KUBE_VERSION)
            except FileNotFoundError:
                errors.append(f"{where}: no Kubernetes schema for {doc.get('apiVersion')}")
                continue
        validator = jsonschema.Draft202012Validator(schema, registry=defs @ Registry())
        errors += [f"{where}: {'/'.join(map(str, e.absolute_path))}: {e.message}"
                   for e in validator.iter_errors(doc)]
    return errors


def main() -> None:
    import yaml

    p = argparse.ArgumentParser()
    p.add_argument("chart")
    p.add_argument("--values", action="append", default=[], help="a values file (repeatable)")
    p.add_argument("--set-json", default="{}", help="values merged over the files")
    p.add_argument("--namespace", default="trainserve")
    p.add_argument("--existing", default="[]", help="core objects lookups find (JSON list)")
    args = p.parse_args()
    values: dict = {}
    for path in args.values:
        values = _merge(values, yaml.safe_load(Path(path).read_text()) or {})
    values = _merge(values, json.loads(args.set_json))
    try:
        manifest = render(args.chart, values, args.namespace, json.loads(args.existing))
    except Exception as exc:  # noqa: BLE001 - Helm's refusal is the answer here
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}))
        return
    docs = [d for d in yaml.safe_load_all(manifest) if d]
    print(json.dumps({"ok": True, "manifest": manifest, "docs": docs, "errors": validate(docs)}))


def _merge(base: dict, over: dict) -> dict:
    """Helm's coalescing of values files: maps merge, everything else is replaced."""
    out = dict(base)
    for key, value in over.items():
        out[key] = (_merge(out[key], value) if isinstance(value, dict)
                    and isinstance(out.get(key), dict) else value)
    return out


if __name__ == "__main__":
    sys.exit(main())
