"""The console's Starlette application: `create_app(settings)`.

The handlers are in `auth` (sign-in, sign-out), `pages` (HTML) and `data` (the JSON and
event streams the pages read); what they share is `context.Console`. Errors of the job API
answer with their HTTP status (as a page, or as JSON under /api/).
"""
from __future__ import annotations

from urllib.parse import quote

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from trainserve.console import (auth, data, datasets, endpoints, models, pages, searches,
                                submit)
from trainserve.console.context import (STATIC_DIR, ClientFactory, Console, SignInRequired,
                                        console_of, wants_json)
from trainserve.console.security import CsrfRejected, SecurityHeaders
from trainserve.console.settings import ConsoleSettings
from trainserve.core import errors


def create_app(settings: ConsoleSettings, client_factory: ClientFactory | None = None
               ) -> Starlette:
    """The console. `client_factory(token)` makes the SDK client of a session (default: a
    `trainserve.client.Client` of `settings.api`; tests pass a fake)."""
    routes = [
        Route("/healthz", lambda request: Response("ok", media_type="text/plain")),
        # submit's /jobs/new before pages' /jobs/{job_id}
        *auth.ROUTES, *submit.ROUTES, *pages.ROUTES, *data.ROUTES, *searches.ROUTES,
        *models.ROUTES, *endpoints.ROUTES, *datasets.ROUTES,
        Mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders, allowed_hosts=settings.allowed_hosts)],
        exception_handlers={SignInRequired: on_sign_in_required, CsrfRejected: on_csrf,
                            errors.TrainserveError: on_api_error})
    app.state.console = Console(settings, client_factory)
    return app


# -- errors ---------------------------------------------------------------------------------

async def on_sign_in_required(request: Request, exc: Exception) -> Response:
    if wants_json(request):
        return JSONResponse({"error": "not signed in", "signin": True}, status_code=401)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/signin?next={_quote(target)}", status_code=303)


async def on_csrf(request: Request, exc: Exception) -> Response:
    return _error(request, 403, f"Refused: {exc}. Reload the page and try again.")


async def on_api_error(request: Request, exc: Exception) -> Response:
    """An error of the job API, as its HTTP status; a token the API stopped accepting (it
    was revoked) ends the session."""
    assert isinstance(exc, errors.TrainserveError)
    if isinstance(exc, errors.Unauthenticated):
        console = console_of(request)
        session = console.session(request)
        if session is not None:
            console.sessions.drop(session.id)
        return await on_sign_in_required(request, exc)
    return _error(request, exc.http_status, str(exc))


def _error(request: Request, status: int, message: str) -> Response:
    if wants_json(request):
        return JSONResponse({"error": message}, status_code=status)
    console = console_of(request)
    back, back_text = back_link(request.url.path)
    return console.page(request, "error.html", console.session(request), status=status,
                        status_code=status, message=message, back=back, back_text=back_text)


def back_link(path: str) -> tuple[str, str]:
    """Where the error page's link goes: the page whose form failed (the console sends no
    Referer), else the jobs list."""
    parts = path.strip("/").split("/")
    if parts[0] == "jobs" and len(parts) == 3 and parts[1] != "new":
        return f"/jobs/{_quote(parts[1])}", "Back to the job"
    for section in ("models", "endpoints", "datasets", "searches"):
        if parts[0] == section and len(parts) > 1:
            target = f"/endpoints/{_quote(parts[1])}" if section == "endpoints" else f"/{section}"
            return target, f"Back to the {'endpoint' if section == 'endpoints' else section}"
    return "/jobs", "Back to the jobs"


def _quote(path: str) -> str:
    return quote(path, safe="/")
