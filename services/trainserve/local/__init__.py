"""The one-machine stack: a real redis-server, a real Ray head, the job API and the dispatcher
(which starts Ray Serve inside the Ray cluster), each a detached process of its own; with
`Config.with_prometheus` also a Prometheus scraping them all.

- `settings`: `Config`, the one typed object that owns every setting (the flags of
  `trainserve up`, the TRAINSERVE_* variables, what Serve is given, the chart's values);
- `components`: one declaration per component (its command line, what it needs first, its
  readiness check, its ports, its stop grace);
- `supervisor`: `LocalStack`, which starts, waits for, stops and reports them;
- `runfiles`, `system`: its pid files and logs, and what it asks the operating system.

`trainserve up/down/restart/status` drive it, and so do the integration tests, which start
it on free ports in a temporary folder and stop or SIGKILL single components::

    stack = LocalStack(Config(state_dir=tmp, api_port=..., ...))
    stack.up()                     # redis, ray, api, dispatcher; each waited for
    stack.kill("dispatcher")       # SIGKILL, like a crash
    stack.start("dispatcher")
    stack.down()

Each component runs in a new session (`start_new_session`), so its session id is its pid:
stopping a component signals exactly the processes of that session (for Ray: the head's
GCS, raylet, dashboard, agents and every worker, Serve's replicas included) and nothing else.
Logs go to `<state>/logs/<name>.log`, pids to `<state>/run/<name>.pid`.
"""
from __future__ import annotations

from trainserve.local.component import (Component, Launch, LocalStackError, PortInUse,
                                        PortUse, secret_file)
from trainserve.local.components import (ALL_COMPONENTS, COMPONENTS, DECLARED,
                                         OPTIONAL_COMPONENTS, declared)
from trainserve.local.components.ray import RAY_STARTED_LINE
from trainserve.local.components.redis import redis_conf
from trainserve.core.locations import default_state_dir, stack_file
from trainserve.local.settings import Config, port_settings, recorded_config
from trainserve.local.supervisor import ComponentStatus, LocalStack
from trainserve.local.system import (cmdline, free_port, port_in_use, proc_stat, read_from,
                                     session_members, signal_quietly)

__all__ = [
    "ALL_COMPONENTS", "COMPONENTS", "Component", "ComponentStatus", "Config", "DECLARED",
    "Launch", "LocalStack", "LocalStackError", "OPTIONAL_COMPONENTS", "PortInUse", "PortUse",
    "RAY_STARTED_LINE", "cmdline", "declared", "default_state_dir", "free_port",
    "port_in_use", "port_settings", "proc_stat", "read_from", "recorded_config", "redis_conf", "secret_file",
    "session_members", "signal_quietly", "stack_file",
]
