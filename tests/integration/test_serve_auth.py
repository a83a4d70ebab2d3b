"""Inference bearer tokens end to end: a local stack of its own started with
`inference_auth` (the shared one stays open for the other tests), so the token file goes
Config -> dispatcher -> ServeConfig -> gateway; standard clients send the header.

tritonclient.grpc runs in a child process (its `inference.*` protobuf symbols clash with
the server-side ones other tests import).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import free_port
from tests.integration.conftest import _dump_logs
from tests.integration.helpers import admin_token
from tests.integration.test_hostile_inference import _register_for

pytestmark = pytest.mark.integration

X = np.random.default_rng(0).normal(5, 1, size=(3, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def auth_stack(tmp_path_factory):
    from trainserve.client import Client
    from trainserve.local import Config
    from trainserve.local import LocalStack
    from trainserve.serve.auth import create_token
    from trainserve.store.redis import connect

    root = Path(tempfile.mkdtemp(prefix="ts-au-"))  # short: Ray's socket paths
    cfg = Config(state_dir=root / "state", api_port=free_port(), serve_http_port=free_port(),
                 serve_grpc_port=free_port(), api_metrics_port=free_port(),
                 dispatcher_metrics_port=free_port(), ray_dashboard_port=free_port(),
                 redis_port=free_port(), ray_gcs_port=free_port(), console_port=free_port(),
                 ray_num_cpus=2, ray_temp_dir=str(root / "ray"), inference_auth=True)
    # An admin's token reaches every endpoint, whoever owns it (tokens of users, which reach
    # only their own: test_hostile_inference.py).
    token, _ = create_token(cfg.inference_token_path, label="tests", role="admin")
    s = LocalStack(cfg)
    try:
        s.up()
        redis = connect(cfg.redis_url)
        mv = _register_for(redis, cfg.storage_path, tmp_path_factory.mktemp("artifacts"),
                           "alice", "iris-mlp", 1)
        redis.close()
        with Client(cfg.api_address, inference_token=token, token=admin_token(cfg)) as ts:
            ts.deploy(mv.name, mv.version, name="iris", wait=True)
    except BaseException:
        _dump_logs(cfg)
        s.down()
        raise
    yield s, token
    s.down()
    if not os.environ.get("TRAINSERVE_KEEP_TEST_STATE"):
        shutil.rmtree(root, ignore_errors=True)


def bearer(token):
    return {"authorization": f"Bearer {token}"}


def test_tritonclient_http(auth_stack):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    stack, token = auth_stack
    client = httpclient.InferenceServerClient(stack.config.serve_http)
    assert client.is_server_live() and client.is_server_ready()  # probes stay open
    inp = httpclient.InferInput("input", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)
    for headers in (None, bearer("wrong")):
        with pytest.raises(InferenceServerException, match="missing or invalid bearer token"):
            client.infer("iris", [inp], headers=headers)
        with pytest.raises(InferenceServerException, match="missing or invalid bearer token"):
            client.get_model_metadata("iris", headers=headers)
    labels = client.infer("iris", [inp], headers=bearer(token)).as_numpy("label")
    assert labels.shape == (3,)
    assert client.get_model_metadata("iris", headers=bearer(token))["name"] == "iris"


def test_raw_rest_answers_401_with_a_challenge(auth_stack):
    stack, token = auth_stack
    base = f"http://{stack.config.serve_http}"
    for headers in ({}, bearer("wrong")):
        r = httpx.post(f"{base}/v1/models/iris:predict", json={"instances": X.tolist()},
                       headers=headers, timeout=30)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json() == {"error": "missing or invalid bearer token"}
    r = httpx.post(f"{base}/v1/models/iris:predict", json={"instances": X.tolist()},
                   headers=bearer(token), timeout=30)
    assert r.status_code == 200 and len(r.json()["predictions"]) == 3
    assert httpx.get(f"{base}/v2/health/ready", timeout=30).status_code == 200


def test_sdk_sends_the_configured_token(auth_stack):
    from trainserve.client import Client
    from trainserve.core.errors import Unauthenticated

    stack, token = auth_stack
    with Client(stack.config.api_address, inference_token=token) as ts:
        assert ts.predict("iris", X, stack.config.serve_http)["label"].shape == (3,)
    with Client(stack.config.api_address, inference_token="") as ts:
        with pytest.raises(Unauthenticated, match="TRAINSERVE_INFERENCE_TOKEN"):
            ts.predict("iris", X, stack.config.serve_http)


def test_cli_predict_sends_the_token_flag(auth_stack):
    from typer.testing import CliRunner

    from trainserve.cli.main import app
    stack, token = auth_stack
    args = ["--api", stack.config.api_address, "predict", "iris", "--input",
            json.dumps(X.tolist()), "--http", stack.config.serve_http, "-o", "json"]
    env = {"TRAINSERVE_INFERENCE_TOKEN": ""}
    refused = CliRunner().invoke(app, args, env=env)
    assert refused.exit_code != 0 and "token" in refused.output.lower(), refused.output
    answered = CliRunner().invoke(app, [*args, "--token", token], env=env)
    assert answered.exit_code == 0, answered.output
    assert len(json.loads(answered.output)["outputs"]) >= 2


_GRPC = r"""
import json, sys
import numpy as np
import tritonclient.grpc as g
from tritonclient.utils import InferenceServerException
target, token = sys.argv[1], sys.argv[2]
c = g.InferenceServerClient(target)
x = np.asarray(json.loads(sys.stdin.read()), dtype=np.float32)
inp = g.InferInput("input", list(x.shape), "FP32")
inp.set_data_from_numpy(x)
out = {"live": c.is_server_live(), "ready": c.is_server_ready(), "refused": {}}
for name, headers in (("none", None), ("wrong", {"authorization": "Bearer wrong"})):
    for rpc, call in (("infer", lambda: c.infer("iris", [inp], headers=headers)),
                      ("metadata", lambda: c.get_model_metadata("iris", headers=headers)),
                      ("ready", lambda: c.is_model_ready("iris", headers=headers))):
        try:
            call()
            out["refused"][f"{name}-{rpc}"] = None
        except InferenceServerException as e:
            out["refused"][f"{name}-{rpc}"] = [e.status(), e.message()]
ok = {"authorization": f"Bearer {token}"}
out["labels"] = c.infer("iris", [inp], headers=ok).as_numpy("label").tolist()
out["model_ready"] = c.is_model_ready("iris", headers=ok)
print(json.dumps(out))
"""


def test_tritonclient_grpc(auth_stack):
    stack, token = auth_stack
    proc = subprocess.run([sys.executable, "-c", _GRPC, stack.config.serve_grpc, token],
                          input=json.dumps(X.tolist()), text=True, capture_output=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["live"] and out["ready"] and out["model_ready"] and len(out["labels"]) == 3
    for key, refused in out["refused"].items():
        assert refused == ["StatusCode.UNAUTHENTICATED", "missing or invalid bearer token"], key


def test_tokens_are_revoked_without_a_restart(auth_stack):
    from trainserve.serve.auth import create_token, digest, revoke

    stack, token = auth_stack
    path = stack.config.inference_token_path
    url = f"http://{stack.config.serve_http}/v2/models/iris"
    new, _ = create_token(path, role="admin")
    revoke(path, digest(token))
    try:
        deadline = time.monotonic() + 10
        while httpx.get(url, headers=bearer(token), timeout=30).status_code != 401:
            assert time.monotonic() < deadline, "the revoked token is still accepted"
            time.sleep(0.2)
        assert httpx.get(url, headers=bearer(new), timeout=30).status_code == 200
    finally:
        with open(path, "a") as f:  # the other tests of this module use `token`
            f.write(digest(token) + "\n")
