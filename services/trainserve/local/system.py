"""What the supervisor asks the operating system: the processes of a session, signals, and
whether a port is taken. Linux reads /proc; elsewhere `ps` stands in."""
from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from trainserve.core import ports


def read_from(path: str | Path, offset: int) -> str:
    """A log file's text from byte `offset` on ("" when it cannot be read)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def signal_quietly(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, session id) of a process, from /proc."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()  # the command name may contain spaces
    return fields[0], int(fields[3])


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            "utf-8", "replace")
    except OSError:
        return ""


def is_our_process(pid: int, marker: str) -> bool:
    """Alive (not a zombie), a session leader (each component is started with setsid), and
    running the command we expect."""
    if not Path("/proc").is_dir():  # not Linux: trust the pid
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False
    stat = proc_stat(pid)
    if stat is None or stat[0] in "ZX" or stat[1] != pid:
        return False
    return marker in cmdline(pid)


def session_members(sid: int) -> list[int]:
    """Live processes whose session id is `sid`."""
    if not Path("/proc").is_dir():
        out = subprocess.run(["ps", "-A", "-o", "pid=,sess=,stat="], capture_output=True,
                             text=True).stdout.split("\n")
        rows = [line.split() for line in out if line.strip()]
        return [int(p) for p, s, st in rows if int(s) == sid and not st.startswith("Z")]
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = proc_stat(int(entry))
            if stat and stat[1] == sid and stat[0] not in "ZX":
                members.append(int(entry))
    return members


def port_in_use(host: str, port: int) -> bool:
    """Whether `port` on `host` is bound by someone. SO_REUSEADDR lets a port that only has
    connections in TIME_WAIT (a component just stopped) count as free, as it is for servers."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def port_stays_in_use(host: str, port: int, settle: float) -> bool:
    """Whether `port` is still taken after `settle` seconds: the kernel releases the sockets
    of a process that was just killed a moment after the process is gone."""
    deadline = time.monotonic() + settle
    while port_in_use(host, port):
        if time.monotonic() > deadline:
            return True
        time.sleep(0.1)
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, outside the ephemeral range (`trainserve.core.ports`);
    `host` is where it will be bound (the port is free on every address)."""
    return ports.free_port()
