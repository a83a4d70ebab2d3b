"""`python -m trainserve.dispatch`: run the dispatcher until SIGTERM/SIGINT."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import threading

from trainserve.core.errors import InvalidArgument
from trainserve.core.tracking import StackTracking
from trainserve.dispatch.dispatcher import Dispatcher, DispatcherConfig
from trainserve.serve.config import parse_option
from trainserve.store import keys
from trainserve.store.redis import REDIS_PASSWORD_ENV, with_password


def main(argv=None) -> None:
    p = _parser()
    args = p.parse_args(argv)
    try:
        serve_options = dict(parse_option(o) for o in args.serve_option)
    except ValueError as exc:
        p.error(f"--serve-option: {exc}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    cfg = _config(args, serve_options, _tracking(p, args))
    if args.metrics_port:
        from prometheus_client import start_http_server
        start_http_server(args.metrics_port, addr=args.metrics_host)
    _run(Dispatcher(cfg))


def _parser() -> argparse.ArgumentParser:
    d = DispatcherConfig()
    p = argparse.ArgumentParser(prog="trainserve-dispatch", description=__doc__)
    p.add_argument("--redis-url", default=d.redis_url)
    p.add_argument("--ray-address", default=d.ray_address)
    p.add_argument("--storage-dir", default=d.storage_dir)
    p.add_argument("--serve-http", default=d.serve_http)
    p.add_argument("--public-http", default="", help="HOST:PORT clients use for Serve's "
                   "REST (recorded in deployments; default: --serve-http)")
    p.add_argument("--public-grpc", default="", help="the same for Serve's gRPC "
                   "(default: --serve-grpc)")
    p.add_argument("--serve-grpc", default=d.serve_grpc)
    p.add_argument("--max-concurrent-jobs", type=int, default=d.max_concurrent_jobs)
    p.add_argument("--consumer", default=d.consumer, help="this dispatcher's name in the queue")
    p.add_argument("--no-serve", action="store_true", help="do not start Ray Serve")
    p.add_argument("--metrics-port", type=int, default=9101)
    p.add_argument("--metrics-host", default="127.0.0.1")
    p.add_argument("--inference-token-file", default=d.inference_token_file,
                   help="require bearer tokens whose SHA-256 digests this file lists on the "
                        "inference endpoints (default: open)")
    p.add_argument("--serve-option", action="append", default=[], metavar="FIELD=VALUE",
                   help="a ServeConfig field for the inference application (repeatable), "
                        "e.g. replicas=2")
    p.add_argument("--user-max-jobs", type=int, default=d.user_max_jobs,
                   help="default per-user limit of running jobs (0: none); "
                        f"{keys.quota('<user>')} overrides it per user")
    p.add_argument("--user-max-cpus", type=float, default=d.user_max_cpus,
                   help="default per-user limit of CPUs held by running jobs (0: none)")
    p.add_argument("--user-max-gpus", type=float, default=d.user_max_gpus,
                   help="default per-user limit of GPUs held by running jobs (0: none)")
    p.add_argument("--job-retention-s", type=int, default=d.job_retention_s,
                   help="how long a finished job's events and worker logs are kept (0: forever)")
    p.add_argument("--max-job-duration-s", type=float, default=d.max_job_duration_s,
                   help="wall-clock limit of a job whose spec sets none, and the most any job "
                        "gets, in seconds (default: 24 h, the most a spec may ask for)")
    p.add_argument("--tracking-mlflow-uri", default="",
                   help="the MLflow tracking server of jobs whose spec names no tracking")
    p.add_argument("--tracking-tensorboard", action="store_true",
                   help="TensorBoard event files for jobs whose spec names no tracking")
    p.add_argument("--tracking-credentials-file", default="",
                   help="MLFLOW_TRACKING_TOKEN, or _USERNAME and _PASSWORD, lines for the "
                        "--tracking-mlflow-uri server (read by the workers)")
    return p


def _tracking(p: argparse.ArgumentParser, args: argparse.Namespace) -> StackTracking:
    """The trackers of jobs whose spec names none; a bad address is a usage error."""
    try:
        return StackTracking(args.tracking_mlflow_uri, args.tracking_tensorboard,
                             args.tracking_credentials_file)
    except InvalidArgument as exc:
        p.error(f"--{exc.field.replace('_', '-')}: {exc.reason}")


def _config(args: argparse.Namespace, serve_options: dict,
            tracking: StackTracking | None = None) -> DispatcherConfig:
    # The password comes from the environment, never the command line (ps, logs).
    redis_url = with_password(args.redis_url, os.environ.get(REDIS_PASSWORD_ENV, ""))
    return DispatcherConfig(redis_url=redis_url, ray_address=args.ray_address,
                            storage_dir=args.storage_dir, serve_http=args.serve_http,
                            public_http=args.public_http, public_grpc=args.public_grpc,
                            serve_grpc=args.serve_grpc, max_concurrent_jobs=args.max_concurrent_jobs,
                            consumer=args.consumer, start_serve=not args.no_serve,
                            inference_token_file=args.inference_token_file,
                            serve_options=serve_options, user_max_jobs=args.user_max_jobs,
                            user_max_cpus=args.user_max_cpus, user_max_gpus=args.user_max_gpus,
                            max_job_duration_s=args.max_job_duration_s,
                            job_retention_s=args.job_retention_s,
                            tracking=tracking or StackTracking())


def _run(dispatcher: Dispatcher) -> None:
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    # Start-up (ray.init can block for long when Ray is unreachable) runs off the main thread,
    # so SIGTERM is still handled promptly.
    failed: list[BaseException] = []
    threading.Thread(target=_start, args=(dispatcher, done, failed), daemon=True).start()
    done.wait()
    dispatcher.shutdown()
    if failed:
        raise SystemExit(1)


def _start(dispatcher: Dispatcher, done: threading.Event, failed: list) -> None:
    try:
        dispatcher.start()
    except Exception as exc:  # noqa: BLE001 - logged, and the process exits non-zero
        logging.getLogger("trainserve.dispatch").exception("dispatcher failed to start")
        failed.append(exc)
        done.set()


if __name__ == "__main__":
    main()
