"""The datasets page: the user's uploaded datasets with their description (columns or
arrays, rows, the schema the API found at upload), an upload, and deleting one.

An upload is the file's bytes as the body of one POST (the page's script sends the file the
user picked; its CSRF token in `X-CSRF-Token`), written to a temporary file of at most
`max_upload_bytes` and handed to UploadDataset through the SDK, which streams it in chunks;
the job API applies its own size limit and the user's quota.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from trainserve.console.context import console_of
from trainserve.console.registry_views import dataset_json
from trainserve.console.security import CSRF_HEADER, check_state_change
from trainserve.core import errors

FORMATS = ("csv", "npz")


async def datasets_page(request: Request) -> Response:
    console = console_of(request)
    session = console.signed_in(request)
    return console.page(request, "datasets.html", session, formats=FORMATS,
                        max_upload_mib=console.settings.max_upload_bytes // (1 << 20))


async def datasets(request: Request) -> Response:
    console = console_of(request)
    session = console.signed_in(request)
    listed = await console.call(session, "list_datasets")
    return JSONResponse({"datasets": [dataset_json(d) for d in listed]})


async def dataset(request: Request) -> Response:
    console = console_of(request)
    session = console.signed_in(request)
    got = await console.call(session, "get_dataset", request.path_params["name"])
    return JSONResponse(dataset_json(got))


async def upload(request: Request) -> Response:
    """`?name=&format=csv|npz&description=`, the file as the body."""
    console = console_of(request)
    session = console.signed_in(request)
    check_state_change(request, session, request.headers.get(CSRF_HEADER))
    params = request.query_params
    name, fmt = params.get("name", "").strip(), params.get("format", "").strip().lower()
    if fmt not in FORMATS:
        raise errors.InvalidArgument(f"one of {', '.join(FORMATS)}", field="format")
    if not name:
        raise errors.InvalidArgument("required", field="name")
    with tempfile.TemporaryDirectory(prefix="ts-console-upload-") as folder:
        path = Path(folder) / f"upload.{fmt}"
        await _save(request, path, console.settings.max_upload_bytes)
        got = await console.call(session, "upload_dataset", path, name, fmt,
                                 params.get("description", ""))
    return JSONResponse(dataset_json(got))


async def _save(request: Request, path: Path, limit: int) -> None:
    """The body into `path`; past `limit` bytes RESOURCE_EXHAUSTED (nothing is uploaded)."""
    size = 0
    with open(path, "wb") as out:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise errors.ResourceExhausted(
                    f"the file is larger than the console's upload limit ({limit} bytes)")
            out.write(chunk)
    if size == 0:
        raise errors.InvalidArgument("the file is empty", field="file")


async def delete(request: Request) -> Response:
    console = console_of(request)
    session = console.signed_in(request)
    await console.check_form(request, session)
    await console.call(session, "delete_dataset", request.path_params["name"])
    return RedirectResponse("/datasets", status_code=303)


ROUTES = [
    Route("/datasets", datasets_page),
    Route("/datasets/{name}/delete", delete, methods=["POST"]),
    Route("/api/datasets", datasets),
    Route("/api/datasets/upload", upload, methods=["POST"]),
    Route("/api/datasets/{name}", dataset),
]
