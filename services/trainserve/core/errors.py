"""Domain exceptions, one place. The API's interceptor maps each to a gRPC status code and the
inference gateway to an HTTP status; anything else becomes INTERNAL with a generic message."""
from __future__ import annotations


class TrainserveError(Exception):
    """Base of every error the service reports to a caller."""
    grpc_code = "INTERNAL"
    http_status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidArgument(TrainserveError):
    """The request is malformed; `field` is the offending field path, e.g. `spec.training.epochs`."""
    grpc_code = "INVALID_ARGUMENT"
    http_status = 400

    def __init__(self, message: str, field: str | None = None):
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.reason = message


class Unauthenticated(TrainserveError):
    """The call carries no valid credentials (e.g. an inference bearer token)."""
    grpc_code = "UNAUTHENTICATED"
    http_status = 401


class PermissionDenied(TrainserveError):
    """The caller is known but may not do this (e.g. manage tokens without the admin role)."""
    grpc_code = "PERMISSION_DENIED"
    http_status = 403


class NotFound(TrainserveError):
    grpc_code = "NOT_FOUND"
    http_status = 404


class AlreadyExists(TrainserveError):
    grpc_code = "ALREADY_EXISTS"
    http_status = 409


class FailedPrecondition(TrainserveError):
    """The request is valid but the target is in the wrong state (e.g. cancelling a finished job)."""
    grpc_code = "FAILED_PRECONDITION"
    http_status = 409


class ResourceExhausted(TrainserveError):
    """The request can never be satisfied by this cluster (e.g. more workers than CPUs)."""
    grpc_code = "RESOURCE_EXHAUSTED"
    http_status = 429


class Unavailable(TrainserveError):
    """A dependency (Redis, Ray, Serve) cannot be reached; the call may be retried."""
    grpc_code = "UNAVAILABLE"
    http_status = 503


class ModelNotReady(Unavailable):
    """The endpoint exists but its model is not loaded yet."""


class TrainingError(TrainserveError):
    """Training failed for a reason the user can act on (diverged, bad data, ...)."""
    grpc_code = "ABORTED"


class Cancelled(TrainserveError):
    """Raised inside a running job when its cancellation was requested."""
    grpc_code = "CANCELLED"
