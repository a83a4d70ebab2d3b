"""What one console process is given (`python -m trainserve.console`'s flags). On the local
stack they come from `trainserve.local.Config` (its `console_port`, `host`, the job API's
address and the state folder) through the console's component declaration."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trainserve.core.locations import LOOPBACK

SESSION_IDLE_S = 12 * 3600.0     # signed out after this long without a request
SESSION_MAX_S = 7 * 24 * 3600.0  # and this long after signing in, whatever happens
JOBS_SHOWN = 500                 # the jobs list shows the newest this many
MAX_UPLOAD_BYTES = 256 << 20     # as the job API's default --max-dataset-bytes


@dataclass(frozen=True)
class ConsoleSettings:
    api: str                       # the job API, HOST:PORT
    host: str = "127.0.0.1"        # the address the console binds (loopback, unless HTTPS)
    port: int = 0
    # The local stack's state folder: its admin token and the one-time sign-in codes.
    # None: a console without local sign-in links (tokens only).
    state_dir: Path | None = None
    session_idle_s: float = SESSION_IDLE_S
    session_max_s: float = SESSION_MAX_S
    jobs_shown: int = JOBS_SHOWN
    # Ray's list of its metrics agents (prom_metrics_service_discovery.json): the endpoints'
    # request rate, latency and errors. None: the endpoint pages show no serving metrics.
    serving_metrics: Path | None = None
    # Or a Prometheus that scrapes Ray's metrics agents (http://HOST:PORT), where the console
    # cannot reach the agents itself (a cluster); it takes precedence over serving_metrics.
    prometheus: str | None = None
    # The largest dataset file the console takes in an upload (the job API has its own limit,
    # --max-dataset-bytes, 256 MiB by default, and refuses past it).
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    # HTTPS: the console's certificate and key (PEM files). Only with them may it bind an
    # address other than loopback: its session cookie and the tokens typed into its sign-in
    # form must never cross a network in clear.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # The names clients reach it by beyond loopback (a Service's DNS name, an Ingress host):
    # the Host header must name one of them.
    public_hosts: tuple[str, ...] = ()

    def __post_init__(self):
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give both a TLS certificate and its key, or neither")
        if self.prometheus and not self.prometheus.startswith(("http://", "https://")):
            raise ValueError(f"the Prometheus URL must be http:// or https://, not "
                             f"{self.prometheus!r}")
        if self.host not in LOOPBACK and not self.https:
            raise ValueError(f"without a TLS certificate the console serves plain HTTP and "
                             f"binds loopback only ({', '.join(LOOPBACK)}), not {self.host!r}")

    @property
    def https(self) -> bool:
        return self.tls_cert is not None

    @property
    def allowed_hosts(self) -> frozenset[str]:
        """The host names a request may name in its Host header: a page that rebinds its own
        DNS name to 127.0.0.1 sends that name, and is refused."""
        return frozenset({self.host, *LOOPBACK, *self.public_hosts})
