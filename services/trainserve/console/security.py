"""What keeps the console's pages to themselves: the headers every answer carries, the Host
check, and the check of a state-changing request (its CSRF token and its origin).

The Content-Security-Policy allows nothing but the console's own files: no inline script or
style (the pages pass data in `data-` attributes), no other origin, no framing, no plugin.
"""
from __future__ import annotations

from typing import Iterable

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trainserve.console.sessions import Session

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
# Served over HTTPS (a cluster's console), browsers are told to never try plain HTTP.
HSTS = "max-age=31536000"
STATIC_PREFIX = "/static/"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


class CsrfRejected(Exception):
    """A state-changing request without its session's CSRF token, or from another origin."""


class SecurityHeaders:
    """ASGI middleware: refuses a Host header naming another host (400), and adds `HEADERS`
    to every answer; pages and JSON are never cached (they hold a user's data)."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str]):
        self.app = app
        self.allowed_hosts = frozenset(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if host_name(Headers(scope=scope).get("host", "")) not in self.allowed_hosts:
            await PlainTextResponse("invalid Host header", status_code=400)(scope, receive,
                                                                              send)
            return
        static = scope["path"].startswith(STATIC_PREFIX)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers.setdefault(name, value)
                if not static:
                    headers["Cache-Control"] = "no-store"
                if scope.get("scheme") == "https":
                    headers.setdefault("Strict-Transport-Security", HSTS)
            await send(message)
        await self.app(scope, receive, send_with_headers)


def host_name(host: str) -> str:
    """The name in a Host header, without its port: "127.0.0.1", "::1", "localhost"."""
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else ""
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def check_state_change(request: Request, session: Session, presented: str | None) -> None:
    """`CsrfRejected` unless `presented` is the session's CSRF token and the request comes
    from the console's own origin (a browser sends `Origin: null` for our pages, whose
    referrer policy is no-referrer)."""
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    if origin not in (None, "null", own):
        raise CsrfRejected(f"cross-origin request from {origin}")
    if not session.csrf_ok(presented):
        raise CsrfRejected("missing or wrong CSRF token")
