"""Shell completion of what only the API knows: job ids, model names and endpoint names
(`trainserve --install-completion` installs the completion script for the user's shell).
Completion must never hang or print an error into the shell: each lookup has a short
deadline and answers nothing when the API is not there."""
from __future__ import annotations

from typing import Callable, Iterable

# A person is pressing Tab: give up quickly.
TIMEOUT_S = 2.0
MAX_JOBS = 200


def _names(fetch: Callable[..., Iterable[str]], incomplete: str) -> list[str]:
    from trainserve.client import Client
    try:
        with Client(timeout=TIMEOUT_S, retry_for=0.0) as ts:
            return sorted(n for n in set(fetch(ts)) if n.startswith(incomplete))
    except Exception:  # noqa: BLE001 - no API, no token: nothing to offer
        return []


def job_ids(incomplete: str) -> list[str]:
    """The caller's newest job ids that start with `incomplete`, newest first."""
    def fetch(ts):
        return [job.id for job in ts.list_jobs(page_size=MAX_JOBS).jobs]
    found = _names(fetch, incomplete)
    return sorted(found, reverse=True)


def model_names(incomplete: str) -> list[str]:
    return _names(lambda ts: [mv.name for mv in ts.list_models()], incomplete)


def endpoint_names(incomplete: str) -> list[str]:
    return _names(lambda ts: [dep.name for dep in ts.list_deployments()], incomplete)
