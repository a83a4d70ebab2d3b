"""Bearer-token authentication of the inference endpoints: the token file, the check, and the
REST and gRPC bindings with it on and off (health probes stay open)."""
import asyncio
import os
import stat

import grpc
import numpy as np
import pytest
import torch
from starlette.testclient import TestClient
from typer.testing import CliRunner

from trainserve import client as sdk
from trainserve._gen.inference import grpc_predict_v2_pb2 as pb
from trainserve.local import Config
from trainserve.core.errors import InvalidArgument, NotFound, Unauthenticated
from trainserve.local import LocalStack
from trainserve.serve import auth
from trainserve.serve.auth import (MESSAGE, TokenFile, bearer_token, create_token, digest,
                                   ensure_file, parse_digests, revoke)
from trainserve.serve.config import ServeConfig
from trainserve.serve.grpc_api import SERVICE, GrpcInference, add_inference_servicer
from trainserve.serve.rest import build_rest_app
from trainserve.serve.testing import LocalServing, RecordingContext

META = {"task": "classification", "class_names": ["no", "yes"], "input_shape": [3],
        "output_dim": 2, "preprocessing": {"kind": "none", "shift": [], "scale": []}}
X = np.arange(6, dtype=np.float32).reshape(2, 3)
BODY = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 3],
                    "data": X.reshape(-1).tolist()}]}
TOKEN, OTHER = "s3cret-token", "another-token"


def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def write(path, *tokens, extra=""):
    path.write_text("# inference tokens\n\n" + "".join(f"{digest(t)}  # {i}\n"
                                                      for i, t in enumerate(tokens)) + extra)
    # A rewrite within the same clock tick must still be seen: move the mtime on.
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


# ------------------------------------------------------------------------------ the core


def test_parse_digests_skips_comments_and_blank_lines():
    d1, d2 = digest("a"), digest("b")
    text = f"# header\n\n{d1}\n  {d2.upper()}  # ci\n{d1}\n"
    assert parse_digests(text) == (d1, d2)
    assert parse_digests("") == ()


def test_parse_digests_rejects_a_token_in_clear():
    with pytest.raises(ValueError, match="line 2: not a SHA-256 hex digest"):
        parse_digests(f"{digest('a')}\nmy-token\n")


@pytest.mark.parametrize("value,token", [
    ("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("BEARER abc", "abc"),
    ("Basic abc", None), ("Bearer", None), ("Bearer   ", None), ("", None), (None, None),
    ("abc", None)])
def test_bearer_token(value, token):
    assert bearer_token(value) == token


def test_every_digest_is_compared_in_constant_time(monkeypatch):
    calls = []
    real = auth.hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)
    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    digests = [digest(TOKEN), digest("x"), digest("y")]
    assert auth.matches(TOKEN, digests)
    assert len(calls) == 3  # no early exit on the first match
    calls.clear()
    assert not auth.matches(None, digests) and len(calls) == 3
    assert not auth.matches("", [digest("")])  # an empty token never matches


def test_check_raises_one_message_for_missing_and_wrong(tmp_path):
    path = tmp_path / "tokens"
    write(path, TOKEN)
    tokens = TokenFile(path)
    tokens.check(f"Bearer {TOKEN}")
    messages = set()
    for header in (None, "", "Bearer", f"Bearer {OTHER}", f"Basic {TOKEN}", TOKEN):
        with pytest.raises(Unauthenticated) as info:
            tokens.check(header)
        messages.add(info.value.message)
    assert messages == {MESSAGE}
    assert Unauthenticated.http_status == 401 and Unauthenticated.grpc_code == "UNAUTHENTICATED"


def test_a_missing_or_malformed_file_fails_at_start(tmp_path):
    with pytest.raises(FileNotFoundError):
        TokenFile(tmp_path / "none")
    (tmp_path / "bad").write_text("plain-token\n")
    with pytest.raises(ValueError, match="line 1"):
        TokenFile(tmp_path / "bad")
    assert auth.token_auth("") is None


def test_reloads_on_change_at_most_once_a_period(tmp_path):
    path, clock = tmp_path / "tokens", Clock()
    write(path, TOKEN)
    tokens = TokenFile(path, period_s=1.0, clock=clock)
    write(path, OTHER)  # TOKEN revoked, OTHER added
    clock.t += 0.5
    tokens.check(f"Bearer {TOKEN}")  # not looked at yet
    clock.t += 0.5
    with pytest.raises(Unauthenticated):
        tokens.check(f"Bearer {TOKEN}")
    tokens.check(f"Bearer {OTHER}")


def test_an_unreadable_file_after_start_accepts_nothing_until_fixed(tmp_path):
    path, clock = tmp_path / "tokens", Clock()
    write(path, TOKEN)
    tokens = TokenFile(path, clock=clock)
    write(path, TOKEN, extra="not-a-digest\n")
    clock.t += 1
    with pytest.raises(Unauthenticated):
        tokens.check(f"Bearer {TOKEN}")
    path.unlink()
    clock.t += 1
    with pytest.raises(Unauthenticated):
        tokens.check(f"Bearer {TOKEN}")
    write(path, TOKEN)
    clock.t += 1
    tokens.check(f"Bearer {TOKEN}")


def test_unchanged_file_is_not_read_again(tmp_path, monkeypatch):
    path, clock = tmp_path / "tokens", Clock()
    write(path, TOKEN)
    tokens = TokenFile(path, clock=clock)
    monkeypatch.setattr(TokenFile, "_read", lambda self: pytest.fail("read again"))
    for _ in range(3):
        clock.t += 1
        tokens.check(f"Bearer {TOKEN}")


def test_create_and_revoke(tmp_path):
    path = tmp_path / "run" / "tokens"
    token, d = create_token(path, label="ci", user="alice")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert d == digest(token) and token not in path.read_text()
    assert f"{d} user=alice role=user  # ci" in path.read_text()
    second, d2 = create_token(path, role="admin")
    assert parse_digests(path.read_text()) == (d, d2)
    TokenFile(path).check(f"Bearer {second}")
    assert revoke(path, d[:8].upper()) == d
    assert parse_digests(path.read_text()) == (d2,)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(NotFound):
        revoke(path, d[:8])
    with pytest.raises(InvalidArgument, match="first 8 hex"):
        revoke(path, "abc")
    assert ensure_file(path) == path and parse_digests(path.read_text()) == (d2,)


# ------------------------------------------------------------------------------ REST


@pytest.fixture(scope="module")
def local():
    serving = LocalServing()
    serving.register("clf", 1, mlp(), META, endpoint="clf")
    return serving


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "tokens"
    write(path, TOKEN)
    return path


@pytest.fixture
def rest(local, token_file):
    return TestClient(build_rest_app(local.service, TokenFile(token_file)),
                      raise_server_exceptions=False)


PROTECTED = [("post", "/v2/models/clf/infer", BODY), ("post", "/v2/models/clf/versions/1/infer",
                                                       BODY),
             ("get", "/v2/models/clf", None), ("get", "/v2/models/clf/ready", None),
             ("get", "/v1/models/clf", None),
             ("post", "/v1/models/clf:predict", {"instances": X.tolist()}), ("get", "/v2", None)]


@pytest.mark.parametrize("method,path,body", PROTECTED)
def test_rest_needs_a_token(rest, method, path, body):
    kwargs = {"json": body} if body is not None else {}
    answers = [getattr(rest, method)(path, headers=h, **kwargs) for h in (
        {}, {"Authorization": f"Bearer {OTHER}"}, {"Authorization": TOKEN})]
    for r in answers:
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json() == {"error": MESSAGE}
    ok = getattr(rest, method)(path, headers={"Authorization": f"Bearer {TOKEN}"}, **kwargs)
    assert ok.status_code == 200, ok.text


def test_rest_checks_before_reading_the_body(rest):
    r = rest.post("/v2/models/clf/infer", content=b"{not json")
    assert r.status_code == 401


def test_rest_health_stays_open(rest):
    assert rest.get("/v2/health/live").json() == {"live": True}
    assert rest.get("/v2/health/ready").status_code == 200


def test_rest_revoked_token_is_refused_within_a_second(local, token_file):
    clock = Clock()
    app = TestClient(build_rest_app(local.service, TokenFile(token_file, clock=clock)))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert app.post("/v2/models/clf/infer", json=BODY, headers=headers).status_code == 200
    write(token_file, OTHER)
    clock.t += 1
    assert app.post("/v2/models/clf/infer", json=BODY, headers=headers).status_code == 401
    assert app.post("/v2/models/clf/infer", json=BODY,
                    headers={"Authorization": f"Bearer {OTHER}"}).status_code == 200


def test_rest_without_auth_is_open(local):
    rest = TestClient(build_rest_app(local.service))
    assert rest.post("/v2/models/clf/infer", json=BODY).status_code == 200
    assert rest.get("/v2/models/clf").status_code == 200
    r = rest.get("/v2/models/ghost")
    assert r.status_code == 404 and "www-authenticate" not in r.headers


def test_rest_tritonclient_sends_the_header(local, token_file):
    """tritonclient.http's `headers=` reaches the check (its own request encoding)."""
    import tritonclient.http as httpclient
    rest = TestClient(build_rest_app(local.service, TokenFile(token_file)))
    inp = httpclient.InferInput("input", [2, 3], "FP32")
    inp.set_data_from_numpy(X, binary_data=True)
    body, header_length = httpclient.InferenceServerClient.generate_request_body([inp])
    headers = {"Inference-Header-Content-Length": str(header_length)}
    assert rest.post("/v2/models/clf/infer", content=body, headers=headers).status_code == 401
    headers["Authorization"] = f"Bearer {TOKEN}"
    assert rest.post("/v2/models/clf/infer", content=body, headers=headers).status_code == 200


# ------------------------------------------------------------------------------ gRPC


class MetadataContext(RecordingContext):
    """A servicer context with the call's metadata, like grpc.aio's and Serve's."""

    def __init__(self, metadata=()):
        super().__init__()
        self._metadata = list(metadata)

    def invocation_metadata(self):
        return self._metadata


def raw_request():
    req = pb.ModelInferRequest(model_name="clf")
    req.inputs.add(name="input", datatype="FP32", shape=[2, 3])
    req.raw_input_contents.append(X.tobytes())
    return req


REQUESTS = {"ModelInfer": raw_request, "ModelMetadata": lambda: pb.ModelMetadataRequest(name="clf"),
            "ModelReady": lambda: pb.ModelReadyRequest(name="clf"),
            "ServerMetadata": pb.ServerMetadataRequest}


def grpc_call(servicer, rpc, request, metadata=()):
    ctx = MetadataContext(metadata)
    return asyncio.run(getattr(servicer, rpc)(request, ctx)), ctx


@pytest.mark.parametrize("rpc", list(REQUESTS))
def test_grpc_needs_a_token(local, token_file, rpc):
    servicer = GrpcInference(local.service, TokenFile(token_file))
    for metadata in ((), [("authorization", f"Bearer {OTHER}")], [("authorization", TOKEN)],
                     [("x-token", f"Bearer {TOKEN}")]):
        _, ctx = grpc_call(servicer, rpc, REQUESTS[rpc](), metadata)
        assert ctx.code == grpc.StatusCode.UNAUTHENTICATED and ctx.details == MESSAGE
    resp, ctx = grpc_call(servicer, rpc, REQUESTS[rpc](), [("authorization", f"Bearer {TOKEN}")])
    assert ctx.code is None
    if rpc == "ModelInfer":
        assert [o.name for o in resp.outputs] == ["probabilities", "label", "class_name"]
    # Serve's proxy hands over raw bytes; the check is the same through `call`.
    ctx = MetadataContext()
    asyncio.run(servicer.call(rpc, REQUESTS[rpc]().SerializeToString(), ctx))
    assert ctx.code == grpc.StatusCode.UNAUTHENTICATED


def test_grpc_health_stays_open(local, token_file):
    servicer = GrpcInference(local.service, TokenFile(token_file))
    resp, ctx = grpc_call(servicer, "ServerLive", pb.ServerLiveRequest())
    assert ctx.code is None and resp.live
    resp, ctx = grpc_call(servicer, "ServerReady", pb.ServerReadyRequest())
    assert ctx.code is None and resp.ready


def test_grpc_without_auth_is_open(local):
    servicer = GrpcInference(local.service)
    _, ctx = grpc_call(servicer, "ModelInfer", raw_request())
    assert ctx.code is None
    ctx = RecordingContext()  # no invocation_metadata: not looked at when auth is off
    asyncio.run(servicer.ModelInfer(raw_request(), ctx))
    assert ctx.code is None


def test_grpc_metadata_over_a_real_channel(local, token_file):
    """The token travels as call metadata to a grpc.aio server whose handlers take raw bytes
    (as Serve's proxy registers them) and answer with `GrpcInference.call`."""
    servicer = GrpcInference(local.service, TokenFile(token_file))

    class Raw:
        def __getattr__(self, rpc):
            async def handler(raw, context):
                return (await servicer.call(rpc, raw, context)).SerializeToString()
            return handler

    async def main():
        server = grpc.aio.server()
        add_inference_servicer(Raw(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                def method(rpc, response):
                    return channel.unary_unary(f"/{SERVICE}/{rpc}",
                                               request_serializer=lambda m: m.SerializeToString(),
                                               response_deserializer=response.FromString)
                infer = method("ModelInfer", pb.ModelInferResponse)
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await infer(raw_request())
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert info.value.details() == MESSAGE
                resp = await infer(raw_request(), metadata=(("authorization",
                                                             f"Bearer {TOKEN}"),))
                live = await method("ServerLive", pb.ServerLiveResponse)(pb.ServerLiveRequest())
                return resp, live
        finally:
            await server.stop(None)

    resp, live = asyncio.run(main())
    assert len(resp.outputs) == 3 and live.live


# ------------------------------------------------------------------------- configuration


def test_serve_config_is_open_by_default():
    assert ServeConfig().inference_token_file == ""


def test_local_stack_passes_the_token_file_to_the_dispatcher(tmp_path):
    off = LocalStack(Config(state_dir=tmp_path / "a"))
    assert "--inference-token-file" not in off.launch("dispatcher").argv
    cfg = Config(state_dir=tmp_path / "b", inference_auth=True)
    cmd = LocalStack(cfg).launch("dispatcher").argv
    path = cmd[cmd.index("--inference-token-file") + 1]
    assert path == str(cfg.inference_token_path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and parse_digests(open(path).read()) == ()
    assert Config.from_env({"TRAINSERVE_INFERENCE_AUTH": "true"}).inference_auth


def test_dispatcher_takes_the_token_file(monkeypatch):
    from trainserve.dispatch import __main__ as dispatch_main
    seen = {}

    class Stop(Exception):
        pass

    def fake(cfg):
        seen["cfg"] = cfg
        raise Stop
    monkeypatch.setattr(dispatch_main, "Dispatcher", fake)
    with pytest.raises(Stop):
        dispatch_main.main(["--inference-token-file", "/x/tokens", "--metrics-port", "0"])
    assert seen["cfg"].inference_token_file == "/x/tokens"


def test_cli_token_create_and_revoke(tmp_path, monkeypatch):
    from trainserve.cli.main import app
    monkeypatch.setenv("TRAINSERVE_STATE_DIR", str(tmp_path / "state"))
    result = CliRunner().invoke(app, ["token", "create", "--user", "ci", "--label", "ci"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    path = Config(state_dir=tmp_path / "state").inference_token_path
    assert parse_digests(path.read_text()) == (digest(token),)
    TokenFile(path).check(f"Bearer {token}")
    result = CliRunner().invoke(app, ["token", "revoke", digest(token)[:10]])
    assert result.exit_code == 0 and parse_digests(path.read_text()) == ()
    result = CliRunner().invoke(app, ["token", "revoke", "zz"])
    assert result.exit_code == 2


def test_sdk_sends_the_token_on_inference_calls(monkeypatch):
    sent = []
    monkeypatch.setattr(sdk.inference, "http_json",
                        lambda method, url, body, timeout, headers=None:
                        sent.append(headers) or {"outputs": []})
    monkeypatch.setenv("TRAINSERVE_INFERENCE_TOKEN", TOKEN)
    with sdk.Client("127.0.0.1:1") as ts:
        ts.predict("clf", X)
        ts.model_metadata("clf")
    with sdk.Client("127.0.0.1:1", inference_token=OTHER) as ts:
        ts.infer("clf", BODY)
    monkeypatch.delenv("TRAINSERVE_INFERENCE_TOKEN")
    with sdk.Client("127.0.0.1:1") as ts:
        ts.infer("clf", BODY)
    assert sent == [{"Authorization": f"Bearer {TOKEN}"}] * 2 + [
        {"Authorization": f"Bearer {OTHER}"}, {}]
