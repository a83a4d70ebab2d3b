"""A serving replica killed (`kill -9`) under load: Serve in the stack's default mode
(HAProxy in front), two replicas of the application, clients sending requests throughout.
At most 0.5 % of the requests may fail, the failures must stop within 10 s of the kill, and
Serve must replace the replica."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.integration.helpers import Load
from tests.integration.test_serve_gateway import _deploy, _register
from tests.ray_head import connected_head

pytestmark = pytest.mark.integration

REPLICA_TITLE = "ServeReplica:trainserve:gateway"
BODY = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 4],
                    "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]}]}


def replica_pids(session: int) -> list[int]:
    """Process ids of the gateway's replicas in the Ray cluster whose processes run in
    `session` (Ray titles each worker after its actor)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if REPLICA_TITLE.encode() in cmdline and _in_session(int(entry.name), session):
                pids.append(int(entry.name))
    return pids


def _in_session(pid: int, session: int) -> bool:
    try:
        return os.getsid(pid) == session
    except OSError:
        return False


def running_replicas() -> int:
    from ray import serve
    app = serve.status().applications.get("trainserve")
    if app is None:
        return 0
    return app.deployments["gateway"].replica_states.get("RUNNING", 0)


@pytest.fixture(scope="module")
def two_replicas(redis_server, tmp_path_factory):
    from trainserve.serve import control
    from trainserve.store.redis import connect

    storage, tmp = tmp_path_factory.mktemp("storage"), tmp_path_factory.mktemp("artifacts")
    with connected_head("throughput") as head:
        client = connect(redis_server.url)
        mv, _ = _register(client, storage, tmp, "iris-mlp", "iris", "classification",
                          ("setosa", "versicolor", "virginica"), 4, 1, "job-iris")
        _deploy(client, "iris", mv.name, mv.version)
        cfg = control.ServeConfig(http_port=free_port(), grpc_port=free_port(),
                                  redis_url=redis_server.url, storage_dir=str(storage),
                                  replicas=2)
        control.ensure_serve(cfg)
        yield f"http://127.0.0.1:{cfg.http_port}/v2/models/iris/infer", head.proc.pid
        control.shutdown()
        client.close()


def test_a_replica_killed_under_load_costs_under_half_a_percent(two_replicas):
    url, session = two_replicas
    deadline = time.monotonic() + 60
    while (len(replica_pids(session)) < 2 or running_replicas() < 2) \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    pids = replica_pids(session)
    assert len(pids) == 2, pids
    with Load(url, BODY, clients=8) as load:
        time.sleep(5)
        killed_at = time.monotonic()
        os.kill(pids[0], signal.SIGKILL)
        time.sleep(2)
        replaced_s = None
        while time.monotonic() - killed_at < 60:
            if running_replicas() == 2 and len(set(replica_pids(session)) - {pids[0]}) == 2:
                replaced_s = time.monotonic() - killed_at
                break
            time.sleep(0.25)
        time.sleep(5)  # traffic on the replaced set
    total = len(load.results)
    failures = [(t - killed_at, why) for t, ok, why, _ in load.results if not ok]
    last_failure_s = max((t for t, _ in failures), default=0.0)
    print(f"\n{total} requests, {len(failures)} failed, last failure {last_failure_s:.1f} s "
          f"after the kill; replica replaced after {replaced_s} s")
    assert total > 200
    assert len(failures) <= 0.005 * total, failures[:10]
    assert last_failure_s <= 10, failures[:10]
    assert replaced_s is not None, "Serve did not replace the killed replica within 60 s"
    ok_after = [ok for t, ok, _, _ in load.results if t > killed_at + replaced_s]
    assert ok_after and all(ok_after)
