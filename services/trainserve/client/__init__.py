"""The Python SDK: `trainserve.Client` over the job API (gRPC) and the inference endpoints
(Open Inference Protocol v2, REST)::

    from trainserve import Client

    with Client() as ts:                              # $TRAINSERVE_API or 127.0.0.1:50051
        job = ts.submit("examples/xor_mlp.yaml")       # a spec file, a dict or a JobSpec
        job = ts.wait(job.id)
        ts.deploy(job.model_name, name="xor")
        ts.predict("xor", [[0, 1], [1, 1]])           # {"probabilities": ..., "label": ...}

Every error the server reports is raised as the matching `trainserve.core.errors` exception
(`InvalidArgument` with its `field`, `NotFound`, ...) carrying the server's message.

The package: `sdk` (the `Client`), `transport` (channel, TLS, tokens, retries), `errors`
(status codes to exceptions), `inference` (OIP v2 REST encoding), `messages` (specs, states),
`events` (what `Client.watch` yields: `WatchEvent`, readable when printed).
It imports nothing of the server's: only `trainserve.core` and the generated messages.
"""
from trainserve.client.errors import DeploymentFailed, NotSupported
from trainserve.client.events import WatchEvent
from trainserve.client.inference import (INFERENCE_TOKEN_ENV, infer_request, outputs_to_numpy,
                                         rest_base)
from trainserve.client.messages import (DEPLOYMENT_DONE, TERMINAL_STATES, SpecLike, job_state,
                                        load_spec)
from trainserve.client.sdk import Client
from trainserve.client.transport import (ALLOW_INSECURE_TOKEN_ENV, TlsFiles, api_channel,
                                         check_token_transport)

__all__ = [
    "ALLOW_INSECURE_TOKEN_ENV", "DEPLOYMENT_DONE", "INFERENCE_TOKEN_ENV", "TERMINAL_STATES",
    "Client", "DeploymentFailed", "NotSupported", "SpecLike", "TlsFiles", "api_channel",
    "check_token_transport", "infer_request", "job_state", "load_spec", "outputs_to_numpy",
    "rest_base", "WatchEvent",
]
