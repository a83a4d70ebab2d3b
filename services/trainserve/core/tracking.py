"""The rules of `spec.tracking`: which trackers a job may name and how (docs/tracking.md).

The MLflow address is user-supplied and the worker sends requests to it, so it is held to
what a tracking server needs: http or https, a host, no credentials (they would be stored in
the spec and shown to whoever reads it), a bounded length. Anything else (file: paths, which
would have the worker write wherever the server's disk allows; other schemes) is refused with
the field's path.

Which trackers a job uses (`effective_tracking`): its own `spec.tracking` when present (an
empty `tracking: {}` opts out), else the stack's (`StackTracking`, from the operator's
settings). The stack's MLflow credentials go only to the stack's own MLflow server
(`same_server`): a job naming another address must never receive them.
"""
from __future__ import annotations

from dataclasses import dataclass
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


# --- the stack's trackers ----------------------------------------------------------------

@dataclass(frozen=True)
class StackTracking:
    """The trackers of jobs whose spec names none, as the operator set them for the whole
    stack (`local.settings.Config.tracking_*`). `credentials_file` is a path, never the
    secret: the process that talks to MLflow reads it (`runtime.mlflow_rest.credentials`)."""
    mlflow_uri: str = ""
    tensorboard: bool = False
    credentials_file: str = ""

    def __post_init__(self):
        if self.mlflow_uri:
            check_uri(self.mlflow_uri, "tracking_mlflow_uri")

    def spec(self) -> spec_pb2.TrackingSpec | None:
        """What a job without `spec.tracking` gets; None when the stack tracks nothing."""
        if not (self.mlflow_uri or self.tensorboard):
            return None
        out = spec_pb2.TrackingSpec(tensorboard=self.tensorboard)
        if self.mlflow_uri:
            out.mlflow.uri = self.mlflow_uri  # the experiment: the job's name
        return out

    def credentials_for(self, uri: str) -> str:
        """The credentials file to use with `uri`: the stack's, for its own server only."""
        if self.credentials_file and self.mlflow_uri and same_server(uri, self.mlflow_uri):
            return self.credentials_file
        return ""


def effective_tracking(spec: spec_pb2.JobSpec, stack: StackTracking | None
                       ) -> spec_pb2.TrackingSpec | None:
    """The trackers a job uses: its own `spec.tracking` when present (empty: none), else the
    stack's; None when nothing is tracked."""
    if spec.HasField("tracking"):
        mine = spec.tracking
        return mine if (mine.tensorboard or mine.HasField("mlflow")) else None
    return stack.spec() if stack is not None else None


def same_server(a: str, b: str) -> bool:
    """Whether two http(s) addresses name the same tracking server: scheme, host, port and
    path alike (a trailing slash, the case of scheme and host and a default port aside)."""
    def origin(uri: str) -> tuple:
        parts = urlsplit(uri)
        scheme = parts.scheme.lower()
        return (scheme, (parts.hostname or "").lower(),
                parts.port or DEFAULT_PORTS.get(scheme), parts.path.rstrip("/"))
    try:
        return origin(a) == origin(b)
    except ValueError:
        return False


DEFAULT_PORTS = {"http": 80, "https": 443}


# How TensorBoard names its event files: the job's artifacts that start so are its event files
# (the SDK's `download_tensorboard` and `trainserve tensorboard` pick them by it).
EVENTS_PREFIX = "events.out.tfevents."
