"""`python -m trainserve.console --listen 127.0.0.1:8270 --api 127.0.0.1:50051
--state-dir ~/.trainserve`: the console on loopback, a client of that job API; with a state
folder, the local stack's one-time sign-in links work (`trainserve console` prints one).

In a cluster (the Helm chart) it serves HTTPS on every address: `--listen 0.0.0.0:8270
--tls-cert tls.crt --tls-key tls.key --public-host NAME`; it trusts the job API's
certificate through `$TRAINSERVE_TLS_CA`, as every SDK client does."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trainserve.console.settings import (MAX_UPLOAD_BYTES, SESSION_IDLE_S, SESSION_MAX_S,
                                         ConsoleSettings)


def parse_args(argv: list[str] | None = None) -> ConsoleSettings:
    p = argparse.ArgumentParser(prog="python -m trainserve.console",
                                description="The trainserve web console.")
    p.add_argument("--listen", required=True, metavar="HOST:PORT",
                   help="Where to serve (loopback only), e.g. 127.0.0.1:8270.")
    p.add_argument("--api", required=True, metavar="HOST:PORT", help="The job API.")
    p.add_argument("--state-dir", type=Path, default=None,
                   help="The local stack's state folder: its admin token and the one-time "
                        "sign-in links (default: none; sign in with a token).")
    p.add_argument("--session-idle-s", type=float, default=SESSION_IDLE_S,
                   help="Sign out after this many seconds without a request (default 12 h).")
    p.add_argument("--session-max-s", type=float, default=SESSION_MAX_S,
                   help="Sign out this many seconds after signing in (default 7 days).")
    p.add_argument("--tls-cert", type=Path, default=None,
                   help="Serve HTTPS with this certificate (PEM); required to listen on an "
                        "address other than loopback.")
    p.add_argument("--tls-key", type=Path, default=None, help="The certificate's key (PEM).")
    p.add_argument("--public-host", action="append", default=[], metavar="NAME",
                   help="A name clients reach the console by (repeatable): requests whose "
                        "Host header names anything else, or loopback, are refused.")
    p.add_argument("--serving-metrics", type=Path, default=None, metavar="FILE",
                   help="Ray's list of its metrics agents (prom_metrics_service_discovery.json "
                        "in Ray's temp folder): the endpoints' requests, latency and errors.")
    p.add_argument("--prometheus", default=None, metavar="URL",
                   help="A Prometheus that scrapes Ray's metrics agents (http://HOST:PORT), "
                        "read instead of the agents themselves (a cluster's console).")
    p.add_argument("--max-upload-bytes", type=int, default=MAX_UPLOAD_BYTES,
                   help="The largest dataset file an upload may send (default 256 MiB).")
    args = p.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        p.error(f"--listen must be HOST:PORT, got {args.listen!r}")
    try:
        return ConsoleSettings(api=args.api, host=host.strip("[]"), port=int(port),
                               state_dir=args.state_dir, session_idle_s=args.session_idle_s,
                               session_max_s=args.session_max_s, tls_cert=args.tls_cert,
                               tls_key=args.tls_key, public_hosts=tuple(args.public_host),
                               serving_metrics=args.serving_metrics,
                               prometheus=args.prometheus,
                               max_upload_bytes=args.max_upload_bytes)
    except ValueError as exc:
        p.error(str(exc))
        raise  # unreachable: p.error exits


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from trainserve.console.app import create_app
    settings = parse_args(argv)
    scheme = "https" if settings.https else "http"
    print(f"trainserve console on {scheme}://{settings.host}:{settings.port} (job API "
          f"{settings.api})", file=sys.stderr, flush=True)
    tls = ({"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}
           if settings.https else {})
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, **tls,
                log_level="warning", server_header=False, proxy_headers=False,
                timeout_graceful_shutdown=3)


if __name__ == "__main__":
    main()
