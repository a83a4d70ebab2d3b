"""Model serving: the Open Inference Protocol v2 (REST and gRPC) on Ray Serve.

Layout, transport-neutral first:

- `dataplane`   wire-independent request/response types, OIP datatypes and tensor codecs,
                `ModelSignature` (what a model accepts) and its validation.
- `task_io`     per task: request forms, request parameters (seed, ...), value checks.
- `predictor`   a loaded model: preprocessing, forward pass, task-specific outputs.
- `resolver`    endpoint name -> model version (Redis records, briefly cached).
- `service`     `InferenceService`: the operations both transports share.
- `rest`, `grpc_api`  thin adapters between the wire formats and the service.
- `host`, `gateway`, `app`  the Ray Serve deployments and the one application.
- `config`, `control`  `ServeConfig`; `ensure_serve`, `warm`, `shutdown` (the dispatcher's).
- `testing`     in-memory stand-ins (records, artifacts) for tests and local tools.
"""
