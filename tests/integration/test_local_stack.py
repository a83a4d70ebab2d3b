"""LocalStack for real: redis-server and a Ray head (and the job API and the dispatcher) on
free ports in a temporary folder; start, status, `trainserve down/restart COMPONENT`, SIGKILL,
stop, and nothing left behind. Uses a stack of its own, not the session `stack`, because it
stops and kills it."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest

from trainserve.local import Config, port_settings
from trainserve.local import LocalStack, PortInUse, free_port

pytestmark = pytest.mark.integration

HAVE_SERVICES = all(importlib.util.find_spec(m) is not None
                    for m in ("trainserve.api", "trainserve.dispatch"))


@pytest.fixture
def own_stack():
    """A LocalStack on free ports under a short temporary folder; torn down afterwards."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (./dev.sh test installs it)")
    root = Path(tempfile.mkdtemp(prefix="ts-ls-"))
    config = Config(state_dir=root / "state", ray_temp_dir=str(root / "ray"), ray_num_cpus=1,
                    **{f: free_port() for f in port_settings()})
    stack = LocalStack(config)
    yield stack
    stack.down()
    shutil.rmtree(root, ignore_errors=True)


def _alive(pids) -> list[int]:
    """The pids that are live processes (zombies waiting for a parent do not count)."""
    out = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in "ZX":
            out.append(pid)
    return out


def _pgrep(pattern: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return _alive(int(p) for p in found.split())


def test_redis_and_ray_start_report_and_stop_without_leftovers(own_stack):
    stack, c = own_stack, own_stack.config
    assert stack.up(["redis", "ray"], timeout=120) == ["redis", "ray"]
    assert stack.up(["redis", "ray"]) == [], "a second up is a no-op"
    status = {s.name: s for s in stack.status()}
    assert status["redis"].state == "ready" and status["ray"].state == "ready"
    assert status["api"].state == "stopped"
    assert (c.redis_dir / "redis.conf").exists() and (c.run_dir / "ray.pid").exists()

    # Another stack on the same ports is refused before it starts anything.
    with pytest.raises(PortInUse, match="redis"):
        LocalStack(c.replace(state_dir=c.state_dir.parent / "other")).up(["redis", "ray"])

    # A driver joins with the stack's environment (loopback node address, its own token).
    probe = ("import ray; ray.init(address=%r, log_to_driver=False); "
             "print('CPU', ray.cluster_resources().get('CPU'))" % c.ray_address)
    out = subprocess.run([sys.executable, "-c", probe], env={**os.environ, **stack.ray_env()},
                         capture_output=True, text=True, timeout=120)
    assert "CPU 1.0" in out.stdout, out.stderr[-3000:]

    pids = stack.session_pids("ray") + stack.session_pids("redis")
    assert len(pids) > 5
    assert stack.down() == ["ray", "redis"]
    assert _alive(pids) == []
    assert _pgrep(str(c.ray_temp_path)) == []
    assert _pgrep(f"redis-server 127.0.0.1:{c.redis_port}") == []
    assert all(s.state == "stopped" for s in stack.status())


def test_redis_keeps_every_acknowledged_write_across_sigkill(own_stack):
    import redis
    stack = own_stack
    stack.up(["redis"])
    client = redis.Redis.from_url(stack.config.redis_url)
    client.set("ts:test", "kept")
    assert stack.kill("redis")
    stack.start("redis")
    assert redis.Redis.from_url(stack.config.redis_url).get("ts:test") == b"kept"


def test_redis_needs_its_password_and_caps_its_memory(own_stack, monkeypatch):
    import redis
    from typer.testing import CliRunner

    from trainserve.cli.main import app
    stack, c = own_stack, own_stack.config
    stack.up(["redis"])
    password = c.redis_password
    assert len(password) == 64
    with pytest.raises(redis.AuthenticationError):  # another local user, without the file
        redis.Redis(host=c.host, port=c.redis_port).set("ts:tokens", "mine")
    client = redis.Redis.from_url(c.redis_url, decode_responses=True)
    assert client.config_get("maxmemory") == {"maxmemory": str(2 << 30)}
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    monkeypatch.setenv("COLUMNS", "200")
    shown = CliRunner().invoke(app, ["status", "--state-dir", str(c.state_dir)])
    assert shown.exit_code == 0 and f"127.0.0.1:{c.redis_port}" in shown.stdout
    assert password not in shown.stdout
    assert password not in stack.log_path("redis").read_text()
    assert all(password not in _cmdline(p) for p in stack.session_pids("redis"))
    stack.stop("redis")
    stack.start("redis")
    assert c.redis_password == password  # the same password on the next start
    assert redis.Redis.from_url(c.redis_url).ping()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace")
    except OSError:
        return ""


@pytest.mark.skipif(not HAVE_SERVICES, reason="trainserve.api / trainserve.dispatch not built")
def test_full_stack_single_components_down_restart_and_crash(own_stack, monkeypatch):
    """`trainserve down COMPONENT`, `restart COMPONENT`, `status` and `up` on a running stack,
    and a SIGKILL of the dispatcher: each touches its own component only."""
    from typer.testing import CliRunner

    from trainserve.cli.main import app
    from trainserve.core.pb import job_pb2, job_pb2_grpc
    from trainserve.core.state import JobState
    from tests.integration.helpers import example, submit

    stack = own_stack
    assert stack.up(timeout=180) == ["redis", "ray", "api", "dispatcher", "console"]
    assert all(s.ready for s in stack.status())
    monkeypatch.setenv("COLUMNS", "200")

    def cli(*args):
        return CliRunner().invoke(app, [*args, "--state-dir", str(stack.config.state_dir)])

    def states():
        doc = json.loads(cli("status", "-o", "json").stdout)
        return {c["name"]: c["state"] for c in doc["components"]}

    def stubs():  # a new connection, as a new client would open
        channel = stack.api_channel()
        grpc.channel_ready_future(channel).result(timeout=30)
        return SimpleNamespace(jobs=job_pb2_grpc.JobServiceStub(channel))

    # The dispatcher down: reported so, the others stay up and the API takes jobs.
    result = cli("down", "dispatcher")
    assert result.exit_code == 0 and "stopped dispatcher" in result.stdout, result.output
    assert states() == {"redis": "ready", "ray": "ready", "api": "ready",
                        "dispatcher": "stopped", "console": "ready"}
    again = cli("down", "dispatcher")
    assert again.exit_code == 1 and "dispatcher is not running" in again.stderr
    before = submit(stubs(), example("xor_mlp"))

    # The API restarted: the job submitted before is still there, a new one is accepted.
    api_pid = stack.pid("api")
    result = cli("restart", "api")
    assert result.exit_code == 0 and "restarted api" in result.stdout, result.output
    assert stack.pid("api") not in (None, api_pid) and stack.is_ready("api")
    api = stubs()
    assert api.jobs.GetJob(job_pb2.GetJobRequest(job_id=before.id), timeout=10).state == \
        JobState.QUEUED
    after = submit(api, example("xor_mlp"))
    assert after.id != before.id
    for job in (before, after):  # nothing for the dispatcher to train when it is back
        api.jobs.CancelJob(job_pb2.CancelJobRequest(job_id=job.id), timeout=10)

    # `up` starts what is missing, and only that; Serve still holds its ports inside Ray.
    result = cli("up")
    assert result.exit_code == 0 and "dispatcher: started" in result.stdout, result.output
    assert "api: started" not in result.stdout
    assert set(states().values()) == {"ready"}

    pids = [p for name in ("redis", "ray", "api", "dispatcher") for p in stack.session_pids(name)]
    password = stack.config.redis_password  # reaches the services, never a log or a ps line
    assert password and all(password not in _cmdline(p) for p in pids)
    assert all(password not in stack.log_path(n).read_text() for n in ("api", "dispatcher"))

    dispatcher = stack.session_pids("dispatcher")
    assert stack.kill("dispatcher")  # a crash: its whole session is gone at once
    assert _alive(dispatcher) == []
    assert states()["dispatcher"] == "stopped"
    assert stack.down() == ["console", "api", "ray", "redis"]
    assert _alive(pids) == []
    assert _pgrep(str(stack.config.ray_temp_path)) == []


def _listening_sockets() -> dict[int, tuple[str, int]]:
    """inode -> (address, port) of every listening TCP socket (/proc/net/tcp and tcp6)."""
    import ipaddress
    found = {}
    for path, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        for line in Path(path).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] != "0A":  # LISTEN
                continue
            addr_hex, port_hex = f[1].split(":")
            raw = bytes.fromhex(addr_hex)
            # The kernel prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            ip = ipaddress.IPv6Address(raw) if v6 else ipaddress.IPv4Address(raw)
            ip = ip.ipv4_mapped or ip if v6 else ip
            found[int(f[9])] = (str(ip), int(port_hex, 16))
    return found


def _listeners(sessions: set[int]) -> list[tuple[str, int, str]]:
    """(address, port, process name) of every TCP listener of the processes in `sessions`."""
    sockets, found = _listening_sockets(), []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.getsid(int(proc.name)) not in sessions:
                continue
            name = (proc / "comm").read_text().strip()
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inode = int(target[8:-1])
                    if inode in sockets:
                        found.append((*sockets[inode], name))
        except OSError:
            continue
    return sorted(set(found))


# Ray Serve's gRPC servers (its gRPC proxy; in throughput mode each replica's ingress and
# internal gRPC) bind "[::]" in Ray's code, and HAProxy's metrics and stats listeners bind
# all interfaces; none is configurable (docs/operations.md, "Network exposure").
SERVE_WIDE = ("ray::ServeRepli", "ray::ProxyActor", "haproxy")


def test_the_local_stack_listens_on_loopback_only(stack):
    """Redis, Ray's GCS, dashboard and agents, the workers, the job API, the dispatcher and
    the web console bind 127.0.0.1; only Serve's own gRPC servers and HAProxy's counters
    bind wider."""
    sessions = {os.getsid(pid) for name in ("redis", "ray", "api", "dispatcher", "console")
                if (pid := stack.pid(name))}
    listeners = _listeners(sessions)
    assert len(listeners) >= 6, listeners
    c = stack.config
    on_loopback = {port for ip, port, _ in listeners if ip in ("127.0.0.1", "::1")}
    assert {c.redis_port, c.ray_gcs_port, c.ray_dashboard_port, c.api_port,
            c.api_metrics_port, c.dispatcher_metrics_port, c.serve_http_port,
            c.console_port} <= on_loopback
    wide = [(ip, port, proc) for ip, port, proc in listeners
            if ip not in ("127.0.0.1", "::1") and proc not in SERVE_WIDE]
    assert wide == [], wide
