"""`python -m trainserve.console --listen 127.0.0.1:8270 --api 127.0.0.1:50051
--state-dir ~/.trainserve`: the console on loopback, a client of that job API; with a state
folder, the local stack's one-time sign-in links work (`trainserve console` prints one)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trainserve.console.settings import SESSION_IDLE_S, SESSION_MAX_S, ConsoleSettings


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
    args = p.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        p.error(f"--listen must be HOST:PORT, got {args.listen!r}")
    try:
        return ConsoleSettings(api=args.api, host=host.strip("[]"), port=int(port),
                               state_dir=args.state_dir, session_idle_s=args.session_idle_s,
                               session_max_s=args.session_max_s)
    except ValueError as exc:
        p.error(str(exc))
        raise  # unreachable: p.error exits


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from trainserve.console.app import create_app
    settings = parse_args(argv)
    print(f"trainserve console on http://{settings.host}:{settings.port} (job API "
          f"{settings.api})", file=sys.stderr, flush=True)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level="warning", server_header=False, proxy_headers=False,
                timeout_graceful_shutdown=3)


if __name__ == "__main__":
    main()
