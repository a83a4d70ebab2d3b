"""The job API server: grpc.aio with health checking and reflection."""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from trainserve.core.locations import default_storage_dir
from trainserve.api.auth import AuthInterceptor, AuthServicer, TokenCache
from trainserve.api.interceptors import ErrorAndMetricsInterceptor
from trainserve.api.servicers import (MAX_RENDERS, MAX_STREAMS, USER_MAX_RENDERS,
                                      USER_MAX_STREAMS, DatasetServicer, DeploymentServicer,
                                      JobServicer, ModelServicer, Rendering, RenderSlots,
                                      StreamSlots, _Blocking)
from trainserve.jobs.service import MAX_SPEC_BYTES, USER_MAX_QUEUED, Admission, JobsCore
from trainserve.store.jobs import REQUEST_ID_TTL_S, RETENTION_S
from trainserve.core.pb import (auth_pb2, auth_pb2_grpc, dataset_pb2, dataset_pb2_grpc, deployment_pb2, deployment_pb2_grpc,
                           job_pb2, job_pb2_grpc, model_pb2, model_pb2_grpc)
from trainserve.registry.datasets import DEFAULT_MAX_BYTES, DEFAULT_MAX_USER_BYTES, DatasetsCore
from trainserve.registry.service import DeploymentsCore, ModelsCore
from trainserve.store.redis import check, connect
from trainserve.store.tokens import TokenStore, digest

log = logging.getLogger("trainserve.api")
# The largest request the API reads: a 1 MiB upload chunk (the client's size) with room for
# its framing; a spec is far smaller (MAX_SPEC_BYTES). gRPC refuses more, RESOURCE_EXHAUSTED.
MAX_MESSAGE_BYTES = (1 << 20) + (64 << 10)
SERVICES = ("trainserve.v1.JobService", "trainserve.v1.ModelService",
            "trainserve.v1.DeploymentService", "trainserve.v1.DatasetService",
            "trainserve.v1.AuthService")


@dataclass
class ApiConfig:
    listen: str = "127.0.0.1:50051"
    redis_url: str = "redis://127.0.0.1:6380/0"
    serve_http: str = "127.0.0.1:8000"
    serve_grpc: str = "127.0.0.1:9000"
    # Where uploaded datasets are stored (shared with the training workers).
    storage_dir: str = field(default_factory=lambda: str(default_storage_dir()))
    max_dataset_bytes: int = DEFAULT_MAX_BYTES
    # Uploaded dataset bytes one user may store in all (RESOURCE_EXHAUSTED past it).
    max_user_dataset_bytes: int = DEFAULT_MAX_USER_BYTES
    # Threads for blocking Redis calls, and apart from them the threads of live
    # WatchJob/StreamLogs streams (each step of a stream holds one for up to a second).
    threads: int = 64
    stream_threads: int = 64
    # Admission (jobs.service.Admission; 0: no limit): a spec's serialized size; the jobs one
    # user may have queued (`ts:quota:<user>` field `queued` overrides it); how long a request
    # id returns its job; how long a finished job's events and worker logs are kept.
    max_spec_bytes: int = MAX_SPEC_BYTES
    user_max_queued: int = USER_MAX_QUEUED
    request_id_ttl_s: int = REQUEST_ID_TTL_S
    job_retention_s: int = RETENTION_S
    # Open WatchJob/StreamLogs streams per user, and in all, in this process (0: no limit).
    user_max_streams: int = USER_MAX_STREAMS
    max_streams: int = MAX_STREAMS
    # Plot renderings and model exports in progress per user, and in all (also the threads
    # of their own pool), in this process.
    user_max_renders: int = USER_MAX_RENDERS
    max_renders: int = MAX_RENDERS
    # Bearer tokens on every RPC but health checks (api/auth.py). Off (`--insecure`, a
    # development mode): callers are plain users by the name they assert, and the server
    # listens on loopback only.
    auth: bool = True
    # With auth off: the asserted user names that are admins (none by default).
    insecure_admins: tuple[str, ...] = ()
    # With `auth`: a file holding the admin token the local CLI uses; created (mode 0600)
    # with a new token when missing, and its token registered as the admin "admin".
    admin_token_file: str = ""
    # TLS: the server's certificate chain and key (PEM files); with `tls_client_ca` too,
    # clients must present a certificate that CA signed (mutual TLS).
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""

    def __post_init__(self):
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key go together")
        if self.tls_client_ca and not self.tls_cert:
            raise ValueError("tls_client_ca (mutual TLS) needs tls_cert and tls_key")
        if not self.auth and not is_loopback(self.listen):
            raise ValueError(f"without authentication the job API listens on loopback only "
                             f"(127.0.0.1, ::1, localhost), not {self.listen!r}: turn "
                             "authentication on, or listen on 127.0.0.1:PORT")


def is_loopback(listen: str) -> bool:
    """Whether the HOST:PORT `listen` binds a loopback address only."""
    host = listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_server(cfg: ApiConfig) -> tuple[grpc.aio.Server, int, health.HealthServicer]:
    """Build the server bound to `cfg.listen` (port 0 picks a free one); not started."""
    client = connect(cfg.redis_url)
    check(client)
    run = _Blocking(ThreadPoolExecutor(cfg.threads, thread_name_prefix="api-redis"))
    tokens = _token_store(client, cfg)
    token_cache = TokenCache()
    server = grpc.aio.server(interceptors=[ErrorAndMetricsInterceptor(),
                                           AuthInterceptor(tokens, token_cache,
                                                             frozenset(cfg.insecure_admins))],
                             options=[("grpc.so_reuseport", 0),
                                      ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])
    render = Rendering(RenderSlots(cfg.user_max_renders, cfg.max_renders),
                       _Blocking(ThreadPoolExecutor(max(1, cfg.max_renders),
                                                    thread_name_prefix="api-render")))
    jobs = JobsCore(client, cfg.storage_dir, Admission(
        cfg.max_spec_bytes, cfg.user_max_queued, cfg.request_id_ttl_s, cfg.job_retention_s))
    job_pb2_grpc.add_JobServiceServicer_to_server(
        JobServicer(jobs, run, StreamSlots(cfg.user_max_streams, cfg.max_streams),
                    _Blocking(ThreadPoolExecutor(cfg.stream_threads,
                                                 thread_name_prefix="api-stream")),
                    render), server)
    model_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelServicer(ModelsCore(client, cfg.storage_dir), run, render), server)
    deps = DeploymentsCore(client, cfg.serve_http, cfg.serve_grpc)
    deployment_pb2_grpc.add_DeploymentServiceServicer_to_server(DeploymentServicer(deps, run),
                                                                server)
    datasets = DatasetsCore(client, cfg.storage_dir, cfg.max_dataset_bytes,
                            cfg.max_user_dataset_bytes)
    dataset_pb2_grpc.add_DatasetServiceServicer_to_server(DatasetServicer(datasets, run), server)
    auth_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(tokens, run, token_cache),
                                                  server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [job_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
             model_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name,
             deployment_pb2.DESCRIPTOR.services_by_name["DeploymentService"].full_name,
             dataset_pb2.DESCRIPTOR.services_by_name["DatasetService"].full_name,
             auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
             health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)
    port = (server.add_secure_port(cfg.listen, _tls_credentials(cfg)) if cfg.tls_cert
            else server.add_insecure_port(cfg.listen))
    if port == 0:
        raise OSError(f"cannot listen on {cfg.listen}: address in use or not available")
    return server, port, health_servicer


def _token_store(client, cfg: ApiConfig) -> TokenStore | None:
    if not cfg.auth:
        return None
    tokens = TokenStore(client)
    if cfg.admin_token_file:
        token = ensure_token_file(Path(cfg.admin_token_file))
        if tokens.is_revoked(digest(token)):  # revoked stays revoked, across restarts
            log.warning("the admin token in %s was revoked; it is not registered again "
                        "(delete the file to have a new one made)", cfg.admin_token_file)
        else:
            tokens.add(digest(token), "admin", "admin", "local admin (admin_token_file)")
    return tokens


def ensure_token_file(path: Path) -> str:
    """The token in `path`, written first (a new one, mode 0600) if the file is missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("tsk_" + secrets.token_urlsafe(32) + "\n")
    token = path.read_text().strip()
    if not token:
        raise ValueError(f"{path} is empty; delete it to have a new admin token made")
    return token


def _tls_credentials(cfg: ApiConfig) -> grpc.ServerCredentials:
    key, cert = Path(cfg.tls_key).read_bytes(), Path(cfg.tls_cert).read_bytes()
    ca = Path(cfg.tls_client_ca).read_bytes() if cfg.tls_client_ca else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                       require_client_auth=ca is not None)


async def serve(cfg: ApiConfig, stop: asyncio.Event | None = None) -> None:
    server, port, health_servicer = create_server(cfg)
    from trainserve.jobs.budget import warm
    warm()  # torch for the model-size check: loaded now, not on a user's first SubmitJob
    await server.start()
    for name in ("", *SERVICES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("job API listening on %s (port %d)", cfg.listen, port)
    stop = stop or asyncio.Event()
    await stop.wait()
    for name in ("", *SERVICES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.stop(grace=5)
