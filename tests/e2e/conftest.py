"""The browser tests' fixtures: one real local stack for the whole module (redis, Ray, the
job API, the dispatcher and the web console, on free ports in a temporary folder, started as
tests/integration start theirs), Debian's chromium driven by Playwright (never a browser that
Playwright downloads), the SDK as the admin and as two plain users, and `shots`, the folder
the page screenshots go to (tests/e2e/screenshots/, or $TRAINSERVE_E2E_SHOTS)."""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.conftest import free_port

SHOTS = Path(os.environ.get("TRAINSERVE_E2E_SHOTS") or Path(__file__).parent / "screenshots")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "e2e" in Path(str(item.fspath)).parts and item.get_closest_marker("e2e") is None:
            raise pytest.UsageError(f"{item.nodeid} lies in tests/e2e but is not marked "
                                    "@pytest.mark.e2e")


def chromium_binary() -> str | None:
    """Debian's chromium: the binary itself (/usr/bin/chromium is a shell wrapper)."""
    for path in ("/usr/lib/chromium/chromium", shutil.which("chromium")):
        if path and os.access(path, os.X_OK):
            return path
    return None


def _missing(what: str) -> None:
    """Fail in CI (which installs everything), skip elsewhere."""
    message = f"{what} (./dev.sh test installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def playwright_browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed")
    binary = chromium_binary()
    if binary is None:
        _missing("Debian's chromium is not installed")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=binary, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def stack():
    """The local stack, every port free; anyone may queue any number of jobs (the 200-job
    page)."""
    from trainserve.local import Config, LocalStack, port_settings
    if shutil.which("redis-server") is None:
        _missing("redis-server is not installed")
    root = Path(tempfile.mkdtemp(prefix="ts-e2e-"))  # short: Ray's socket paths
    ports = {f: free_port() for f in port_settings()}
    config = Config(state_dir=root / "state", ray_temp_dir=str(root / "ray"), ray_num_cpus=2,
                    user_max_queued=0, **ports)
    s = LocalStack(config)
    try:
        s.up(timeout=240)
    except BaseException:
        for log in sorted(config.logs_dir.glob("*.log")):
            print(f"==== {log}\n{log.read_text()[-3000:]}")
        s.down()
        raise
    yield s
    s.down()
    if not os.environ.get("TRAINSERVE_KEEP_TEST_STATE"):
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def admin(stack):
    from trainserve.client import Client
    token = stack.config.admin_token_path.read_text().strip()
    with Client(stack.config.api_address, token=token) as client:
        yield client


class User:
    """A plain user of the API: `name`, `token`, and `sdk`, a Client with that token."""

    def __init__(self, api: str, admin, name: str):
        from trainserve.client import Client
        from trainserve.core.pb import auth_pb2
        self.name = name
        self.token = admin.call_auth("CreateToken", auth_pb2.CreateTokenRequest(user=name)).token
        self.sdk = Client(api, token=self.token)


@pytest.fixture(scope="module")
def users(stack, admin):
    """{"alice": User, "bob": User, "dora": User}, names unique to this run."""
    tag = uuid.uuid4().hex[:6]
    made = {who: User(stack.config.api_address, admin, f"{who}-{tag}")
            for who in ("alice", "bob", "dora")}
    yield made
    for user in made.values():
        user.sdk.close()


@pytest.fixture(scope="module")
def shots():
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS
