"""The "New job" page: a spec written or picked in the browser (YAML or JSON), checked or
submitted through the SDK as the signed-in user.

The form posts urlencoded (`spec`, `action`, `request_id`: the idempotency key of this
rendering of the form, the CSRF token); its body is bounded by
SPEC_LIMIT before it is parsed. The spec is read with PyYAML's safe loader, with anchors and
aliases refused (a few lines of aliases can stand for an exponentially large document). A
spec the SDK or the API refuses is shown again with the error and its field path.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, quote

import re
import uuid

import yaml
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from trainserve.client import load_spec
from trainserve.console.context import console_of, read_body
from trainserve.console.security import CSRF_FIELD, CSRF_HEADER, check_state_change
from trainserve.console.sessions import Session
from trainserve.core import errors

SPEC_LIMIT = 1 << 20   # bytes of the posted form: far more than any spec needs
ACTIONS = ("submit", "validate")
# Each rendering of the form carries a new idempotency key: the same form posted twice (a
# double click) makes one job.
REQUEST_ID = re.compile(r"[0-9a-f]{32}")


class _SpecLoader(yaml.SafeLoader):
    """The safe loader without anchors or aliases."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases (*name) are not accepted in a spec",
                event.start_mark)
        return super().compose_node(parent, index)


def parse_spec_text(text: str) -> dict[str, Any]:
    """The mapping a YAML or JSON spec holds; `InvalidArgument` (field "spec") for text that
    is not YAML, or is YAML but not a mapping."""
    if not text.strip():
        raise errors.InvalidArgument("write a spec or pick a file", field="spec")
    try:
        doc = yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise errors.InvalidArgument(f"not valid YAML or JSON: {_yaml_problem(exc)}",
                                     field="spec") from None
    if not isinstance(doc, dict):
        kind = "nothing" if doc is None else f"a {type(doc).__name__}"
        raise errors.InvalidArgument(
            f"a spec is a mapping of fields (name: ..., dataset: ...), not {kind}",
            field="spec")
    return doc


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's problem and where it is (line and column, from 1)."""
    problem = getattr(exc, "problem", None) or str(exc)
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark else problem


async def new_job_page(request: Request) -> Response:
    console = console_of(request)
    session = console.signed_in(request)
    return _form(request, session, spec="")


async def new_job(request: Request) -> Response:
    """Check (`action=validate`) or submit the posted spec; a submitted job's page next."""
    console = console_of(request)
    session = console.signed_in(request)
    form = await _read_spec_form(request, session)
    text, action = form.get("spec", ""), form.get("action", "submit")
    if action not in ACTIONS:
        raise errors.InvalidArgument(f"one of {', '.join(ACTIONS)}", field="action")
    try:
        doc = parse_spec_text(text)
        if action == "validate":
            load_spec(doc)  # field names and types, as `trainserve submit --dry-run`
            return _form(request, session, spec=text,
                         notice="The spec is valid: its fields and their types are "
                                "right. The job API checks the rest when it is submitted.")
        job = await console.call(session, "submit", doc, request_id=_request_id(form))
    except errors.Unauthenticated:
        raise
    except errors.TrainserveError as exc:
        return _form(request, session, spec=text, error=str(exc), status=exc.http_status,
                     field=getattr(exc, "field", None) or "")
    return RedirectResponse(f"/jobs/{quote(job.id)}", status_code=303)


def _request_id(form: dict[str, str]) -> str:
    key = form.get("request_id", "")
    if not REQUEST_ID.fullmatch(key):
        raise errors.InvalidArgument("32 hex digits (reload the page)", field="request_id")
    return key


async def _read_spec_form(request: Request, session: Session) -> dict[str, str]:
    """The posted form, read up to SPEC_LIMIT bytes (RESOURCE_EXHAUSTED past it; a
    Content-Length past it is refused before any byte is read), once its CSRF token and
    origin passed."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > SPEC_LIMIT:
        raise errors.ResourceExhausted(f"the spec is larger than {SPEC_LIMIT} bytes")
    body = await read_body(request, SPEC_LIMIT)
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    form = {name: values[0] for name, values in fields.items()}
    check_state_change(request, session, form.get(CSRF_FIELD)
                       or request.headers.get(CSRF_HEADER))
    return form


def _form(request: Request, session: Session, spec: str, error: str = "", field: str = "",
          notice: str = "", status: int = 200) -> Response:
    return console_of(request).page(request, "new_job.html", session, status=status,
                                    spec=spec, error=error, field=field, notice=notice,
                                    spec_limit_kib=SPEC_LIMIT // 1024,
                                    request_id=uuid.uuid4().hex)


ROUTES = [
    Route("/jobs/new", new_job_page),
    Route("/jobs/new", new_job, methods=["POST"]),
]
