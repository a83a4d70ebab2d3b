"""The models page: every version the user may see, with its metrics, signature, lineage
(the job that trained it, the data's hash, the seed, the spec) and aliases; deploying a
version (Deploy through the SDK without waiting: the endpoint's page then follows its
loading), pointing an alias at a version, removing an alias, deleting a version. The API
decides who may: another user's model is NOT_FOUND, a served version FAILED_PRECONDITION,
each shown as the error page's message."""
from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from trainserve.console.context import console_of
from trainserve.console.registry_views import model_json
from trainserve.core import errors


async def models_page(request: Request) -> Response:
    console = console_of(request)
    session = console.signed_in(request)
    return console.page(request, "models.html", session)


async def models(request: Request) -> Response:
    """Every model version the user may see (ListModels), newest model first."""
    console = console_of(request)
    session = console.signed_in(request)
    versions = await console.call(session, "list_models")
    rows = sorted((model_json(v) for v in versions),
                  key=lambda m: (m["created"] or "", m["version"]), reverse=True)
    return JSONResponse({"models": rows})


async def deploy(request: Request) -> Response:
    """The deploy form of a version: `endpoint` (default the model's name)."""
    console = console_of(request)
    session = console.signed_in(request)
    form = await console.check_form(request, session)
    name = request.path_params["name"]
    version = version_of(request.path_params["version"], "version")
    endpoint = form.get("endpoint", "").strip() or name
    dep = await console.call(session, "deploy", name, version, endpoint, wait=False)
    return RedirectResponse(f"/endpoints/{quote(dep.name)}", status_code=303)


async def set_alias(request: Request) -> Response:
    """The alias form of a version: `alias`, pointed at this version (moved off another)."""
    console = console_of(request)
    session = console.signed_in(request)
    form = await console.check_form(request, session)
    name = request.path_params["name"]
    version = version_of(request.path_params["version"], "version")
    alias = form.get("alias", "").strip()
    if not alias:
        raise errors.InvalidArgument("name the alias", field="alias")
    await console.call(session, "set_model_alias", name, alias, version)
    return _back_to(name)


async def delete_alias(request: Request) -> Response:
    console = console_of(request)
    session = console.signed_in(request)
    await console.check_form(request, session)
    name = request.path_params["name"]
    await console.call(session, "delete_model_alias", name, request.path_params["alias"])
    return _back_to(name)


async def delete_version(request: Request) -> Response:
    """Delete one version (refused by the API while an endpoint serves it)."""
    console = console_of(request)
    session = console.signed_in(request)
    await console.check_form(request, session)
    name = request.path_params["name"]
    version = version_of(request.path_params["version"], "version")
    if version == 0:
        raise errors.InvalidArgument("give the version to delete by its number",
                                     field="version")
    await console.call(session, "delete_model_version", name, version)
    return _back_to(name)


def _back_to(name: str) -> Response:
    return RedirectResponse(f"/models#model-{quote(name)}", status_code=303)


def version_of(text: str, field: str) -> int:
    """A model version number of a path or form (0: the latest)."""
    try:
        version = int(text)
    except ValueError:
        raise errors.InvalidArgument("a version number", field=field) from None
    if version < 0:
        raise errors.InvalidArgument("a version number (0: the latest)", field=field)
    return version


ROUTES = [
    Route("/models", models_page),
    Route("/api/models", models),
    Route("/models/{name}/{version}/deploy", deploy, methods=["POST"]),
    Route("/models/{name}/{version}/alias", set_alias, methods=["POST"]),
    Route("/models/{name}/{version}/delete", delete_version, methods=["POST"]),
    Route("/models/{name}/aliases/{alias}/delete", delete_alias, methods=["POST"]),
]
