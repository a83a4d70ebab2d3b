"""Signing in and out. A token posted in the sign-in form is checked by the job API itself
(`WhoAmI` through the SDK, with that token); a one-time link of the local stack signs in as
the local admin, whose token the console reads from the state folder (as the CLI does).
Either way the browser gets a new session id and never the token."""
from __future__ import annotations

from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from trainserve.console import links
from trainserve.console.context import console_of, set_session_cookie
from trainserve.console.sessions import COOKIE, Session
from trainserve.core import errors, locations

HOME = "/jobs"


async def signin_form(request: Request) -> Response:
    console = console_of(request)
    session = console.session(request)
    if session is not None and session.signed_in:
        return RedirectResponse(_next(request.query_params.get("next")), status_code=303)
    return _form(request, session, next_path=request.query_params.get("next", ""))


async def signin(request: Request) -> Response:
    """The sign-in form's token: a new session if the job API accepts it (401 if not)."""
    console = console_of(request)
    session = console.session(request)
    if session is None:  # the form's session expired: its CSRF token with it
        return _form(request, None, status=403,
                     error="The sign-in form expired; it is reloaded, please try again.")
    form = await console.check_form(request, session)
    token, next_path = form.get("token", "").strip(), form.get("next", "")
    if not token:
        return _form(request, session, status=400, error="Enter a token.", next_path=next_path)
    try:
        client, who = await run_in_threadpool(_whoami, console.client_factory, token)
    except errors.Unauthenticated:
        return _form(request, session, status=401, next_path=next_path,
                     error="The job API did not accept this token.")
    return _signed_in(request, session, client, token, who,
                      RedirectResponse(_next(next_path), status_code=303))


async def signin_link(request: Request) -> Response:
    """A one-time link of the local stack: signs in as its admin, once."""
    console = console_of(request)
    state_dir = console.settings.state_dir
    code = request.path_params["code"]
    if state_dir is None or not links.redeem(state_dir, code):
        return console.page(request, "error.html", None, status=403, status_code=403,
                            message="This sign-in link was used already or has expired. "
                                    "`trainserve console` prints a new one.")
    token = _admin_token(state_dir)
    client, who = await run_in_threadpool(_whoami, console.client_factory, token)
    page = console.page(request, "signed_in.html", None, target=HOME, user=who.user)
    return _signed_in(request, console.session(request), client, token, who, page)


async def signout(request: Request) -> Response:
    console = console_of(request)
    session = console.session(request)
    if session is not None:
        await console.check_form(request, session)
        console.sessions.drop(session.id)
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def _whoami(factory, token: str):
    """(a client of `token`, who the API says it is); the client is closed on failure."""
    client = factory(token)
    try:
        return client, client.whoami()
    except BaseException:
        client.close()
        raise


def _signed_in(request: Request, old: Session | None, client, token: str, who,
               response: Response) -> Response:
    console = console_of(request)
    session = console.sessions.sign_in(old, token, who.user, who.role, who.auth_enabled)
    session.client = client
    return set_session_cookie(request, response, session)


def _admin_token(state_dir: Path) -> str:
    """The local admin's token ("" when the stack's API runs without tokens)."""
    try:
        return locations.admin_token_file(state_dir).read_text().strip()
    except OSError:
        return ""


def _form(request: Request, session: Session | None, status: int = 200, error: str = "",
          next_path: str = "") -> Response:
    """The sign-in form, with the CSRF token of `session` (a new anonymous one if None)."""
    console = console_of(request)
    session = session if session is not None and not session.signed_in \
        else console.sessions.anonymous()
    page = console.page(request, "signin.html", None, status=status, error=error,
                        csrf=session.csrf, next_path=_next(next_path),
                        local_links=console.settings.state_dir is not None)
    return set_session_cookie(request, page, session)


def _next(path: str | None) -> str:
    """Where to go after signing in: a path of this console only (never another site)."""
    if path and path.startswith("/") and not path.startswith(("//", "/\\")) \
            and not path.startswith("/signin"):
        return path
    return HOME


ROUTES = [
    Route("/signin", signin_form, methods=["GET"]),
    Route("/signin", signin, methods=["POST"]),
    Route("/signin/{code}", signin_link, methods=["GET"]),
    Route("/signout", signout, methods=["POST"]),
]
