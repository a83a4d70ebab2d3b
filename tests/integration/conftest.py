"""The `stack` fixture: the real local stack (redis-server, a Ray head, the job API, the
dispatcher with Ray Serve) on free ports in a temporary folder, once per test session; and
`fault_stack`, one per module whose tests pause and kill its processes."""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import grpc
import pytest

from tests.conftest import free_port
from tests.integration.helpers import admin_token


@pytest.fixture(scope="session")
def stack():
    from trainserve.local import Config, port_settings
    from trainserve.local import LocalStack

    # Short root: Ray's unix sockets live under its temp dir (107-byte path limit).
    root = Path(tempfile.mkdtemp(prefix="ts-it-"))
    cfg = Config(state_dir=root / "state", ray_num_cpus=2, ray_temp_dir=str(root / "ray"),
                 **{f: free_port() for f in port_settings()})
    s = LocalStack(cfg)
    try:
        s.up()
    except BaseException:
        _dump_logs(cfg)
        s.down()
        raise
    # The SDK and the CLI in the tests find the token as a user's shell would.
    saved = os.environ.get("TRAINSERVE_TOKEN")
    os.environ["TRAINSERVE_TOKEN"] = admin_token(cfg)
    yield s
    os.environ.pop("TRAINSERVE_TOKEN") if saved is None else \
        os.environ.__setitem__("TRAINSERVE_TOKEN", saved)
    s.down()
    if not os.environ.get("TRAINSERVE_KEEP_TEST_STATE"):
        shutil.rmtree(root, ignore_errors=True)


def _dump_logs(cfg) -> None:
    for log in sorted(Path(cfg.state_dir, "logs").glob("*.log")):
        print(f"==== {log}\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="session")
def channel(stack):
    ch = stack.api_channel()  # with the stack's admin token when its API checks tokens
    grpc.channel_ready_future(ch).result(timeout=30)
    yield ch
    ch.close()


@pytest.fixture(scope="session")
def stubs(channel):
    from trainserve.core.pb import deployment_pb2_grpc, job_pb2_grpc, model_pb2_grpc

    class Stubs:
        jobs = job_pb2_grpc.JobServiceStub(channel)
        models = model_pb2_grpc.ModelServiceStub(channel)
        deployments = deployment_pb2_grpc.DeploymentServiceStub(channel)
    return Stubs


@pytest.fixture(scope="module")
def fault_stack():
    """A local stack of the module's own (2 CPUs) whose processes see TRAINSERVE_FAULT_DIR
    (`trainserve.core.faults`), with `.stubs`, `.faults` (that folder) and `.redis`: for tests
    that pause and kill its processes."""
    from trainserve.local import Config, port_settings
    from trainserve.core.faults import ENV
    from trainserve.local import LocalStack
    from trainserve.core.pb import job_pb2_grpc, model_pb2_grpc
    from trainserve.store.redis import connect

    root = Path(tempfile.mkdtemp(prefix="ts-fs-"))
    faults = root / "faults"
    faults.mkdir()
    old = os.environ.get(ENV)
    os.environ[ENV] = str(faults)  # inherited by every process the stack starts
    cfg = Config(state_dir=root / "state", ray_temp_dir=str(root / "ray"), ray_num_cpus=2,
                 **{f: free_port() for f in port_settings()})
    stack = LocalStack(cfg)
    try:
        stack.up(timeout=240)
        channel = stack.api_channel()

        class Stubs:
            jobs = job_pb2_grpc.JobServiceStub(channel)
            models = model_pb2_grpc.ModelServiceStub(channel)
        stack.stubs, stack.faults = Stubs, faults
        stack.redis = connect(cfg.redis_url)
        yield stack
    finally:
        stack.down()
        if old is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = old
        if not os.environ.get("TRAINSERVE_KEEP_TEST_STATE"):
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def people(stack, channel):
    """(alice, bob, tag): two plain users, each a `test_api_tenancy.As` with its `.token`,
    names unique to this run."""
    from tests.integration.test_api_tenancy import As
    from trainserve.core.pb import auth_pb2, auth_pb2_grpc
    tokens = auth_pb2_grpc.AuthServiceStub(channel)
    tag = uuid.uuid4().hex[:6]
    made = []
    for who in ("alice", "bob"):
        token = tokens.CreateToken(auth_pb2.CreateTokenRequest(user=f"{who}-{tag}"),
                                   timeout=10).token
        made.append(As(stack.config.api_address, token))
        made[-1].token = token
    yield (*made, tag)
    for user in made:
        user.channel.close()
