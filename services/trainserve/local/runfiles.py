"""What the local stack keeps on disk about its components: `<state>/run/<name>.pid` and
`<name>.json` (how it was started), `<state>/logs/<name>.log`, and `<state>/run/stack.json`,
the settings it runs with. All its state is there, so that any process (`trainserve status`
after `trainserve up`) sees the same stack."""
from __future__ import annotations

import json
from pathlib import Path

from trainserve.core.locations import stack_file
from trainserve.local.settings import Config
from trainserve.local.system import read_from


class RunFiles:
    """The pid files, start records and logs of the stack in `config.state_dir`."""

    def __init__(self, config: Config):
        self.config = config

    def pid_path(self, name: str) -> Path:
        return self.config.run_dir / f"{name}.pid"

    def log_path(self, name: str) -> Path:
        return self.config.logs_dir / f"{name}.log"

    def recorded_pid(self, name: str) -> int | None:
        """The pid in the pid file, whether or not that process still runs."""
        try:
            return int(self.pid_path(name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def write(self, name: str, pid: int, meta: dict) -> None:
        self.config.run_dir.mkdir(parents=True, exist_ok=True)
        self._meta_path(name).write_text(json.dumps(meta, indent=1))
        self.pid_path(name).write_text(f"{pid}\n")

    def meta(self, name: str) -> dict:
        """What was recorded when `name` last started (its command, log offset, ...)."""
        try:
            return json.loads(self._meta_path(name).read_text())
        except (OSError, ValueError):
            return {}

    def clear(self, name: str) -> None:
        self.pid_path(name).unlink(missing_ok=True)

    def record_config(self) -> None:
        path = stack_file(self.config.state_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.config.to_dict(), indent=1))

    def log_since_start(self, name: str) -> str:
        """What `name` logged since it last started."""
        return read_from(self.log_path(name), self.meta(name).get("log_offset", 0))

    def tail(self, name: str, lines: int = 25) -> str:
        text = self.log_since_start(name).rstrip().splitlines()[-lines:]
        body = "\n".join(f"  {line}" for line in text) or "  (empty)"
        return f"last lines of {self.log_path(name)}:\n{body}"

    def _meta_path(self, name: str) -> Path:
        return self.config.run_dir / f"{name}.json"
