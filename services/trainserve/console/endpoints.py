"""The endpoints' pages: each deployment's state, versions and traffic split, its requests,
latency and errors (the serving metrics), the rollout controls (rollout, promote, rollback,
undeploy: forms with the session's CSRF token) and the "try it" panel, whose request the
console sends to the endpoint through the SDK once the job API said the endpoint is the
user's (GetDeployment as the user)."""
from __future__ import annotations

from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from trainserve.console import tryit
from trainserve.console.context import console_of
from trainserve.console.models import version_of
from trainserve.console.registry_views import deployment_json, model_json
from trainserve.core import errors


async def endpoints_page(request: Request) -> Response:
    console = console_of(request)
    session = console.signed_in(request)
    return console.page(request, "endpoints.html", session)


async def endpoint_page(request: Request) -> Response:
    console = console_of(request)
    session = console.signed_in(request)
    dep = await console.call(session, "get_deployment", request.path_params["name"])
    return console.page(request, "endpoint.html", session, endpoint=deployment_json(dep))


async def endpoints(request: Request) -> Response:
    console = console_of(request)
    session = console.signed_in(request)
    deps = await console.call(session, "list_deployments")
    return JSONResponse({"endpoints": [deployment_json(d) for d in deps]})


async def endpoint(request: Request) -> Response:
    """The endpoint, the versions of its model (what a rollout may pick), the model version
    it serves (its signature: the try-it panel's form)."""
    console = console_of(request)
    session = console.signed_in(request)
    dep = await console.call(session, "get_deployment", request.path_params["name"])
    versions = await console.call(session, "list_models", dep.model_name)
    served = next((v for v in versions if v.version == dep.model_version), None)
    model = model_json(served) if served is not None else None
    return JSONResponse({
        "endpoint": deployment_json(dep), "model": model,
        "panel": tryit.panel(model) if model else {"kind": "none"},
        "versions": sorted((v.version for v in versions), reverse=True)})


async def stats(request: Request) -> Response:
    console = console_of(request)
    session = console.signed_in(request)
    dep = await console.call(session, "get_deployment", request.path_params["name"])
    return JSONResponse(await run_in_threadpool(console.stats.endpoint, dep.name))


async def rollout(request: Request) -> Response:
    """Send `percent` of the requests to `version` of the endpoint's model."""
    console = console_of(request)
    session = console.signed_in(request)
    form = await console.check_form(request, session)
    name = request.path_params["name"]
    version = version_of(form.get("version", "0"), "version")
    try:
        percent = int(form.get("percent", "10"))
    except ValueError:
        raise errors.InvalidArgument("a whole percent", field="percent") from None
    await console.call(session, "rollout", name, version, percent, wait=False)
    return _back(name)


def _finish(method: str):
    async def handler(request: Request) -> Response:
        console = console_of(request)
        session = console.signed_in(request)
        await console.check_form(request, session)
        name = request.path_params["name"]
        await console.call(session, method, name)
        return RedirectResponse("/endpoints", status_code=303) if method == "undeploy" \
            else _back(name)
    return handler


async def predict(request: Request) -> Response:
    """The try-it panel's request (JSON, CSRF token in `X-CSRF-Token`): the endpoint is the
    user's (GetDeployment), the request is built from its model's signature, the answer
    comes from the endpoint through the SDK. `inference_token` (optional) is sent to an
    endpoint that requires one."""
    console = console_of(request)
    session = console.signed_in(request)
    posted = await console.check_json(request, session)
    dep = await console.call(session, "get_deployment", request.path_params["name"])
    served = await console.call(session, "get_model", dep.model_name, dep.model_version)
    model = model_json(served)
    oip = tryit.oip_request(model, posted)
    response = await run_in_threadpool(_infer, console, session, dep, oip,
                                       str(posted.get("inference_token") or ""))
    return JSONResponse(tryit.answer_json(response, model["class_names"]))


def _infer(console, session, dep, oip: dict, inference_token: str) -> dict:
    """The endpoint's answer, with the session's client (or, to send an inference token,
    a client of its own: the session's is shared by the user's other requests)."""
    if not inference_token:
        client = console.sessions.client(session, console.client_factory)
        return client.infer(dep.name, oip, http=dep.rest_url)
    client = console.client_factory(session.token or "")
    try:
        client.inference_token = inference_token
        return client.infer(dep.name, oip, http=dep.rest_url)
    finally:
        client.close()


def _back(name: str) -> Response:
    return RedirectResponse(f"/endpoints/{quote(name)}", status_code=303)


ROUTES = [
    Route("/endpoints", endpoints_page),
    Route("/endpoints/{name}", endpoint_page),
    Route("/endpoints/{name}/rollout", rollout, methods=["POST"]),
    Route("/endpoints/{name}/promote", _finish("promote"), methods=["POST"]),
    Route("/endpoints/{name}/rollback", _finish("rollback"), methods=["POST"]),
    Route("/endpoints/{name}/undeploy", _finish("undeploy"), methods=["POST"]),
    Route("/api/endpoints", endpoints),
    Route("/api/endpoints/{name}", endpoint),
    Route("/api/endpoints/{name}/stats", stats),
    Route("/api/endpoints/{name}/predict", predict, methods=["POST"]),
]
