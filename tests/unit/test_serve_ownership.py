"""Inference tokens belong to users: the token file's lines (owner, role, endpoint scope,
parsed strictly; a bare digest stays an admin token) and endpoints that answer only their
owner's tokens and admins' over REST and gRPC, another user's endpoint looking unknown."""
import asyncio

import grpc
import numpy as np
import pytest
import torch
from starlette.testclient import TestClient

from trainserve._gen.inference import grpc_predict_v2_pb2 as pb
from trainserve.core.errors import InvalidArgument
from trainserve.serve.auth import (Grant, TokenFile, create_token, digest, list_tokens,
                                   parse_line, parse_tokens, revoke)
from trainserve.serve.grpc_api import GrpcInference
from trainserve.serve.rest import build_rest_app
from trainserve.serve.testing import LocalServing, RecordingContext

META = {"task": "classification", "class_names": ["no", "yes"], "input_shape": [3],
        "output_dim": 2, "preprocessing": {"kind": "none", "shift": [], "scale": []}}
X = np.arange(6, dtype=np.float32).reshape(2, 3)
BODY = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 3],
                    "data": X.reshape(-1).tolist()}]}
D = digest("t")


# ------------------------------------------------------------------------- the token file


def test_a_line_names_owner_role_and_endpoints():
    g = parse_line(f"{D} user=alice endpoints=iris,digits  # course")
    assert g == Grant(D, "alice", "user", frozenset({"iris", "digits"}), "course")
    assert parse_line(f"{D.upper()} user=bob role=admin") == Grant(D, "bob", "admin")
    assert parse_line(f"  {D}\trole=admin ") == Grant(D, "", "admin")
    assert parse_line("# a comment") is None and parse_line("   ") is None


def test_a_bare_digest_is_a_legacy_admin_token():
    g = parse_line(f"{D}  # written before tokens had owners")
    assert g.role == "admin" and g.user == "" and g.legacy
    assert g.may_use("anything", "alice") and g.may_use("x", "")


@pytest.mark.parametrize("line,match", [
    ("my-token", "not a SHA-256 hex digest"),
    (f"{D} alice", "'alice' is not one of user=, role=, endpoints="),
    (f"{D} owner=alice", "not one of"),
    (f"{D} user=alice user=bob", "user= is given twice"),
    (f"{D} user=Alice", "lowercase letters"),
    (f"{D} user=", "lowercase letters"),
    (f"{D} role=root user=alice", "role must be one of user, admin"),
    (f"{D} role=user", "lowercase letters"),  # a user's token needs the user
    (f"{D} endpoints=iris", "lowercase letters"),  # role user by default: needs user=
    (f"{D} user=alice endpoints=", "must be lowercase"),
    (f"{D} user=alice endpoints=a,,b", "must be lowercase"),
    (f"{D} user=alice endpoints=Iris", "must be lowercase"),
])
def test_malformed_lines_are_refused_naming_the_line(line, match):
    with pytest.raises(ValueError, match=match):
        parse_line(line)
    with pytest.raises(ValueError, match="tokens, line 2: "):
        parse_tokens(f"# header\n{line}\n", "tokens")


def test_a_digest_listed_twice_must_grant_the_same():
    assert parse_tokens(f"{D} user=a\n{D} user=a  # again\n") == (Grant(D, "a", "user"),)
    with pytest.raises(ValueError, match="line 2: digest .* listed twice"):
        parse_tokens(f"{D} user=a\n{D} user=b\n")


@pytest.mark.parametrize("grant,endpoint,owner,ok", [
    (Grant(D, "alice", "user"), "iris", "alice", True),
    (Grant(D, "alice", "user"), "iris", "bob", False),
    (Grant(D, "alice", "user"), "iris", "", False),  # an ownerless endpoint: admins only
    (Grant(D, "", "user"), "iris", "", False),  # an unnamed user owns nothing
    (Grant(D, "alice", "user", frozenset({"iris"})), "iris", "alice", True),
    (Grant(D, "alice", "user", frozenset({"iris"})), "digits", "alice", False),
    (Grant(D, "root", "admin"), "iris", "bob", True),
    (Grant(D, "root", "admin", frozenset({"iris"})), "digits", "bob", False),
])
def test_may_use(grant, endpoint, owner, ok):
    assert grant.may_use(endpoint, owner) is ok


def test_create_list_and_revoke_keep_the_grants(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(f"{D}  # old\n")
    token, d = create_token(path, "ci", user="alice", endpoints=["iris", "digits"])
    admin, da = create_token(path, role="admin")
    assert TokenFile(path).check(f"Bearer {token}") == Grant(
        d, "alice", "user", frozenset({"iris", "digits"}), "ci")
    assert [(g.user, g.role, g.legacy) for g in list_tokens(path)] == [
        ("", "admin", True), ("alice", "user", False), ("", "admin", False)]
    assert revoke(path, d[:10]) == d
    assert [g.digest for g in list_tokens(path)] == [D, da]
    for kwargs, field in (({}, "user"), ({"user": "Al"}, "user"), ({"user": "a", "role": "x"},
                                                                  "role"),
                          ({"user": "a", "endpoints": ["A"]}, "endpoints"),
                          ({"user": "a", "label": "x\ny"}, "label")):
        with pytest.raises(InvalidArgument) as info:
            create_token(path, **kwargs)
        assert info.value.field == field


# ------------------------------------------------------------------ ownership on the wire


def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))


TOKENS = {"alice": "alice-token", "bob": "bob-token", "admin": "admin-token",
          "legacy": "legacy-token", "scoped": "alice-other-only"}


@pytest.fixture(scope="module")
def local():
    serving = LocalServing()
    serving.register("clf", 1, mlp(), META, endpoint="clf", owner="alice")
    serving.deploy("other", "clf", 1, owner="alice")
    serving.deploy("broken", "ghost", 1, owner="alice")  # not ready: must look unknown too
    return serving


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(f"{digest(TOKENS['alice'])} user=alice\n"
                    f"{digest(TOKENS['bob'])} user=bob\n"
                    f"{digest(TOKENS['admin'])} user=root role=admin\n"
                    f"{digest(TOKENS['legacy'])}\n"
                    f"{digest(TOKENS['scoped'])} user=alice endpoints=other\n")
    return path


def bearer(who):
    return {"Authorization": f"Bearer {TOKENS[who]}"}


REST_CALLS = [("post", "/v2/models/{}/infer", BODY), ("get", "/v2/models/{}", None),
              ("get", "/v2/models/{}/versions/1", None), ("get", "/v2/models/{}/ready", None),
              ("get", "/v1/models/{}", None),
              ("post", "/v1/models/{}:predict", {"instances": X.tolist()})]


@pytest.mark.parametrize("method,path,body", REST_CALLS)
def test_rest_answers_another_users_token_as_for_an_unknown_endpoint(local, token_file,
                                                                     method, path, body):
    rest = TestClient(build_rest_app(local.service, TokenFile(token_file)))
    kwargs = {"json": body} if body is not None else {}

    def call(who, name):
        return getattr(rest, method)(path.format(name), headers=bearer(who), **kwargs)
    for who in ("alice", "admin", "legacy"):
        ok = call(who, "clf")
        assert ok.status_code == 200, (who, ok.text)
    unknown = call("bob", "ghost")
    assert unknown.status_code == 404
    for who, name in (("bob", "clf"), ("bob", "broken"), ("scoped", "clf")):
        r = call(who, name)
        assert (r.status_code, r.json()) == (404, {"error": f"model {name!r} is not deployed"})
    assert call("scoped", "other").status_code == 200


def test_rest_owner_sees_her_broken_endpoint_as_not_ready(local, token_file):
    rest = TestClient(build_rest_app(local.service, TokenFile(token_file)))
    r = rest.get("/v2/models/broken", headers=bearer("alice"))
    assert r.status_code == 503 and "not registered" in r.json()["error"]


def grpc_call(servicer, rpc, request, who):
    class Ctx(RecordingContext):
        def invocation_metadata(self):
            return [("authorization", f"Bearer {TOKENS[who]}")]
    ctx = Ctx()
    return asyncio.run(getattr(servicer, rpc)(request, ctx)), ctx


def infer_request(name):
    req = pb.ModelInferRequest(model_name=name)
    req.inputs.add(name="input", datatype="FP32", shape=[2, 3])
    req.raw_input_contents.append(X.tobytes())
    return req


def test_grpc_answers_another_users_token_as_for_an_unknown_endpoint(local, token_file):
    servicer = GrpcInference(local.service, TokenFile(token_file))
    for who in ("alice", "admin", "legacy"):
        resp, ctx = grpc_call(servicer, "ModelInfer", infer_request("clf"), who)
        assert ctx.code is None and len(resp.outputs) == 3
        resp, ctx = grpc_call(servicer, "ModelMetadata", pb.ModelMetadataRequest(name="clf"),
                              who)
        assert ctx.code is None and resp.name == "clf"
        resp, _ = grpc_call(servicer, "ModelReady", pb.ModelReadyRequest(name="clf"), who)
        assert resp.ready
    for who, name in (("bob", "clf"), ("bob", "ghost"), ("bob", "broken"), ("scoped", "clf")):
        for rpc, request in (("ModelInfer", infer_request(name)),
                             ("ModelMetadata", pb.ModelMetadataRequest(name=name))):
            resp, ctx = grpc_call(servicer, rpc, request, who)
            assert ctx.code == grpc.StatusCode.NOT_FOUND, (who, name, rpc)
            assert ctx.details == f"model {name!r} is not deployed"
        resp, ctx = grpc_call(servicer, "ModelReady", pb.ModelReadyRequest(name=name), who)
        assert ctx.code is None and not resp.ready
