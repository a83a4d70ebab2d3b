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


@dataclass(frozen=True)
class ConsoleSettings:
    api: str                       # the job API, HOST:PORT
    host: str = "127.0.0.1"        # the address the console binds (loopback only)
    port: int = 0
    # The local stack's state folder: its admin token and the one-time sign-in codes.
    # None: a console without local sign-in links (tokens only).
    state_dir: Path | None = None
    session_idle_s: float = SESSION_IDLE_S
    session_max_s: float = SESSION_MAX_S
    jobs_shown: int = JOBS_SHOWN

    def __post_init__(self):
        if self.host not in LOOPBACK:
            raise ValueError(f"the console serves plain HTTP and binds loopback only "
                             f"({', '.join(LOOPBACK)}), not {self.host!r}")

    @property
    def allowed_hosts(self) -> frozenset[str]:
        """The host names a request may name in its Host header: a page that rebinds its own
        DNS name to 127.0.0.1 sends that name, and is refused."""
        return frozenset({self.host, *LOOPBACK})
