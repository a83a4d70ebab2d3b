"""The one Serve application, `trainserve`: the gateway in front of the model host.

One application on purpose: Serve's gRPC proxy needs an `application` metadata key once two
exist, and standard OIP clients send none.
"""
from __future__ import annotations

from ray.serve import Application

from trainserve.serve.config import ServeConfig
from trainserve.serve.gateway import Gateway
from trainserve.serve.host import ModelHost


def build_app(cfg: ServeConfig) -> Application:
    host = ModelHost.options(**cfg.host_options()).bind(cfg.loader, cfg.torch_threads)
    return Gateway.bind(host, cfg)
