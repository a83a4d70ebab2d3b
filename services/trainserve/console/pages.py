"""The console's pages: the jobs list, a job, a comparison; and what a page does besides
reading: cancelling or deleting a job (a POST with the session's CSRF token) and fetching one
of a job's plots. The pages are shells: their tables and charts come from `data`'s JSON."""
from __future__ import annotations

import mimetypes
import tempfile
import time
from typing import Any, Callable, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from trainserve.console.context import console_of
from trainserve.console.views import job_summary
from trainserve.core import errors
from trainserve.core.state import JobState

STATES = [state.name.lower() for state in JobState]
# Served inline (an <img> of the page); anything else downloads.
INLINE_TYPES = ("image/png",)
RENDER_WAIT_S = 60.0
T = TypeVar("T")


async def home(request: Request) -> Response:
    return RedirectResponse("/jobs", status_code=303)


async def jobs_page(request: Request) -> Response:
    console = console_of(request)
    session = console.signed_in(request)
    return console.page(request, "jobs.html", session, states=STATES,
                        state=request.query_params.get("state", ""),
                        label=request.query_params.get("label", ""))


async def job_page(request: Request) -> Response:
    console = console_of(request)
    session = console.signed_in(request)
    job = await console.call(session, "get_job", request.path_params["job_id"])
    return console.page(request, "job.html", session, job=job_summary(job))


async def compare_page(request: Request) -> Response:
    console = console_of(request)
    session = console.signed_in(request)
    return console.page(request, "compare.html", session, ids=compared_ids(request))


async def cancel(request: Request) -> Response:
    console = console_of(request)
    session = console.signed_in(request)
    await console.check_form(request, session)
    job_id = request.path_params["job_id"]
    await console.call(session, "cancel", job_id)
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


async def delete(request: Request) -> Response:
    """Delete a finished job (the API refuses a queued or running one, and one whose
    registered model version is still there: FAILED_PRECONDITION, its message shown)."""
    console = console_of(request)
    session = console.signed_in(request)
    await console.check_form(request, session)
    await console.call(session, "delete_job", request.path_params["job_id"])
    return RedirectResponse("/jobs", status_code=303)


async def artifact(request: Request) -> Response:
    """One of the job's files (`GetArtifact` through the SDK; the API refuses a name it
    does not list)."""
    console = console_of(request)
    session = console.signed_in(request)
    job_id, name = request.path_params["job_id"], request.path_params["name"]
    client = console.sessions.client(session, console.client_factory)
    body = await run_in_threadpool(when_not_busy, _download, client, job_id, name)
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    disposition = "inline" if kind in INLINE_TYPES else "attachment"
    return Response(body, media_type=kind, headers={
        "Content-Disposition": f'{disposition}; filename="{name}"'})


def _download(client, job_id: str, name: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="ts-console-") as folder:
        return client.download_artifact(job_id, name, folder).read_bytes()


def when_not_busy(call: Callable[..., T], *args: Any) -> T:
    """`call(*args)`, asked again while the API answers RESOURCE_EXHAUSTED, for up to
    RENDER_WAIT_S: it renders at most 2 plots of one user at a time, and a job page asks
    for all of its plots at once."""
    deadline, delay = time.monotonic() + RENDER_WAIT_S, 0.25
    while True:
        try:
            return call(*args)
        except errors.ResourceExhausted:
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(2 * delay, 2.0)


def compared_ids(request: Request) -> list[str]:
    """The job ids of `?ids=a,b&ids=c`, in order, each once."""
    ids: list[str] = []
    for value in request.query_params.getlist("ids"):
        ids += [i for i in (part.strip() for part in value.split(",")) if i and i not in ids]
    return ids


ROUTES = [
    Route("/", home),
    Route("/jobs", jobs_page),
    Route("/jobs/{job_id}", job_page),
    Route("/jobs/{job_id}/cancel", cancel, methods=["POST"]),
    Route("/jobs/{job_id}/delete", delete, methods=["POST"]),
    Route("/jobs/{job_id}/artifacts/{name}", artifact),
    Route("/compare", compare_page),
]
