"""What the control plane (the dispatcher) calls to run the serving layer on Ray.

The caller has connected to the cluster (`ray.init(address=...)`). `ensure_serve` starts
Serve and the `trainserve` application once and is a no-op while they run, so a restarted
dispatcher can call it again; `warm` loads an endpoint's model before it is reported READY.
"""
from __future__ import annotations

import logging
import time

import ray
from ray import serve
from ray.serve.config import gRPCOptions

from trainserve.core.errors import Unavailable
from trainserve.serve import config
from trainserve.serve.app import build_app
from trainserve.serve.config import APP_NAME, GRPC_SERVICER, ServeConfig
from trainserve.serve.gateway import unwrap_error

log = logging.getLogger(__name__)

__all__ = ["ServeConfig", "ensure_serve", "warm", "shutdown", "app_status", "endpoint_addresses"]

_RUNNING, _DEPLOYING = "RUNNING", "DEPLOYING"


def app_status() -> str:
    """The application's Serve status (RUNNING, DEPLOYING, ...) or NOT_STARTED."""
    return _name(serve.status().applications.get(APP_NAME))


def _name(status_info) -> str:
    status = status_info.status if status_info is not None else "NOT_STARTED"
    return str(getattr(status, "value", status))  # Serve's status enums are str-valued


def ensure_serve(cfg: ServeConfig, redeploy: bool = False) -> None:
    """Start Serve (HTTP and gRPC proxies) and the application unless running; wait for it.

    A running application deployed with the same `cfg` is left alone, so its loaded models
    stay; one deployed with another `cfg` is deployed again, as with `redeploy=True` (a code
    upgrade). Serve's ports are fixed once Serve runs: changing them needs `shutdown()` first.
    """
    if not ray.is_initialized():
        raise Unavailable("connect to Ray first: ray.init(address=...)")
    serve.start(
        http_options={"host": cfg.http_host, "port": cfg.http_port},
        grpc_options=gRPCOptions(port=cfg.grpc_port, grpc_servicer_functions=[GRPC_SERVICER]))
    status = app_status()
    if status == _RUNNING and not redeploy:
        redeploy = _running_config() != cfg
    if redeploy or status not in (_RUNNING, _DEPLOYING):
        log.info("deploying Serve application %r (was %s)", APP_NAME, status)
        serve.run(build_app(cfg), name=APP_NAME, route_prefix="/", blocking=False,
                  logging_config={"enable_access_log": cfg.access_log})
    _wait_running(cfg.ready_timeout_s)


def _running_config() -> ServeConfig | None:
    try:
        return serve.get_app_handle(APP_NAME).config.remote().result(timeout_s=30)
    except Exception as exc:  # an older gateway without `config`, or one that is stuck
        log.warning("cannot read the running application's config (%s); redeploying", exc)
        return None


def _wait_running(timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        app = serve.status().applications.get(APP_NAME)
        status = _name(app)
        if status == _RUNNING:
            return
        if status not in (_DEPLOYING, "NOT_STARTED") or time.monotonic() > deadline:
            details = "; ".join(f"{name}: {_name(d)} {d.message}".strip()
                                for name, d in (app.deployments.items() if app else []))
            raise Unavailable(f"Serve application {APP_NAME!r} is {status}"
                              f"{': ' + app.message if app and app.message else ''}"
                              f"{' (' + details + ')' if details else ''}")
        time.sleep(0.5)


def warm(endpoint: str, timeout_s: float = 120.0, canary: bool = False) -> str:
    """Load endpoint `endpoint`'s model (`canary`: the version being rolled out) on a
    model-host replica now; its `name:version`.

    Raises the domain error that explains a failure: `NotFound` (no such deployment or model
    version), `ModelNotReady` (the artifact does not load, with the loader's message).
    With several host replicas only one loads it; the others load on first use.
    """
    handle = serve.get_app_handle(APP_NAME)
    try:
        return handle.warm.remote(endpoint, canary).result(timeout_s=timeout_s)
    except Exception as exc:
        raise unwrap_error(exc) from None


def endpoint_addresses(cfg: ServeConfig, name: str) -> tuple[str, str]:
    """(REST URL, gRPC target) of endpoint `name`, for `Deployment.rest_url`/`grpc_target`."""
    return config.endpoint_addresses(f"{cfg.http_host}:{cfg.http_port}",
                                     f"{cfg.http_host}:{cfg.grpc_port}", name)


def shutdown() -> None:
    """Stop Serve: the application, its replicas and the proxies."""
    serve.shutdown()
