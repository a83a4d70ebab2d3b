"""Label selectors of ListJobs: "key=value" pairs a job's `spec.labels` must all hold."""
from __future__ import annotations

from typing import Sequence

from trainserve.core.errors import InvalidArgument
from trainserve.core.pb import job_pb2

MAX_SELECTORS = 16


def parse_selector(selectors: Sequence[str]) -> list[tuple[str, str]]:
    """The (key, value) pairs of `selectors` ("course=week3"; the value may be empty, the key
    not; split at the first "="); INVALID_ARGUMENT naming `labels[i]` (or `labels` for more
    than `MAX_SELECTORS`) otherwise."""
    if len(selectors) > MAX_SELECTORS:
        raise InvalidArgument(f"at most {MAX_SELECTORS} selectors, got {len(selectors)}",
                              field="labels")
    pairs = []
    for i, selector in enumerate(selectors):
        key, sep, value = selector.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"{selector!r} is not key=value", field=f"labels[{i}]")
        pairs.append((key, value))
    return pairs


def matches(job: job_pb2.Job, pairs: Sequence[tuple[str, str]]) -> bool:
    """Whether `job`'s spec.labels hold every (key, value) of `pairs`, each matched whole."""
    labels = job.spec.labels
    return all(key in labels and labels[key] == value for key, value in pairs)
