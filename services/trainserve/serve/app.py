"""The one Serve application, `trainserve`: the gateway, which runs the models itself
(`ServeConfig.colocate_models`, the default) or sits in front of the model host.

One application on purpose: Serve's gRPC proxy needs an `application` metadata key once two
exist, and standard OIP clients send none.
"""
from __future__ import annotations

from ray.serve import Application

from trainserve.serve.config import ServeConfig
from trainserve.serve.gateway import Gateway


def build_app(cfg: ServeConfig) -> Application:
    if cfg.colocate_models:
        return Gateway.options(**cfg.host_options()).bind(None, cfg)
    # Imported here: the model host imports torch (a second or more), which the process
    # that deploys the default application (the dispatcher, starting up) does not need.
    from trainserve.serve.host import ModelHost
    host = ModelHost.options(**cfg.host_options()).bind(cfg.loader, cfg.torch_threads)
    return Gateway.bind(host, cfg)
