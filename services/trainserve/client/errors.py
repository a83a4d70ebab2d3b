"""What the SDK raises: every error the job API reports (a gRPC status) as the matching
`trainserve.core.errors` exception with the server's message, plus the two errors only a
client sees. (An inference endpoint's HTTP statuses: `client.inference`.)"""
from __future__ import annotations

import re

import grpc

from trainserve.core import errors
from trainserve.core.pb import deployment_pb2

class NotSupported(errors.TrainserveError):
    """The API does not offer the call (UNIMPLEMENTED): a server older than this client."""


class DeploymentFailed(errors.TrainserveError):
    """`Client.deploy(wait=True)` saw the deployment reach FAILED; `.deployment` is the record."""
    grpc_code = "FAILED_PRECONDITION"

    def __init__(self, deployment: deployment_pb2.Deployment):
        super().__init__(f"deployment {deployment.name!r} failed: "
                         f"{deployment.message or 'no reason given'}")
        self.deployment = deployment


_ERRORS: dict[grpc.StatusCode, type[errors.TrainserveError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.ABORTED: errors.TrainingError,
    grpc.StatusCode.CANCELLED: errors.Cancelled,
    grpc.StatusCode.UNIMPLEMENTED: NotSupported,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
}
# "spec.training.epochs: must be >= 1" -> field path, reason (errors.InvalidArgument's format).
_FIELD_MESSAGE = re.compile(r"^([A-Za-z_][\w]*(?:\[\d+\])?(?:\.[A-Za-z_]\w*(?:\[\d+\])?)*): (.+)$",
                            re.S)


def rpc_error(exc: grpc.RpcError, address: str) -> errors.TrainserveError:
    """The exception for a failed call to the job API at `address`."""
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE and not details.startswith("state store"):
        return errors.Unavailable(f"cannot reach the trainserve API at {address} "
                                  f"({details or 'unavailable'}); is it running "
                                  "(`trainserve up`)?")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return errors.Unavailable(f"the trainserve API at {address} did not answer in time")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return invalid_argument(details) or errors.InvalidArgument(details)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return errors.Unauthenticated(f"{details} (the SDK and the CLI send $TRAINSERVE_TOKEN "
                                      "or --token; on the machine that ran `trainserve up`, "
                                      "its admin token)")
    cls = _ERRORS.get(code, errors.TrainserveError)
    return cls(details or code.name.lower())


def invalid_argument(message: str) -> errors.InvalidArgument | None:
    """`InvalidArgument` with its field when `message` reads "<field path>: <reason>" (how
    the server words one), else None."""
    match = _FIELD_MESSAGE.match(message)
    return errors.InvalidArgument(match.group(2), field=match.group(1)) if match else None
