"""What the SDK's calls take and answer besides the generated messages: a job spec from a
dict or a file, job states by name, and which states end a job or a deployment's wait."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from trainserve.core import errors
from trainserve.core.pb import deployment_pb2, job_pb2, spec_pb2
from trainserve.core.state import JobState

SpecLike = spec_pb2.JobSpec | Mapping[str, Any] | str | Path
TERMINAL_STATES = frozenset(int(state) for state in JobState if state.is_terminal)
DEPLOYMENT_DONE = frozenset({deployment_pb2.DEPLOYMENT_STATE_READY,
                             deployment_pb2.DEPLOYMENT_STATE_FAILED})


def load_spec(spec: SpecLike) -> spec_pb2.JobSpec:
    """A JobSpec from a JobSpec, a dict (proto3 JSON field names), or a YAML/JSON file path."""
    from trainserve.core.spec import load_spec_file, parse_spec
    if isinstance(spec, spec_pb2.JobSpec):
        return spec
    if isinstance(spec, Mapping):
        return parse_spec(dict(spec), "spec")
    if isinstance(spec, (str, Path)):
        return load_spec_file(spec)
    raise TypeError(f"expected a JobSpec, a dict or a path, got {type(spec).__name__}")


def job_state(state: str | int | None) -> int:
    """JobState number of "running" / "RUNNING" / "JOB_STATE_RUNNING" / 2; None -> 0 (all)."""
    if state is None or state == "":
        return job_pb2.JOB_STATE_UNSPECIFIED
    if isinstance(state, int):
        return state
    try:
        return int(JobState.parse(state))
    except ValueError as exc:
        raise errors.InvalidArgument(str(exc), field="state") from None


def job_state_name(state: int) -> str:
    """"running" for JOB_STATE_RUNNING."""
    return job_pb2.JobState.Name(state).removeprefix("JOB_STATE_").lower()
