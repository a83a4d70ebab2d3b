"""Models, endpoints, datasets and searches as the JSON the console's pages read: plain dicts
of names, numbers and strings (the job API's messages stay on the server side)."""
from __future__ import annotations

import math

from typing import Any, Iterable

from google.protobuf.json_format import MessageToDict

from trainserve.console.views import job_detail, job_summary, spec_text, timestamp
from trainserve.core.metrics import search_metric
from trainserve.core.pb import dataset_pb2, deployment_pb2, job_pb2, model_pb2


def tensor_json(t: model_pb2.TensorSpec) -> dict[str, Any]:
    return {"name": t.name, "datatype": t.datatype, "shape": list(t.shape),
            "optional": t.optional}


def model_json(m: model_pb2.ModelVersion) -> dict[str, Any]:
    """One model version: its metrics, signature and lineage (job, data, seed, spec)."""
    return {
        "name": m.name, "version": m.version, "user": m.user, "task": m.task,
        "job_id": m.job_id, "trial_id": m.trial_id, "search_config": dict(m.search_config),
        "dataset": m.spec.dataset.name, "dataset_hash": m.dataset_hash, "seed": m.seed,
        "metrics": dict(m.metrics), "class_names": list(m.class_names),
        "inputs": [tensor_json(t) for t in m.inputs],
        "outputs": [tensor_json(t) for t in m.outputs],
        "preprocessing": m.preprocessing.kind or "none", "created": timestamp(m.created_at),
        "spec": spec_text(m.spec), "aliases": sorted(m.aliases), "tags": dict(m.tags),
        "feature_names": list(m.spec.dataset.feature_columns),
        "columns": [{"name": c.name, "kind": c.kind, "categories": list(c.categories),
                     "missing_ok": not math.isnan(c.fill) or c.kind != "numeric"}
                    for c in m.preprocessing.columns],
    }


def deployment_state(state: int) -> str:
    """"ready" for DEPLOYMENT_STATE_READY; "" when unset (no rollout)."""
    if not state:
        return ""
    try:
        return deployment_pb2.DeploymentState.Name(state).removeprefix(
            "DEPLOYMENT_STATE_").lower()
    except ValueError:
        return "unknown"


def traffic_split(d: deployment_pb2.Deployment) -> list[dict[str, Any]]:
    """Who answers the endpoint's requests: its version, and a rollout's canary (its share
    goes to the canary only once that is loaded; until then the version takes it all)."""
    canary_live = d.canary_version and d.canary_state == deployment_pb2.DEPLOYMENT_STATE_READY
    canary_share = d.canary_percent if canary_live else 0
    split = [{"version": d.model_version, "percent": 100 - canary_share, "role": "stable",
              "state": deployment_state(d.state)}]
    if d.canary_version:
        split.append({"version": d.canary_version, "percent": canary_share, "role": "canary",
                      "state": deployment_state(d.canary_state),
                      "target_percent": d.canary_percent})
    return split


def deployment_json(d: deployment_pb2.Deployment) -> dict[str, Any]:
    return {
        "name": d.name, "model_name": d.model_name, "model_version": d.model_version,
        "state": deployment_state(d.state), "message": d.message, "user": d.user,
        "created": timestamp(d.created_at), "updated": timestamp(d.updated_at),
        "rest_url": d.rest_url, "grpc_target": d.grpc_target,
        "canary_version": d.canary_version, "canary_percent": d.canary_percent,
        "canary_state": deployment_state(d.canary_state), "split": traffic_split(d),
        "max_batch_size": d.options.max_batch_size,
    }


def dataset_json(d: dataset_pb2.Dataset) -> dict[str, Any]:
    """A dataset and its description (columns or arrays, rows, the schema found at upload)."""
    return {
        "name": d.name, "format": d.format, "sha256": d.sha256, "size_bytes": d.size_bytes,
        "columns": list(d.columns), "num_rows": d.num_rows, "created": timestamp(d.created_at),
        "description": d.description, "user": d.user,
        "schema": MessageToDict(d.schema, preserving_proto_field_name=True),
    }


def search_json(job: job_pb2.Job) -> dict[str, Any]:
    """A search job with what its page needs besides the trials: the ranking metric and its
    direction, the sampled paths and their distributions, the algorithm and scheduler."""
    metric, mode = search_metric(job.spec)
    search = job.spec.search
    return {**job_detail(job), "metric": metric, "mode": mode,
            "space": dict(sorted(search.space.items())),
            "algorithm": search.algorithm or "random",
            "scheduler": search.scheduler.name or "fifo"}


def searches_of(jobs: Iterable[job_pb2.Job]) -> list[dict[str, Any]]:
    """The search jobs among `jobs`, each as a row of the searches list (its metric: the one
    the search ranks by, as the API last reported it)."""
    rows = []
    for job in jobs:
        if job.spec.HasField("search"):
            metric, mode = search_metric(job.spec)
            rows.append({**job_summary(job), "rank_metric": metric, "mode": mode,
                         "algorithm": job.spec.search.algorithm or "random",
                         "scheduler": job.spec.search.scheduler.name or "fifo"})
    return rows
