"""The SDK's side of the inference endpoints (Open Inference Protocol v2, REST): a batch of
instances as an OIP JSON request, an OIP JSON response as numpy arrays, and one JSON request
over HTTP with its errors mapped to `trainserve.core.errors` exceptions."""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Mapping

import numpy as np

from trainserve.client.errors import invalid_argument
from trainserve.client.transport import is_loopback_host
from trainserve.core import errors
from trainserve.core.oip import numpy_dtype

# The inference bearer token (serve.auth.TOKEN_ENV; not imported: the SDK imports no server
# module).
INFERENCE_TOKEN_ENV = "TRAINSERVE_INFERENCE_TOKEN"
_HTTP_ERRORS: dict[int, type[errors.TrainserveError]] = {
    400: errors.InvalidArgument, 401: errors.Unauthenticated, 404: errors.NotFound,
    409: errors.FailedPrecondition,
    429: errors.ResourceExhausted, 503: errors.Unavailable,
}


def infer_request(instances: Any, input_name: str = "input", datatype: str = "FP32"
                  ) -> dict[str, Any]:
    """The OIP v2 JSON request for a batch of `instances` (one input tensor)."""
    arr = np.asarray(instances, dtype=numpy_dtype(datatype))
    if arr.ndim == 0:
        raise errors.InvalidArgument("instances must be a batch (a list or an array), "
                                     "not a single number")
    if arr.ndim == 1:
        arr = arr[None, :]  # one instance
    return {"inputs": [{"name": input_name, "datatype": datatype, "shape": list(arr.shape),
                        "data": arr.reshape(-1).tolist()}]}


def outputs_to_numpy(response: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The outputs of an OIP v2 JSON response as numpy arrays of their shape and datatype."""
    out = {}
    for item in response.get("outputs", []):
        dtype = numpy_dtype(item["datatype"])
        out[item["name"]] = np.asarray(item["data"], dtype=dtype).reshape(item["shape"])
    return out


def rest_base(http: str) -> str:
    """`host:port`, `http://host:port` or a deployment's rest_url -> `http://host:port`."""
    if "://" not in http:
        http = f"http://{http}"
    parts = urllib.parse.urlsplit(http)
    return f"{parts.scheme}://{parts.netloc}"


def model_url(base: str, name: str, verb: str = "") -> str:
    """`<base>/v2/models/<name>[/<verb>]`, the endpoint name quoted."""
    url = f"{base}/v2/models/{urllib.parse.quote(name, safe='')}"
    return f"{url}/{verb}" if verb else url


def http_json(method: str, url: str, body: Any, timeout: float,
              headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One JSON request to an inference endpoint; its JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    host = urllib.parse.urlsplit(url).hostname or ""
    # A local endpoint must not be reached through an http_proxy from the environment.
    handlers = [urllib.request.ProxyHandler({})] if is_loopback_host(host) else []
    try:
        with urllib.request.build_opener(*handlers).open(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise http_error(exc) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise errors.Unavailable(f"cannot reach the inference endpoint {url}: {reason}") from None


def http_error(exc: urllib.error.HTTPError) -> errors.TrainserveError:
    """The exception for an inference endpoint's error answer (its JSON `error`, if any)."""
    try:
        message = json.loads(exc.read()).get("error") or exc.reason
    except (ValueError, AttributeError, OSError):
        message = exc.reason
    if exc.code == 401:
        return errors.Unauthenticated(f"{message} (the SDK and the CLI send "
                                      f"${INFERENCE_TOKEN_ENV})")
    if exc.code == 400 and (invalid := invalid_argument(str(message))):
        return invalid
    return _HTTP_ERRORS.get(exc.code, errors.TrainserveError)(str(message))
