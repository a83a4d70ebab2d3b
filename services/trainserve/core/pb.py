"""The generated protobuf modules under short names (built from protos/ by scripts/gen_protos.py).

The message modules load with this one; the gRPC service stubs (`*_pb2_grpc`, which load
gRPC itself) load when a transport first asks for one, so the domain needs no gRPC.
"""
import importlib

try:
    from trainserve._gen.trainserve.v1 import (  # noqa: F401
        auth_pb2, dataset_pb2, deployment_pb2, job_pb2, model_pb2, spec_pb2,
    )
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError("protobuf stubs missing: run `make build` (or pip install -e .)") from exc

_STUBS = ("auth_pb2_grpc", "dataset_pb2_grpc", "deployment_pb2_grpc", "job_pb2_grpc",
          "model_pb2_grpc")


def __getattr__(name: str):
    if name in _STUBS:
        module = importlib.import_module(f"trainserve._gen.trainserve.v1.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
