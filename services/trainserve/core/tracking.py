"""The rules of `spec.tracking`: which trackers a job may name and how (docs/tracking.md).

The MLflow address is user-supplied and the worker sends requests to it, so it is held to
what a tracking server needs: http or https, a host, no credentials (they would be stored in
the spec and shown to whoever reads it), a bounded length. Anything else (file: paths, which
would have the worker write wherever the server's disk allows; other schemes) is refused with
the field's path.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from trainserve.core.errors import InvalidArgument
from trainserve.core.pb import spec_pb2

MAX_URI = 512
MAX_EXPERIMENT = 256
SCHEMES = ("http", "https")
FIELD = "spec.tracking"


def check_tracking(spec: spec_pb2.JobSpec) -> None:
    """Raise `InvalidArgument` (with the field path) unless `spec.tracking` is usable."""
    if not spec.HasField("tracking"):
        return
    if spec.HasField("search"):
        raise InvalidArgument("a search's trials are not tracked yet: leave tracking out",
                              field=FIELD)
    if spec.tracking.HasField("mlflow"):
        check_mlflow(spec.tracking.mlflow, f"{FIELD}.mlflow")


def check_mlflow(mlflow: spec_pb2.MlflowTrackingSpec, field: str) -> None:
    check_uri(mlflow.uri, f"{field}.uri")
    _check_experiment(mlflow.experiment, f"{field}.experiment")


def check_uri(uri: str, field: str) -> None:
    """An http(s) address with a host, no credentials, no control characters."""
    if not uri:
        raise InvalidArgument("required: the tracking server's address, e.g. "
                              "http://mlflow.example.org:5000", field=field)
    if len(uri) > MAX_URI:
        raise InvalidArgument(f"at most {MAX_URI} characters, got {len(uri)}", field=field)
    if not uri.isprintable() or any(c.isspace() for c in uri):
        raise InvalidArgument("no spaces or control characters", field=field)
    parts = _split(uri, field)
    if parts.scheme.lower() not in SCHEMES:
        raise InvalidArgument(f"{parts.scheme or 'no'} scheme: only http:// and https:// "
                              "tracking servers are allowed", field=field)
    if not parts.hostname:
        raise InvalidArgument("names no host", field=field)
    if parts.username is not None or parts.password is not None:
        raise InvalidArgument("must not hold a user or password (the spec is stored and "
                              "shown as submitted)", field=field)
    if parts.query or parts.fragment:
        raise InvalidArgument("no query or fragment: the server's base address only",
                              field=field)


def _split(uri: str, field: str):
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises on a port that is no number or out of range
    except ValueError as exc:
        raise InvalidArgument(f"not an address: {exc}", field=field) from None
    return parts


def _check_experiment(name: str, field: str) -> None:
    if len(name) > MAX_EXPERIMENT:
        raise InvalidArgument(f"at most {MAX_EXPERIMENT} characters, got {len(name)}",
                              field=field)
    if name and not name.isprintable():
        raise InvalidArgument("no control characters", field=field)
