"""`python -m trainserve.api`: run the job API server until SIGTERM/SIGINT."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal

from trainserve.api.server import ApiConfig, is_loopback, serve
from trainserve.store import keys
from trainserve.store.redis import REDIS_PASSWORD_ENV, with_password


def main(argv=None) -> None:
    p = _parser()
    args = p.parse_args(argv)
    _check(p, args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    cfg = _config(args)
    if args.metrics_port:
        _start_metrics(cfg, args.metrics_port, args.metrics_host)
    asyncio.run(_run(cfg))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trainserve-api", description=__doc__)
    p.add_argument("--listen", default=ApiConfig.listen)
    p.add_argument("--redis-url", default=ApiConfig.redis_url)
    p.add_argument("--storage-dir", default=ApiConfig().storage_dir,
                   help="shared storage (uploaded datasets are written here)")
    p.add_argument("--max-dataset-bytes", type=int, default=ApiConfig.max_dataset_bytes)
    p.add_argument("--max-user-dataset-bytes", type=int,
                   default=ApiConfig.max_user_dataset_bytes,
                   help="uploaded dataset bytes one user may store in all")
    p.add_argument("--serve-http", default=ApiConfig.serve_http)
    p.add_argument("--serve-grpc", default=ApiConfig.serve_grpc)
    p.add_argument("--auth", action="store_true",
                   help="require bearer tokens on every RPC but health checks (the default)")
    p.add_argument("--insecure", action="store_true",
                   help="development only: no authentication, loopback only; callers are "
                        "plain users named by their x-trainserve-user metadata")
    p.add_argument("--insecure-admin", action="append", default=[], metavar="USER",
                   help="with --insecure: this asserted user name is an admin (repeatable)")
    p.add_argument("--admin-token-file", default="",
                   help="the bootstrap admin token (created, mode 0600, if missing; "
                        "registered at start unless it was revoked)")
    p.add_argument("--tls-cert", default="", help="PEM certificate chain: serve TLS")
    p.add_argument("--tls-key", default="", help="PEM private key of --tls-cert")
    p.add_argument("--tls-client-ca", default="",
                   help="PEM CA bundle: require client certificates it signed (mutual TLS)")
    p.add_argument("--max-spec-bytes", type=int, default=ApiConfig.max_spec_bytes,
                   help="largest serialized job spec SubmitJob accepts (0: no limit)")
    p.add_argument("--user-max-queued", type=int, default=ApiConfig.user_max_queued,
                   help="jobs one user may have queued (0: no limit); "
                        f"{keys.quota('<user>')} field 'queued' overrides it per user")
    p.add_argument("--user-max-streams", type=int, default=ApiConfig.user_max_streams,
                   help="open WatchJob/StreamLogs streams per user in this process (0: none)")
    p.add_argument("--max-streams", type=int, default=ApiConfig.max_streams,
                   help="open WatchJob/StreamLogs streams in all in this process (0: no limit)")
    p.add_argument("--user-max-renders", type=int, default=ApiConfig.user_max_renders,
                   help="plot renderings and model exports in progress per user (0: no limit)")
    p.add_argument("--max-renders", type=int, default=ApiConfig.max_renders,
                   help="plot renderings and model exports in progress in all, and the "
                        "threads that run them (0: no limit, one thread)")
    p.add_argument("--request-id-ttl-s", type=int, default=ApiConfig.request_id_ttl_s,
                   help="how long a request id returns its job (0: forever)")
    p.add_argument("--job-retention-s", type=int, default=ApiConfig.job_retention_s,
                   help="how long a finished job's events and worker logs are kept (0: forever)")
    p.add_argument("--metrics-port", type=int, default=9100)
    p.add_argument("--metrics-host", default="127.0.0.1")
    return p


def _check(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.insecure and args.auth:
        p.error("--insecure and --auth contradict each other")
    if args.insecure and not is_loopback(args.listen):
        p.error(f"--insecure listens on loopback only (127.0.0.1:PORT, [::1]:PORT); refusing "
                f"--listen {args.listen}: without authentication anyone who reaches the port "
                "could act as any user")
    if args.insecure_admin and not args.insecure:
        p.error("--insecure-admin needs --insecure (with authentication, roles come from "
                "tokens)")


def _config(args: argparse.Namespace) -> ApiConfig:
    redis_url = with_password(args.redis_url, os.environ.get(REDIS_PASSWORD_ENV, ""))
    return ApiConfig(listen=args.listen, redis_url=redis_url, serve_http=args.serve_http,
                     serve_grpc=args.serve_grpc, storage_dir=os.path.abspath(args.storage_dir),
                     max_dataset_bytes=args.max_dataset_bytes,
                     max_user_dataset_bytes=args.max_user_dataset_bytes, auth=not args.insecure,
                     insecure_admins=tuple(args.insecure_admin),
                     admin_token_file=args.admin_token_file, tls_cert=args.tls_cert,
                     tls_key=args.tls_key, tls_client_ca=args.tls_client_ca,
                     max_spec_bytes=args.max_spec_bytes, user_max_queued=args.user_max_queued,
                     user_max_streams=args.user_max_streams, max_streams=args.max_streams,
                     user_max_renders=args.user_max_renders, max_renders=args.max_renders,
                     request_id_ttl_s=args.request_id_ttl_s,
                     job_retention_s=args.job_retention_s)


def _start_metrics(cfg: ApiConfig, port: int, host: str) -> None:
    from prometheus_client import REGISTRY, start_http_server

    from trainserve.api.metrics import JobStateCollector, TrainingCollector
    from trainserve.store.redis import connect
    client = connect(cfg.redis_url)
    REGISTRY.register(JobStateCollector(client))
    REGISTRY.register(TrainingCollector(client))
    start_http_server(port, addr=host)


async def _run(cfg: ApiConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(cfg, stop)


if __name__ == "__main__":
    main()
