"""The JSON (and the event stream) the console's pages read, each answer from the job API
through the SDK as the signed-in user."""
from __future__ import annotations

from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from trainserve.console.context import console_of
from trainserve.console.live import job_stream
from trainserve.console.pages import compared_ids, when_not_busy
from trainserve.console.views import compare_json, curves_json, job_detail, job_summary
from trainserve.core import errors


async def jobs(request: Request) -> Response:
    """The newest jobs (at most `jobs_shown`), filtered by `?state=` and `?label=k=v` (one
    or several, comma-separated or repeated: all must hold)."""
    console = console_of(request)
    session = console.signed_in(request)
    labels = [part.strip() for value in request.query_params.getlist("label")
              for part in value.split(",") if part.strip()]
    page = await console.call(session, "list_jobs", request.query_params.get("state") or None,
                              page_size=console.settings.jobs_shown, labels=labels)
    return JSONResponse({"jobs": [job_summary(job) for job in page.jobs],
                         "more": bool(page.next_page_token), "user": session.user,
                         "role": session.role})


async def job(request: Request) -> Response:
    console = console_of(request)
    session = console.signed_in(request)
    answer = await console.call(session, "get_job", request.path_params["job_id"])
    return JSONResponse(job_detail(answer))


async def curves(request: Request) -> Response:
    console = console_of(request)
    session = console.signed_in(request)
    answer = await console.call(session, "curves", request.path_params["job_id"])
    return JSONResponse(curves_json(answer))


async def artifacts(request: Request) -> Response:
    console = console_of(request)
    session = console.signed_in(request)
    job_id = request.path_params["job_id"]
    client = console.sessions.client(session, console.client_factory)
    listed = await run_in_threadpool(when_not_busy, client.list_artifacts, job_id)
    return JSONResponse({"artifacts": [
        {"name": a.name, "content_type": a.content_type, "size_bytes": a.size_bytes,
         "url": f"/jobs/{quote(job_id)}/artifacts/{quote(a.name)}"} for a in listed]})


async def live(request: Request) -> Response:
    """Server-Sent Events of the job: `epoch`, `state`, `trial`, `log`, `problem` (an error
    of the API), then `end`. `?since_epoch=N` leaves out the epochs the page has;
    `?after_log=ID` the log lines it has."""
    console = console_of(request)
    session = console.signed_in(request)
    job_id = request.path_params["job_id"]
    await console.call(session, "get_job", job_id)  # NOT_FOUND before the stream starts
    try:
        since = int(request.query_params.get("since_epoch") or 0)
    except ValueError:
        raise errors.InvalidArgument("since_epoch must be an integer") from None
    client = console.client_factory(session.token or "")  # its own: closed with the stream
    return job_stream(request, client, job_id, since, request.query_params.get("after_log", ""))


async def compare(request: Request) -> Response:
    """CompareJobs of `?ids=` (2 to 20 jobs, or trials as SEARCH/TRIAL) and their curves."""
    console = console_of(request)
    session = console.signed_in(request)
    ids = compared_ids(request)
    answer = await console.call(session, "compare", ids)
    # "SEARCH/TRIAL" names a trial of a search: its curves are among the search's.
    jobs = dict.fromkeys(job_id.split("/", 1)[0] for job_id in ids)
    curves_by_id = {job_id: await console.call(session, "curves", job_id) for job_id in jobs}
    return JSONResponse(compare_json(answer, curves_by_id))


ROUTES = [
    Route("/api/jobs", jobs),
    Route("/api/jobs/{job_id}", job),
    Route("/api/jobs/{job_id}/curves", curves),
    Route("/api/jobs/{job_id}/artifacts", artifacts),
    Route("/api/jobs/{job_id}/live", live),
    Route("/api/compare", compare),
]
