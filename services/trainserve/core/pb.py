"""The generated protobuf modules under short names (built from protos/ by scripts/gen_protos.py)."""
try:
    from trainserve._gen.trainserve.v1 import (  # noqa: F401
        auth_pb2, auth_pb2_grpc, dataset_pb2, dataset_pb2_grpc, deployment_pb2, deployment_pb2_grpc, job_pb2,
        job_pb2_grpc, model_pb2, model_pb2_grpc, spec_pb2,
    )
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError("protobuf stubs missing: run `make build` (or pip install -e .)") from exc
