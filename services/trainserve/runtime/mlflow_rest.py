"""A small client of MLflow's tracking REST API (`/api/2.0/mlflow/...`), the calls a job's run
needs: find or create the experiment, create or reopen the run, log params and metrics in
batches, end the run.

The REST API rather than the `mlflow` package: the workers need no extra dependency (the
package pulls in a web framework, a database layer and pinned versions of much of the
scientific stack), and every request here is bounded: a timeout, no redirects (the checked
address is the only one contacted), http(s) only (`core.tracking.check_uri`).

A server that requires authentication gets MLflow's own credentials, read from a file the
operator names (`credentials`: `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD` as
HTTP basic auth, else `MLFLOW_TRACKING_TOKEN` as a bearer token, as MLflow's clients send
them). They travel in the Authorization header only: never in an address, a message or a log.
"""
from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request

TIMEOUT_S = 15.0  # a busy server's first requests (its database warming up) take seconds
MAX_PARAMS = 100     # per log-batch request (the server's limit)
MAX_METRICS = 1000   # per log-batch request
MAX_PARAM_VALUE = 500  # characters; the oldest servers still accept this many
MAX_KEY = 250
CREDENTIAL_KEYS = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME",
                   "MLFLOW_TRACKING_PASSWORD")
PARENT_TAG = "mlflow.parentRunId"  # how MLflow nests a run under another
ARTIFACTS_SCHEME = "mlflow-artifacts:"  # artifacts the tracking server itself stores


class MlflowError(RuntimeError):
    """The server could not be reached or refused a request; the message says which."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise MlflowError(f"the tracking server redirected to {newurl!r}; give its final "
                          "address instead")


_OPENER = urllib.request.build_opener(_NoRedirect)


class MlflowRest:
    """Calls on one tracking server, `uri` its base address (checked by the caller)."""

    def __init__(self, uri: str, timeout: float = TIMEOUT_S, auth: str = ""):
        """`auth`: the Authorization header's value (`credentials`), "" for none."""
        self.root = uri.rstrip("/")
        self.base = self.root + "/api/2.0/mlflow/"
        self.timeout = timeout
        self._auth = auth

    def __repr__(self) -> str:  # never the credentials
        return f"MlflowRest({self.root!r})"

    def experiment_id(self, name: str) -> str:
        """The id of experiment `name`, created when there is none."""
        try:
            got = self._call("GET", "experiments/get-by-name", {"experiment_name": name})
            return got["experiment"]["experiment_id"]
        except _Missing:
            return self._call("POST", "experiments/create", {"name": name})["experiment_id"]

    def create_run(self, experiment_id: str, run_name: str, tags: dict[str, str]
                   ) -> tuple[str, str]:
        """(run id, artifact URI) of a new run; a `PARENT_TAG` tag nests it under that run."""
        body = {"experiment_id": experiment_id, "run_name": run_name, "start_time": _now_ms(),
                "tags": [{"key": k, "value": v} for k, v in tags.items()]}
        info = self._call("POST", "runs/create", body)["run"]["info"]
        return info["run_id"], info.get("artifact_uri", "")

    def log_artifact(self, artifact_uri: str, path: str, data: bytes,
                     content_type: str = "application/octet-stream") -> None:
        """Upload `data` as `path` among a run's artifacts, through the tracking server's
        artifact proxy (`mlflow server`'s default): only a run whose artifact URI is
        `mlflow-artifacts:` can be written this way, by this server alone."""
        if not artifact_uri.startswith(ARTIFACTS_SCHEME):
            raise MlflowError(f"the run's artifacts live at {artifact_uri!r}, which only the "
                              "server's own clients write; serve them through the tracking "
                              "server (mlflow server --serve-artifacts)")
        where = urllib.parse.urlsplit(artifact_uri).path.strip("/")
        url = (f"{self.root}/api/2.0/mlflow-artifacts/artifacts/{where}/"
               + urllib.parse.quote(path))
        self._send(urllib.request.Request(url, data=data, method="PUT",
                                          headers=self._headers(content_type)), "artifacts")

    def set_status(self, run_id: str, status: str, end: bool = False) -> None:
        """"RUNNING", "FINISHED", "FAILED" or "KILLED"; `end` also sets the end time."""
        body = {"run_id": run_id, "status": status} | ({"end_time": _now_ms()} if end else {})
        self._call("POST", "runs/update", body)

    def log_params(self, run_id: str, params: dict[str, str]) -> None:
        items = [{"key": k[:MAX_KEY], "value": str(v)[:MAX_PARAM_VALUE]}
                 for k, v in params.items()]
        for i in range(0, len(items), MAX_PARAMS):
            self._call("POST", "runs/log-batch", {"run_id": run_id,
                                                  "params": items[i:i + MAX_PARAMS]})

    def log_metrics(self, run_id: str, points: list[tuple[str, float, int]]) -> None:
        """`points`: (key, value, step); all stamped now."""
        now = _now_ms()
        items = [{"key": k[:MAX_KEY], "value": float(v), "timestamp": now, "step": int(step)}
                 for k, v, step in points]
        for i in range(0, len(items), MAX_METRICS):
            self._call("POST", "runs/log-batch", {"run_id": run_id,
                                                  "metrics": items[i:i + MAX_METRICS]})

    def _call(self, method: str, path: str, body: dict) -> dict:
        url, data = self.base + path, None
        if method == "GET":
            url += "?" + urllib.parse.urlencode(body)
        else:
            data = json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method,
                                         headers=self._headers("application/json"))
        return self._send(request, path)

    def _headers(self, content_type: str) -> dict[str, str]:
        return {"Content-Type": content_type} | ({"Authorization": self._auth}
                                                 if self._auth else {})

    def _send(self, request: urllib.request.Request, path: str) -> dict:
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise _refusal(exc, path) from None
        except (OSError, ValueError) as exc:  # URLError, timeouts, a body that is no JSON
            raise MlflowError(f"{path}: {exc}") from None


class _Missing(MlflowError):
    """RESOURCE_DOES_NOT_EXIST."""


def _refusal(exc: urllib.error.HTTPError, path: str) -> MlflowError:
    try:
        doc = json.loads(exc.read(4096) or b"{}")
    except ValueError:
        doc = {}
    code, message = doc.get("error_code", ""), doc.get("message", exc.reason)
    kind = _Missing if code == "RESOURCE_DOES_NOT_EXIST" else MlflowError
    return kind(f"{path}: HTTP {exc.code} {code} {message}".strip())


def credentials(path: str) -> str:
    """The Authorization header's value for the credentials in file `path` ("" for no
    path): lines `NAME=value` of MLflow's own variables (`CREDENTIAL_KEYS`), `#` comments.
    Errors name the file and the line, never a value."""
    if not path:
        return ""
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as exc:
        raise MlflowError(f"credentials file {path}: {exc.strerror or exc}") from None
    found = _credential_lines(text, path)
    if found.get("MLFLOW_TRACKING_USERNAME") and found.get("MLFLOW_TRACKING_PASSWORD"):
        pair = f"{found['MLFLOW_TRACKING_USERNAME']}:{found['MLFLOW_TRACKING_PASSWORD']}"
        return "Basic " + base64.b64encode(pair.encode()).decode()
    if found.get("MLFLOW_TRACKING_TOKEN"):
        return "Bearer " + found["MLFLOW_TRACKING_TOKEN"]
    raise MlflowError(f"credentials file {path}: names neither MLFLOW_TRACKING_USERNAME and "
                      "MLFLOW_TRACKING_PASSWORD nor MLFLOW_TRACKING_TOKEN")


def _credential_lines(text: str, path: str) -> dict[str, str]:
    found = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.removeprefix("export ").partition("=")
        name, value = name.strip(), value.strip().strip("'\"")
        if not sep or name not in CREDENTIAL_KEYS or not value.isprintable():
            raise MlflowError(f"credentials file {path}, line {number}: expected NAME=value "
                              f"with NAME one of {', '.join(CREDENTIAL_KEYS)}")
        found[name] = value
    return found


def _now_ms() -> int:
    return int(time.time() * 1000)
