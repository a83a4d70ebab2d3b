"""The searches' pages: the search jobs of the user, and one search's trials (a sortable
table, a parallel-coordinates view, the selected trials' curves), updated while it runs.
Trials come from GetJob (`Job.trials`, `Job.best_trial`) and their curves from
GetJobCurves, through the SDK as the signed-in user."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from trainserve.console.context import console_of
from trainserve.console.registry_views import search_json, searches_of
from trainserve.core import errors


async def searches_page(request: Request) -> Response:
    console = console_of(request)
    session = console.signed_in(request)
    return console.page(request, "searches.html", session)


async def search_page(request: Request) -> Response:
    console = console_of(request)
    session = console.signed_in(request)
    search = await _search(request)
    return console.page(request, "search.html", session, search=search)


async def searches(request: Request) -> Response:
    """The user's search jobs among their newest `jobs_shown` jobs."""
    console = console_of(request)
    session = console.signed_in(request)
    page = await console.call(session, "list_jobs", None, page_size=console.settings.jobs_shown)
    return JSONResponse({"searches": searches_of(page.jobs), "more": bool(page.next_page_token)})


async def search(request: Request) -> Response:
    return JSONResponse(await _search(request))


async def _search(request: Request) -> dict:
    console = console_of(request)
    session = console.signed_in(request)
    job_id = request.path_params["job_id"]
    job = await console.call(session, "get_job", job_id)
    if not job.spec.HasField("search"):
        raise errors.NotFound(f"job {job_id} is not a search (its spec has no search)")
    return search_json(job)


ROUTES = [
    Route("/searches", searches_page),
    Route("/searches/{job_id}", search_page),
    Route("/api/searches", searches),
    Route("/api/searches/{job_id}", search),
]
