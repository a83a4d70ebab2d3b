"""The job API's answers as the JSON the console's pages read: plain dicts of names, numbers
and strings, nothing a page must know of protobuf."""
from __future__ import annotations

from typing import Any, Mapping

import yaml
from google.protobuf.json_format import MessageToDict

from trainserve.core.metrics import default_mode, search_metric
from trainserve.core.pb import job_pb2
from trainserve.core.state import JobState

# The metric a jobs list shows, by its name's prefix: final test metrics, then validation.
_PREFERENCE = ("test_", "val_", "")


def state_name(state: int) -> str:
    """"running" for JOB_STATE_RUNNING ("unknown" for a state this console does not know)."""
    try:
        return JobState(state).name.lower()
    except ValueError:
        return "unknown"


def is_terminal(state: int) -> bool:
    try:
        return JobState(state).is_terminal
    except ValueError:
        return False


def main_metric(job: job_pb2.Job) -> dict[str, Any] | None:
    """The one metric the jobs list shows for `job`: a search's ranking metric; else of its
    latest metrics the test ones before validation before training, accuracy-like (higher
    is better) before losses. None before its first epoch."""
    metrics = job.metrics
    if job.spec.HasField("search"):
        name, _ = search_metric(job.spec)
        if name in metrics:
            return {"name": name, "value": metrics[name]}
    for prefix in _PREFERENCE:
        names = sorted(n for n in metrics if n.startswith(prefix))
        for name in sorted(names, key=lambda n: default_mode(n) != "max"):
            return {"name": name, "value": metrics[name]}
    return None


def timestamp(ts) -> str | None:
    """ISO 8601 (UTC) of a protobuf Timestamp, None when unset."""
    if not ts.seconds and not ts.nanos:
        return None
    return ts.ToDatetime().replace(microsecond=0).isoformat() + "Z"


def job_summary(job: job_pb2.Job) -> dict[str, Any]:
    """One row of the jobs list."""
    return {
        "id": job.id, "name": job.spec.name, "state": state_name(job.state),
        "terminal": is_terminal(job.state), "user": job.user, "labels": dict(job.spec.labels),
        "epoch": job.epoch, "total_epochs": job.total_epochs, "metric": main_metric(job),
        "search": job.spec.HasField("search"), "created": timestamp(job.created_at),
        "finished": timestamp(job.finished_at), "message": job.message,
        "queue_reason": job.queue_reason, "cancel_requested": job.cancel_requested,
    }


def job_detail(job: job_pb2.Job) -> dict[str, Any]:
    """Everything the job page shows of `job` but its curves, plots and logs."""
    return {
        **job_summary(job), "metrics": dict(job.metrics), "spec": spec_text(job.spec),
        "started": timestamp(job.started_at), "model_name": job.model_name,
        "model_version": job.model_version, "deployment": job.deployment,
        "attempts": job.attempts, "priority": job.priority, "best_trial": job.best_trial,
        "trials": [trial_json(t) for t in job.trials],
    }


def spec_text(spec) -> str:
    """The spec as YAML, the way a user writes one (proto field names)."""
    doc = MessageToDict(spec, preserving_proto_field_name=True)
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def trial_json(trial: job_pb2.Trial) -> dict[str, Any]:
    return {"id": trial.id, "state": trial.state, "epochs": trial.epochs,
            "metrics": dict(trial.metrics), "config": dict(trial.config)}


def curves_json(data: Mapping[str, Any]) -> dict[str, Any]:
    """`Client.curves`' answer with every point a [epoch, value] pair (JSON has no tuple):
    {"metrics": {name: points}, "trials": {id: {name: points}}, "best_trial", "stride"}."""
    def lists(by_name: Mapping[str, Any]) -> dict[str, list[list[float]]]:
        return {name: [[e, v] for e, v in points] for name, points in by_name.items()}
    return {"metrics": lists(data["metrics"]),
            "trials": {tid: lists(m) for tid, m in data["trials"].items()},
            "best_trial": data["best_trial"], "stride": data["stride"]}


def own_curves(data: Mapping[str, Any]) -> dict[str, list[list[float]]]:
    """A job's curves for a comparison: its own, or for a search its best trial's."""
    curves = curves_json(data)
    if curves["metrics"] or not curves["trials"]:
        return curves["metrics"]
    return curves["trials"].get(curves["best_trial"]) or {}


def event_json(event: job_pb2.JobEvent) -> tuple[str, dict[str, Any]] | None:
    """(kind, data) of a WatchJob event the job page draws; None for one it does not."""
    kind = event.WhichOneof("event")
    if kind == "epoch":
        e = event.epoch
        return "epoch", {"epoch": e.epoch, "total_epochs": e.total_epochs,
                         "metrics": dict(e.metrics)}
    if kind == "state":
        return "state", {"state": state_name(event.state.state),
                         "terminal": is_terminal(event.state.state),
                         "message": event.state.message}
    if kind == "trial":
        return "trial", {"kind": event.trial.kind, **trial_json(event.trial.trial)}
    return None


def log_json(line: job_pb2.JobLogLine) -> dict[str, Any]:
    return {"id": line.id, "time": timestamp(line.time), "rank": line.rank,
            "source": line.source, "level": line.level, "text": line.text}


def _compared_id(j: job_pb2.ComparedJob) -> dict[str, str]:
    """A compared row's id and page: a job's own, or a search's trial ("SEARCH/TRIAL")."""
    trial = getattr(j, "trial_id", "")
    if trial:
        return {"id": f"{j.job_id}/{trial}", "link": f"/searches/{j.job_id}"}
    return {"id": j.job_id, "link": f"/jobs/{j.job_id}"}


def _compared_curves(j: job_pb2.ComparedJob, data: Mapping[str, Any]
                     ) -> dict[str, list[list[float]]]:
    trial = getattr(j, "trial_id", "")
    if trial:
        return curves_json(data)["trials"].get(trial) or {}
    return own_curves(data)


def compare_json(answer: job_pb2.CompareJobsResponse,
                 curves: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """CompareJobs' answer, with each job's curves (`curves`: job id -> `Client.curves`; a
    search's trial row, "SEARCH/TRIAL", draws that trial's curves of its search's)."""
    jobs = [{**_compared_id(j), "name": j.name, "state": state_name(j.state),
             "epochs": j.epochs, "final": dict(j.final_metrics),
             "best": {m: {"value": b.value, "epoch": b.epoch, "mode": b.mode}
                      for m, b in sorted(j.best.items())},
             "curves": _compared_curves(j, curves[j.job_id])} for j in answer.jobs]
    return {"jobs": jobs,
            "differences": [{"path": d.path, "values": list(d.values)}
                            for d in answer.differences]}
