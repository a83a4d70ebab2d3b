"""What the console's handlers share: `Console` (the settings, the sessions, the SDK client
factory, the templates), reached from a request by `console_of`.

Every call to the job API runs on a worker thread with the signed-in user's own client
(`Console.call`), so tenancy is the API's, as for the CLI.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from trainserve.console.security import CSRF_FIELD, CSRF_HEADER, check_state_change
from trainserve.console.sessions import COOKIE, Session, SessionStore
from trainserve.console.serving_stats import ServingStats
from trainserve.console.settings import ConsoleSettings
from trainserve.core import errors

HERE = Path(__file__).resolve().parent
STATIC_DIR, TEMPLATES_DIR = HERE / "static", HERE / "templates"
FORM_LIMIT = 16 * 1024
JSON_LIMIT = 2 << 20   # a try-it request: an image of up to 65 536 numbers as JSON
ClientFactory = Callable[[str], Any]


class SignInRequired(Exception):
    """The request needs a signed-in session and has none (or it expired)."""


class Console:
    """The state every handler shares."""

    def __init__(self, settings: ConsoleSettings, client_factory: ClientFactory | None = None):
        self.settings = settings
        self.sessions = SessionStore(settings.session_idle_s, settings.session_max_s)
        self.client_factory = client_factory or sdk_client_factory(settings.api)
        self.templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
        self.templates.env.globals["static"] = static_url
        self.stats = ServingStats(settings.serving_metrics, prometheus=settings.prometheus)

    def session(self, request: Request) -> Session | None:
        return self.sessions.get(request.cookies.get(COOKIE))

    def signed_in(self, request: Request) -> Session:
        session = self.session(request)
        if session is None or not session.signed_in:
            raise SignInRequired()
        return session

    async def call(self, session: Session, method: str, *args: Any, **kwargs: Any) -> Any:
        """`method` of the session's SDK client, on a worker thread (the SDK blocks)."""
        client = self.sessions.client(session, self.client_factory)
        return await run_in_threadpool(getattr(client, method), *args, **kwargs)

    def page(self, request: Request, name: str, session: Session | None, status: int = 200,
             **context: Any) -> Response:
        return self.templates.TemplateResponse(
            request, name, {"session": session, "csrf_field": CSRF_FIELD, **context},
            status_code=status)

    async def check_form(self, request: Request, session: Session) -> dict[str, str]:
        """The posted form, once its CSRF token and origin passed (`CsrfRejected` else)."""
        form = await read_form(request)
        check_state_change(request, session, form.get(CSRF_FIELD)
                           or request.headers.get(CSRF_HEADER))
        return form

    async def check_json(self, request: Request, session: Session,
                         limit: int = JSON_LIMIT) -> dict[str, Any]:
        """A posted JSON object, once the CSRF token of its `X-CSRF-Token` header and its
        origin passed (`CsrfRejected` else; checked before the body is read)."""
        check_state_change(request, session, request.headers.get(CSRF_HEADER))
        body = await read_body(request, limit)
        try:
            doc = json.loads(body or b"{}")
        except ValueError:
            raise errors.InvalidArgument("the body is not JSON") from None
        if not isinstance(doc, dict):
            raise errors.InvalidArgument("the body must be a JSON object")
        return doc


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body; past `limit` bytes RESOURCE_EXHAUSTED."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise errors.ResourceExhausted(f"the request is larger than {limit} bytes")
    return body


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form (the console's forms are a few short fields): each field's first
    value; a body past FORM_LIMIT bytes is refused (InvalidArgument)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            raise errors.InvalidArgument("form too large")
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


def sdk_client_factory(api: str) -> ClientFactory:
    """Clients of the job API at `api` that send exactly the token given ("" sends none:
    never the environment's or the local admin's, which the SDK would fall back to)."""
    def make(token: str):
        from trainserve.client import Client
        # inference_token="": never the console process's own $TRAINSERVE_INFERENCE_TOKEN
        return Client(api, token=token, timeout=15.0, retry_for=3.0, inference_token="")
    return make


def set_session_cookie(request: Request, response: Response, session: Session) -> Response:
    response.set_cookie(COOKIE, session.id, httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https")
    return response


def console_of(request: Request) -> Console:
    return request.app.state.console


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


_STATIC_VERSION: dict[str, str] = {}


def static_url(name: str) -> str:
    """`/static/<name>?v=<digest of its content>`: a new file is fetched, an old one cached."""
    if name not in _STATIC_VERSION:
        digest = hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]
        _STATIC_VERSION[name] = digest
    return f"/static/{name}?v={_STATIC_VERSION[name]}"
