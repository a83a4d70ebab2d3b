"""The chart's stack-wide trackers (`dispatcher.tracking`, docs/tracking.md): the dispatcher's
flags, and the MLflow credentials Secret mounted read-only at the one path the dispatcher is
given, in the dispatcher and in every Ray pod (the workers read it), and nowhere in an arg."""
from __future__ import annotations

import json

FILE = "/etc/trainserve/mlflow/credentials"


def pods(docs: list[dict]) -> dict[str, dict]:
    """Pod specs by name: the Deployments' and the RayCluster's head and worker groups."""
    out = {}
    for doc in docs:
        if doc["kind"] == "Deployment":
            out[doc["metadata"]["name"].rsplit("-", 1)[-1]] = doc["spec"]["template"]["spec"]
        elif doc["kind"] == "RayCluster":
            out["ray-head"] = doc["spec"]["headGroupSpec"]["template"]["spec"]
            for group in doc["spec"].get("workerGroupSpecs", []):
                out["ray-" + group["groupName"]] = group["template"]["spec"]
    return out


def test_no_tracking_by_default(render):
    result = render()
    assert result["ok"], result.get("error")
    dispatcher = pods(result["docs"])["dispatcher"]["containers"][0]
    assert not [a for a in dispatcher["args"] if a.startswith("--tracking")]
    assert "mlflow-credentials" not in json.dumps(result["docs"])


def test_the_trackers_and_their_credentials_reach_the_dispatcher_and_the_workers(render):
    result = render(values={"dispatcher": {"tracking": {
        "mlflowUri": "https://mlflow.internal", "tensorboard": True,
        "credentialsSecret": "mlflow-login"}}})
    assert result["ok"], result.get("error")
    specs = pods(result["docs"])
    args = specs["dispatcher"]["containers"][0]["args"]
    assert {"--tracking-mlflow-uri=https://mlflow.internal", "--tracking-tensorboard",
            f"--tracking-credentials-file={FILE}"} <= set(args)
    ray = [name for name in specs if name.startswith("ray-")]
    assert "ray-head" in ray and len(ray) >= 2
    for name in ["dispatcher", *ray]:
        [volume] = [v for v in specs[name]["volumes"] if v["name"] == "mlflow-credentials"]
        assert volume["secret"]["secretName"] == "mlflow-login", name
        mounts = [m for c in specs[name]["containers"] for m in c.get("volumeMounts", [])
                  if m["name"] == "mlflow-credentials"]
        assert mounts and all(m["readOnly"] and FILE.startswith(m["mountPath"] + "/")
                              for m in mounts), name
