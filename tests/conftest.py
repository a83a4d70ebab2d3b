"""Shared fixtures. Servers are real and started once per session; tests under
tests/integration must carry the `integration` marker (an unmarked one is refused)."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from trainserve.local import free_port  # noqa: F401 - the one free-port helper, for tests


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = Path(str(item.fspath))
        if "integration" in path.parts and item.get_closest_marker("integration") is None:
            raise pytest.UsageError(f"{item.nodeid} lies in tests/integration but is not "
                                    "marked @pytest.mark.integration")


class RedisServer:
    """A real redis-server with append-only persistence in a temporary folder."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.proc = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.root), "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        import redis
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                redis.Redis(port=self.port).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self, sig_kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill() if sig_kill else self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (./dev.sh test installs it)")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server):
    """A client on a clean database for one test."""
    from trainserve.store.redis import connect
    client = connect(redis_server.url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def one_thread():
    """One intra-op thread, as the examples' measure scripts run them: the same float sums."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
