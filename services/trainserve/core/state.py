"""The job state machine: QUEUED → RUNNING → SUCCEEDED | FAILED | CANCELLED, and QUEUED →
CANCELLED. Every state change in the system is checked against `TRANSITIONS` (the Redis store
runs the check atomically with the write)."""
from __future__ import annotations

import enum

from trainserve.core.pb import job_pb2


class JobState(enum.IntEnum):
    QUEUED = job_pb2.JOB_STATE_QUEUED
    RUNNING = job_pb2.JOB_STATE_RUNNING
    SUCCEEDED = job_pb2.JOB_STATE_SUCCEEDED
    FAILED = job_pb2.JOB_STATE_FAILED
    CANCELLED = job_pb2.JOB_STATE_CANCELLED

    @property
    def is_terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)

    @classmethod
    def parse(cls, text: str) -> "JobState":
        """Accepts `running`, `RUNNING` or `JOB_STATE_RUNNING`."""
        key = text.strip().upper().removeprefix("JOB_STATE_")
        try:
            return cls[key]
        except KeyError:
            known = ", ".join(s.name.lower() for s in cls)
            raise ValueError(f"unknown job state {text!r}; known: {known}") from None


TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED}),
    JobState.RUNNING: frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


def sources_of(target: JobState) -> frozenset[JobState]:
    """The states from which `target` may be entered."""
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)
