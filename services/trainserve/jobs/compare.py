"""Jobs side by side (CompareJobs): each job's final metrics, the best value each per-epoch
metric reached and at which epoch, and the spec fields whose values differ.

Plain functions over protos: which ids a request may name (`check_ids`), the best epochs of a
curve (`best_epochs`, in the direction `core.metrics.default_mode` gives each metric), a spec
as flat proto3-JSON paths (`flat_spec`) and the differences of several (`spec_differences`).
"""
from __future__ import annotations

import json
import math
import re
from typing import Any, Sequence

from google.protobuf import json_format

from trainserve.core.errors import InvalidArgument
from trainserve.core.metrics import default_mode
from trainserve.core.pb import job_pb2, spec_pb2
from trainserve.jobs.curves import EpochPoint, trial_points
from trainserve.tune.space import apply_values

MIN_JOBS, MAX_JOBS = 2, 20
# A search compared alone shows its trials, at most this many (the first, in trial order).
MAX_TRIALS = 100
# A path segment written `.key`; any other map key is written `["key"]` (JSON-quoted).
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
UNSET = ""  # a SpecDifference value where a spec has no such field (never valid JSON)


def check_ids(job_ids: Sequence[str]) -> list[str]:
    """The ids of a CompareJobs request: 2 to 20, none empty, none twice, each a job id or
    "SEARCH_ID/TRIAL_ID"; INVALID_ARGUMENT naming `job_ids` (or the element) otherwise. (One
    search's id alone is a request of its own: `JobsCore.compare`.)"""
    if not MIN_JOBS <= len(job_ids) <= MAX_JOBS:
        raise InvalidArgument(f"give {MIN_JOBS} to {MAX_JOBS} job ids (or one search's id), "
                              f"got {len(job_ids)}", field="job_ids")
    seen: dict[str, int] = {}
    for i, job_id in enumerate(job_ids):
        if not job_id:
            raise InvalidArgument("required", field=f"job_ids[{i}]")
        if job_id in seen:
            raise InvalidArgument(f"{job_id!r} is job_ids[{seen[job_id]}] already",
                                  field=f"job_ids[{i}]")
        seen[job_id] = i
        split_trial_ref(job_id, f"job_ids[{i}]")
    return list(job_ids)


def split_trial_ref(ref: str, field: str) -> tuple[str, str]:
    """"SEARCH_ID/TRIAL_ID" -> (search id, trial id); a plain job id -> (it, "")."""
    job_id, sep, trial_id = ref.partition("/")
    if sep and (not job_id or not trial_id or "/" in trial_id):
        raise InvalidArgument(f"{ref!r}: a trial is named SEARCH_ID/TRIAL_ID", field=field)
    return job_id, trial_id


# -- metrics ----------------------------------------------------------------------------------

def best_epochs(points: Sequence[EpochPoint]) -> dict[str, job_pb2.MetricBest]:
    """metric -> its best finite value over `points` (epoch order), the first epoch it was
    reached at, and the direction it was judged in; a metric never finite is left out."""
    best: dict[str, job_pb2.MetricBest] = {}
    for point in points:
        for name, value in point.metrics.items():
            if not math.isfinite(value):
                continue
            mode = default_mode(name)
            held = best.get(name)
            if held is None or (value > held.value if mode == "max" else value < held.value):
                best[name] = job_pb2.MetricBest(value=value, epoch=point.epoch, mode=mode)
    return dict(sorted(best.items()))


def compared_job(job: job_pb2.Job, points: Sequence[EpochPoint]) -> job_pb2.ComparedJob:
    """One row of a comparison: `job` with its per-epoch `points` (a search: its best
    trial's)."""
    row = job_pb2.ComparedJob(job_id=job.id, name=job.spec.name, state=job.state,
                              final_metrics=job.metrics, epochs=len(points))
    for name, best in best_epochs(points).items():
        row.best[name].CopyFrom(best)
    return row


def compared_trial(job: job_pb2.Job, trial: job_pb2.Trial) -> job_pb2.ComparedJob:
    """One row of a comparison of a search's trials: the trial's own metrics and epochs."""
    points = trial_points(trial)
    row = job_pb2.ComparedJob(job_id=job.id, name=job.spec.name, state=job.state,
                              final_metrics=trial.metrics, epochs=len(points),
                              trial_id=trial.id, trial_state=trial.state)
    for name, best in best_epochs(points).items():
        row.best[name].CopyFrom(best)
    return row


def trial_spec(job: job_pb2.Job, trial: job_pb2.Trial) -> spec_pb2.JobSpec:
    """The spec `trial` ran: the search's base spec with the trial's sampled values."""
    return apply_values(job.spec, {path: json.loads(value)
                                   for path, value in trial.config.items()})


# -- specs ------------------------------------------------------------------------------------

def flat_spec(spec: spec_pb2.JobSpec) -> dict[str, str]:
    """path -> value as JSON text, for every field of `spec`'s proto3 JSON (.proto names;
    fields without presence at their defaults included, so 0 and 0.0 show): nested messages
    and map entries become paths ("model.mlp.dropout", "labels.course"); a list is one value;
    an empty map is no field (a map has no presence), a present message without fields the
    value {} (so `model.perceptron` shows)."""
    doc = json_format.MessageToDict(spec, preserving_proto_field_name=True,
                                    always_print_fields_with_no_presence=True)
    flat: dict[str, str] = {}
    _flatten_message(doc, spec.DESCRIPTOR, "", flat)
    return flat


def _flatten_message(doc: dict, descriptor, path: str, out: dict[str, str]) -> None:
    if not doc:
        out[path] = "{}"
    for key in sorted(doc):
        field = descriptor.fields_by_name[key]
        _flatten_field(doc[key], field, _join(path, key), out)


def _flatten_field(value: Any, field, path: str, out: dict[str, str]) -> None:
    kind = field.message_type
    if kind is not None and kind.GetOptions().map_entry:
        item = kind.fields_by_name["value"]
        for key in sorted(value):
            _flatten_field(value[key], item, _join(path, key), out)
    elif _is_plain_message(field) and not field.is_repeated:
        _flatten_message(value, kind, path, out)
    else:  # a scalar, an enum, a list, a well-known type: one value
        out[path] = json.dumps(value, sort_keys=True)


def _is_plain_message(field) -> bool:
    kind = field.message_type
    return kind is not None and not kind.full_name.startswith("google.protobuf.")


def _join(path: str, key: str) -> str:
    if _PLAIN_KEY.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def spec_differences(specs: Sequence[spec_pb2.JobSpec]) -> list[job_pb2.SpecDifference]:
    """The fields whose values are not the same in all of `specs` (one absent where another
    has it counts), by path; each with one value per spec, `UNSET` where it has none."""
    flats = [flat_spec(s) for s in specs]
    paths = sorted({p for f in flats for p in f})
    out = []
    for path in paths:
        values = [f.get(path, UNSET) for f in flats]
        if len(set(values)) > 1:
            out.append(job_pb2.SpecDifference(path=path, values=values))
    return out


def comparison(jobs: Sequence[job_pb2.Job], points: Sequence[Sequence[EpochPoint]]
               ) -> job_pb2.CompareJobsResponse:
    """The CompareJobs answer for `jobs` (in order) and each one's per-epoch points."""
    return comparison_of([(compared_job(job, pts), job.spec) for job, pts in zip(jobs, points)])


def comparison_of(rows: Sequence[tuple[job_pb2.ComparedJob, spec_pb2.JobSpec]]
                  ) -> job_pb2.CompareJobsResponse:
    """The CompareJobs answer for rows (a job or a trial each) and the specs they ran."""
    return job_pb2.CompareJobsResponse(jobs=[row for row, _ in rows],
                                       differences=spec_differences([spec for _, spec in rows]))
