"""A Ray cluster of several nodes on this one machine: a head and worker nodes, each a
`ray start --block` of its own (the workers join with `ray start --address`), on loopback,
with Ray token authentication (one token for every node and driver).

Each node has its own CPUs, custom resources and labels, its own Ray temp folder (sockets,
session logs) and its own ports: several raylets on one host must not share the node-manager,
object-manager, metrics-export, dashboard-agent or runtime-env-agent ports, and take their
workers' ports from the OS. By default the head offers no CPUs, so every training worker
runs on a worker node, and two 1-CPU workers of one job must land on two nodes.

From the command line (state in `--dir`, default `$TRAINSERVE_CLUSTER_DIR` or
`~/.trainserve-cluster`)::

    python cluster/local_cluster.py up --workers 2 --worker-cpus 1
    trainserve up --ray-address 127.0.0.2:6379 --ray-token-file ~/.trainserve-cluster/auth-token
    python cluster/local_cluster.py status
    python cluster/local_cluster.py down

From Python (the integration tests)::

    cluster = LocalCluster(tmp, workers=worker_nodes(3))
    cluster.start()
    cluster.address, cluster.token_path, cluster.driver_env()
    cluster.kill_node("worker-2")   # SIGKILL the node's raylet and workers, like a lost machine
    cluster.stop()

Each node runs in a new session (`start_new_session`), so its session id is the pid of its
`ray start` and stopping or killing a node signals exactly its processes (raylet, agents,
workers). Logs: `<dir>/logs/<node>.log`; the nodes and their pids: `<dir>/cluster.json`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from trainserve.local import cmdline, proc_stat, read_from, session_members, signal_quietly
from trainserve.core.ports import free_port

RAY_STARTED_LINE = "Ray runtime started"
# The label every node carries with its name, so that Ray's node list says which is which.
NODE_LABEL = "trainserve.io/node"
ROLE_LABEL = "trainserve.io/role"
# A custom resource only the worker nodes offer (one unit each): pin work to workers with it.
WORKER_RESOURCE = "trainserve_worker"
# Loopback, but not 127.0.0.1: Ray swaps 127.0.0.1 and localhost for the machine's network
# address (so every raylet would bind that) unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, the
# one-node switch, which in turn refuses `ray start --address`. Linux routes all of 127/8 to lo.
DEFAULT_HOST = "127.0.0.2"


class ClusterError(RuntimeError):
    """A node could not be started; the message carries the tail of its log."""


@dataclass(frozen=True)
class NodeSpec:
    """One node: its name, CPUs, custom resources (`--resources`) and labels (`--labels`)."""
    name: str
    num_cpus: int = 1
    resources: Mapping[str, float] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)

    def all_labels(self, role: str) -> dict[str, str]:
        return {ROLE_LABEL: role, NODE_LABEL: self.name, **self.labels}


def worker_nodes(count: int, num_cpus: int = 1) -> list[NodeSpec]:
    """`count` alike worker nodes, `worker-1` .. `worker-<count>`, each with `num_cpus` CPUs
    and one unit of `WORKER_RESOURCE`."""
    return [NodeSpec(f"worker-{i}", num_cpus, {WORKER_RESOURCE: 1.0}) for i in range(1, count + 1)]


def default_dir() -> Path:
    return Path(os.environ.get("TRAINSERVE_CLUSTER_DIR") or
                Path.home() / ".trainserve-cluster").expanduser()


class LocalCluster:
    """Start, stop, inspect the nodes of a local multi-node Ray cluster recorded in `root`."""

    HEAD = "head"

    def __init__(self, root: Path | str, workers: list[NodeSpec] | None = None,
                 head: NodeSpec | None = None, host: str = DEFAULT_HOST, port: int = 0,
                 dashboard_port: int = 0, fast_failure_detection: bool = True,
                 env: Mapping[str, str] | None = None):
        self.root = Path(root).expanduser().absolute()
        self.workers = list(workers if workers is not None else worker_nodes(2))
        self.head = head or NodeSpec(self.HEAD, num_cpus=0)
        self.host = host
        self.port = port or free_port()
        self.dashboard_port = dashboard_port or free_port()
        # A dead raylet is declared dead after ~3 s instead of Ray's default ~15 s (its
        # health checks); nodes on one machine have no network to be patient with.
        self.fast_failure_detection = fast_failure_detection
        # Extra environment of every node's processes (Ray workers inherit it).
        self.env = dict(env or {})
        names = [self.head.name] + [w.name for w in self.workers]
        if len(set(names)) != len(names):
            raise ValueError(f"node names must differ, got {names}")
        self._procs: dict[str, subprocess.Popen] = {}

    # -- recorded state ---------------------------------------------------------------------
    @classmethod
    def load(cls, root: Path | str) -> "LocalCluster":
        """The cluster `start` recorded in `root`."""
        doc = json.loads((Path(root) / "cluster.json").read_text())
        spec = lambda d: NodeSpec(**d)  # noqa: E731
        return cls(root, [spec(w) for w in doc["workers"]], spec(doc["head"]), doc["host"],
                   doc["port"], doc["dashboard_port"], doc["fast_failure_detection"])

    def _record(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        doc = {"host": self.host, "port": self.port, "dashboard_port": self.dashboard_port,
               "fast_failure_detection": self.fast_failure_detection,
               "head": _spec_dict(self.head), "workers": [_spec_dict(w) for w in self.workers]}
        (self.root / "cluster.json").write_text(json.dumps(doc, indent=1))

    # -- addresses --------------------------------------------------------------------------
    @property
    def address(self) -> str:
        """The head's GCS: `ray.init(address=...)`, `ray start --address=...`."""
        return f"{self.host}:{self.port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.host}:{self.dashboard_port}"

    @property
    def token_path(self) -> Path:
        """The cluster's Ray auth token (mode 0600), shared by every node and driver."""
        return self.root / "auth-token"

    @property
    def nodes(self) -> list[NodeSpec]:
        return [self.head, *self.workers]

    def node(self, name: str) -> NodeSpec:
        for spec in self.nodes:
            if spec.name == name:
                return spec
        raise ValueError(f"no node {name!r}; nodes: {', '.join(n.name for n in self.nodes)}")

    def log_path(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def temp_dir(self, name: str) -> Path:
        """The node's own Ray temp folder; short, as Ray's unix socket paths must stay under
        107 bytes."""
        digest = hashlib.sha1(str(self.root).encode()).hexdigest()[:8]
        return Path("/tmp") / f"tsc-{digest}" / name

    def driver_env(self) -> dict[str, str]:
        """What a Ray driver (the dispatcher, a test) needs in its environment to connect."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path)}

    # -- start and stop ---------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> None:
        """Start the head, then every worker node; each waited for. On a failure whatever
        started is stopped again and `ClusterError` raised."""
        self._ensure_token()
        self._record()
        try:
            for spec in self.nodes:
                if not self.is_running(spec.name):
                    self.start_node(spec.name, timeout)
        except BaseException:
            self.stop(grace=5)
            raise

    def start_node(self, name: str, timeout: float = 120.0) -> None:
        """Start one node (e.g. again after `kill_node`) and wait until it has joined."""
        spec = self.node(name)
        log_path = self.log_path(name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = self._command(spec)
        with open(log_path, "ab") as log:
            offset = log.tell()
            log.write(f"==== starting {name} at {time.ctime()}: {' '.join(cmd)}\n".encode())
            log.flush()
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=self._node_env(spec),
                                    start_new_session=True, cwd=self.root)
        self._procs[name] = proc
        self._pid_path(name).write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + timeout
        while RAY_STARTED_LINE not in self._log_since(name, offset):
            if proc.poll() is not None or time.monotonic() > deadline:
                how = (f"exited with code {proc.returncode}" if proc.returncode is not None
                       else f"was not up after {timeout:g}s")
                self.kill_node(name)
                raise ClusterError(f"Ray node {name} {how}\n{self._tail(name, offset)}")
            time.sleep(0.2)

    def stop(self, grace: float = 15.0) -> list[str]:
        """Stop every node, workers first; returns the names that were running."""
        stopped = []
        for spec in reversed(self.nodes):
            if self.stop_node(spec.name, grace):
                stopped.append(spec.name)
        if not any(self.is_running(n.name) for n in self.nodes):
            shutil.rmtree(self.temp_dir(self.HEAD).parent, ignore_errors=True)
        return stopped

    def stop_node(self, name: str, grace: float = 15.0) -> bool:
        pid = self.pid(name)
        if pid is None:
            return False
        signal_quietly(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while session_members(pid) and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.1)
        self._kill_session(pid)
        self._pid_path(name).unlink(missing_ok=True)
        return True

    def kill_node(self, name: str) -> bool:
        """SIGKILL every process of the node at once (its raylet, agents and workers): the
        node is lost as when its machine dies. False if it was not running."""
        pid = self.pid(name)
        if pid is None:
            return False
        self._kill_session(pid)
        self._pid_path(name).unlink(missing_ok=True)
        return True

    # -- inspection -------------------------------------------------------------------------
    def pid(self, name: str) -> int | None:
        """The node's `ray start` (its session leader), or None when it is not running."""
        self._reap()
        try:
            pid = int(self._pid_path(name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        stat = proc_stat(pid)
        if stat is None or stat[0] in "ZX" or stat[1] != pid:
            return None
        return pid if str(self.temp_dir(name)) in cmdline(pid) else None

    def is_running(self, name: str) -> bool:
        return self.pid(name) is not None

    def session_pids(self, name: str) -> list[int]:
        """Every live process of the node: `ray start`, raylet, agents, Ray workers."""
        pid = self.pid(name)
        return session_members(pid) if pid else []

    def node_of_pid(self, pid: int) -> str | None:
        """The name of the node whose session `pid` belongs to, if any."""
        stat = proc_stat(pid)
        for spec in self.nodes:
            if stat is not None and stat[1] == self.pid(spec.name):
                return spec.name
        return None

    def list_state(self, kind: str, limit: int = 1000, **filters: str) -> list[dict]:
        """Ray's state API (`ray list actors|nodes|tasks|...`) through the head's dashboard,
        with the cluster's token, e.g. `list_state("actors", class_name="RayTrainWorker")`
        (dead actors included: filter on `state="ALIVE"` for the live ones)."""
        query = [("limit", str(limit)), ("detail", "1")]
        for key, value in filters.items():
            query += [("filter_keys", key), ("filter_predicates", "="),
                      ("filter_values", str(value))]
        request = urllib.request.Request(
            f"{self.dashboard_url}/api/v0/{kind}?{urllib.parse.urlencode(query)}",
            headers={"Authorization": f"Bearer {self.token_path.read_text().strip()}"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=30) as resp:
            doc = json.loads(resp.read())
        if not doc.get("result"):
            raise ClusterError(f"Ray's state API refused `list {kind}`: {doc.get('msg')}")
        return doc["data"]["result"]["result"]

    def node_names(self) -> dict[str, str]:
        """Ray node id -> our node name (from the node's label), for every node Ray knows,
        dead ones included."""
        return {n["node_id"]: n.get("labels", {}).get(NODE_LABEL, "?")
                for n in self.list_state("nodes")}

    def status(self) -> list[dict]:
        return [{"node": spec.name, "running": self.is_running(spec.name),
                 "pid": self.pid(spec.name), "num_cpus": spec.num_cpus,
                 "resources": dict(spec.resources),
                 "labels": spec.all_labels("head" if spec is self.head else "worker"),
                 "log": str(self.log_path(spec.name))} for spec in self.nodes]

    # -- internals --------------------------------------------------------------------------
    def _command(self, spec: NodeSpec) -> list[str]:
        ray = Path(sys.executable).with_name("ray")
        is_head = spec is self.head
        labels = spec.all_labels("head" if is_head else "worker")
        port = lambda: str(free_port())  # noqa: E731
        cmd = [str(ray) if ray.exists() else (shutil.which("ray") or "ray"), "start",
               "--block", "--disable-usage-stats", f"--node-ip-address={self.host}",
               f"--temp-dir={self.temp_dir(spec.name)}", f"--num-cpus={spec.num_cpus}",
               "--num-gpus=0", f"--labels={','.join(f'{k}={v}' for k, v in labels.items())}",
               # Fixed by default or chosen per node from one file in the temp folder: on a
               # shared host each raylet needs ports of its own.
               f"--node-manager-port={port()}", f"--object-manager-port={port()}",
               f"--metrics-export-port={port()}", f"--dashboard-agent-listen-port={port()}",
               f"--dashboard-agent-grpc-port={port()}", f"--runtime-env-agent-port={port()}",
               # Workers bind OS-chosen ports instead of Ray's shared 10002-19999 range.
               "--min-worker-port=0", "--max-worker-port=0"]
        if spec.resources:
            cmd.append(f"--resources={json.dumps(dict(spec.resources))}")
        if is_head:
            cmd += ["--head", f"--port={self.port}", "--include-dashboard=true",
                    f"--dashboard-host={self.host}", f"--dashboard-port={self.dashboard_port}",
                    f"--ray-client-server-port={port()}"]
        else:
            cmd.append(f"--address={self.address}")
        return cmd

    def _node_env(self, spec: NodeSpec) -> dict[str, str]:
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env, **self.driver_env())
        for name in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"):
            env.pop(name, None)  # one-node switches and another cluster's address or token
        env.setdefault("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "0")
        if spec is self.head:
            # Fixed by default (44217, 44227): a second cluster or stack would collide.
            env["AUTOSCALER_METRIC_PORT"] = str(free_port())
            env["DASHBOARD_METRIC_PORT"] = str(free_port())
            if self.fast_failure_detection:
                env.setdefault("RAY_health_check_period_ms", "1000")
                env.setdefault("RAY_health_check_timeout_ms", "1000")
                env.setdefault("RAY_health_check_failure_threshold", "3")
        return env

    def _ensure_token(self) -> None:
        if self.token_path.exists():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))

    def _pid_path(self, name: str) -> Path:
        return self.root / f"{name}.pid"

    def _reap(self) -> None:
        for proc in self._procs.values():
            proc.poll()

    def _log_since(self, name: str, offset: int) -> str:
        return read_from(self.log_path(name), offset)

    def _tail(self, name: str, offset: int, lines: int = 25) -> str:
        text = self._log_since(name, offset).rstrip().splitlines()[-lines:]
        return f"last lines of {self.log_path(name)}:\n" + "\n".join(f"  {t}" for t in text)

    def _kill_session(self, sid: int) -> None:
        for _ in range(50):  # a dying parent may still fork; repeat until the session is empty
            members = session_members(sid)
            if not members:
                return
            for member in members:
                signal_quietly(member, signal.SIGKILL)
            time.sleep(0.1)
            self._reap()
        raise ClusterError(f"processes of session {sid} survive SIGKILL: "
                           f"{session_members(sid)}")


# -- process helpers (Linux /proc) ------------------------------------------------------------

def _spec_dict(spec: NodeSpec) -> dict:
    return {"name": spec.name, "num_cpus": spec.num_cpus, "resources": dict(spec.resources),
            "labels": dict(spec.labels)}


# -- command line -----------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="A multi-node Ray cluster on this machine.")
    p.add_argument("command", choices=("up", "down", "status"))
    p.add_argument("--dir", type=Path, default=default_dir(),
                   help="state: token, logs, pids (default: $TRAINSERVE_CLUSTER_DIR or "
                        "~/.trainserve-cluster)")
    p.add_argument("--workers", type=int, default=2, help="worker nodes (default 2)")
    p.add_argument("--worker-cpus", type=int, default=1, help="CPUs per worker node")
    p.add_argument("--head-cpus", type=int, default=0,
                   help="CPUs of the head (default 0: all training on the workers)")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"the nodes' address (default {DEFAULT_HOST}, loopback)")
    p.add_argument("--port", type=int, default=6379, help="the head's GCS port")
    p.add_argument("--dashboard-port", type=int, default=8265)
    p.add_argument("--timeout", type=float, default=120.0)
    args = p.parse_args(argv)

    if args.command == "up":
        if (args.dir / "cluster.json").exists():
            cluster = LocalCluster.load(args.dir)
            if any(cluster.is_running(n.name) for n in cluster.nodes):
                print(f"the cluster in {args.dir} runs already; `down` first to change it",
                      file=sys.stderr)
                _print_status(cluster)
                return 1
        cluster = LocalCluster(args.dir, worker_nodes(args.workers, args.worker_cpus),
                               NodeSpec(LocalCluster.HEAD, args.head_cpus), args.host,
                               args.port, args.dashboard_port)
        try:
            cluster.start(timeout=args.timeout)
        except ClusterError as exc:
            print(exc, file=sys.stderr)
            return 1
        _print_status(cluster)
        print(f"\nRay {cluster.address} · dashboard {cluster.dashboard_url}\n"
              f"run trainserve on it: trainserve up --ray-address {cluster.address} "
              f"--ray-token-file {cluster.token_path}")
        return 0
    if not (args.dir / "cluster.json").exists():
        print(f"no cluster in {args.dir}")
        return 0 if args.command == "down" else 1
    cluster = LocalCluster.load(args.dir)
    if args.command == "down":
        stopped = cluster.stop()
        print(f"stopped {', '.join(stopped)}" if stopped else f"nothing running in {args.dir}")
        return 0
    _print_status(cluster)
    return 0 if all(cluster.is_running(n.name) for n in cluster.nodes) else 3


def _print_status(cluster: LocalCluster) -> None:
    for row in cluster.status():
        state = f"running (pid {row['pid']})" if row["running"] else "stopped"
        extra = "".join(f" {k}={v:g}" for k, v in row["resources"].items())
        print(f"{row['node']:<10} {state:<22} cpus={row['num_cpus']}{extra}  {row['log']}")


if __name__ == "__main__":
    sys.exit(main())
