"""Bounded request bodies: the streaming decompressor's output limit, the read cap (declared
length first, then counted), and the REST and gRPC refusals (413 / RESOURCE_EXHAUSTED naming
the limit)."""
import asyncio
import gzip
import json
import struct
import tracemalloc
import zlib

import grpc
import numpy as np
import pytest
import torch
from starlette.testclient import TestClient

from trainserve._gen.inference import grpc_predict_v2_pb2 as pb
from trainserve.core.errors import InvalidArgument, ResourceExhausted
from trainserve.serve.bodies import BodyTooLarge, inflate, read_capped
from trainserve.serve.config import MAX_REQUEST_BYTES, ServeConfig, parse_option
from trainserve.serve.grpc_api import GrpcInference
from trainserve.serve.rest import build_rest_app
from trainserve.serve.testing import LocalServing, RecordingContext

MiB = 2**20
LIMIT = 1 * MiB


def gzip_bomb(inflated: int) -> bytes:
    """One valid gzip member of zeros that inflates to `inflated` bytes (whole MiB), about
    1/1000 of that, built in a fraction of a second without holding its output: after a full
    flush deflate starts afresh, so one MiB's compressed segment repeats as it is."""
    block, n = bytes(MiB), inflated // MiB
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    segment = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(n):
        crc = zlib.crc32(block, crc)
    return (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + segment * n
            + c.flush(zlib.Z_FINISH) + struct.pack("<II", crc, (n * MiB) & 0xFFFFFFFF))


def test_the_bomb_is_a_valid_gzip_body():
    assert gzip.decompress(gzip_bomb(8 * MiB)) == bytes(8 * MiB)


# ------------------------------------------------------------------------ the decompressor


@pytest.mark.parametrize("encoding,pack", [
    ("gzip", gzip.compress), ("GZIP ", gzip.compress), ("x-gzip", gzip.compress),
    ("deflate", zlib.compress)])
def test_inflate_gives_the_body_back(encoding, pack):
    body = json.dumps({"x": list(range(1000))}).encode()
    assert inflate(pack(body), encoding, LIMIT) == body


def test_identity_is_left_as_it_is():
    assert inflate(b"abc", None, LIMIT) == b"abc" and inflate(b"abc", "identity", 2) == b"abc"


def test_an_output_right_at_the_limit_passes_one_byte_more_does_not():
    assert len(inflate(gzip.compress(bytes(LIMIT)), "gzip", LIMIT)) == LIMIT
    with pytest.raises(BodyTooLarge, match=f"limit of {LIMIT} bytes"):
        inflate(gzip.compress(bytes(LIMIT + 1)), "gzip", LIMIT)


def test_a_gzip_bomb_is_refused_in_bounded_memory():
    bomb = gzip_bomb(1024 * MiB)  # 1 GiB of zeros in about 1 MiB
    assert len(bomb) < 2 * MiB
    tracemalloc.start()
    try:
        with pytest.raises(BodyTooLarge) as info:
            inflate(bomb, "gzip", 16 * MiB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40 * MiB, peak  # the limit and a copy of the input tail, not a gigabyte
    assert info.value.http_status == 413 and info.value.grpc_code == "RESOURCE_EXHAUSTED"
    assert isinstance(info.value, ResourceExhausted)
    assert "once inflated" in info.value.message and "ServeConfig.max_request_bytes" in \
        info.value.message


def test_gzip_members_are_inflated_in_turn_within_one_limit():
    body = gzip.compress(b"a" * 100) + gzip.compress(b"b" * 100)
    assert inflate(body, "gzip", LIMIT) == b"a" * 100 + b"b" * 100
    many = b"".join(gzip.compress(bytes(MiB // 4)) for _ in range(5))  # 1.25 MiB in all
    with pytest.raises(BodyTooLarge):
        inflate(many, "gzip", LIMIT)


@pytest.mark.parametrize("body,encoding,match", [
    (b"not gzip", "gzip", "cannot decompress the gzip body"),
    (gzip.compress(b"x" * 1000)[:-12], "gzip", "truncated"),
    (zlib.compress(b"x") + b"junk", "deflate", "4 bytes follow the end"),
    (b"", "gzip", "truncated"),
    (b"x", "br", "Content-Encoding 'br' is not supported"),
])
def test_malformed_compressed_bodies_are_400(body, encoding, match):
    with pytest.raises(InvalidArgument, match=match):
        inflate(body, encoding, LIMIT)


# ------------------------------------------------------------------------- the read cap


def stream(chunks, pulled):
    async def gen():
        for chunk in chunks:
            pulled.append(len(chunk))
            yield chunk
    return gen()


def test_read_capped_stops_at_the_first_chunk_past_the_limit():
    pulled = []
    chunks = [bytes(64 * 1024)] * 1000  # 64 MiB offered
    with pytest.raises(BodyTooLarge, match="the request body is larger than the limit"):
        asyncio.run(read_capped(stream(chunks, pulled), None, LIMIT))
    assert sum(pulled) == LIMIT + 64 * 1024  # one chunk past the limit, no more


def test_a_declared_length_past_the_limit_is_refused_before_reading():
    pulled = []
    with pytest.raises(BodyTooLarge, match=r"\(2097152 bytes by its Content-Length\)"):
        asyncio.run(read_capped(stream([b"x"], pulled), str(2 * MiB), LIMIT))
    assert pulled == []
    with pytest.raises(InvalidArgument, match="Content-Length 'lots'"):
        asyncio.run(read_capped(stream([b"x"], pulled), "lots", LIMIT))
    assert asyncio.run(read_capped(stream([b"ab", b"c"], pulled), "3", LIMIT)) == b"abc"


def test_serve_config_owns_the_limit():
    assert ServeConfig().max_request_bytes == MAX_REQUEST_BYTES == 16 * MiB
    assert parse_option("max_request_bytes=1048576") == ("max_request_bytes", MiB)
    with pytest.raises(ValueError, match="max_request_bytes must be >= 65536"):
        ServeConfig(max_request_bytes=1000)


def test_the_ray_head_gets_the_grpc_message_limit(tmp_path):
    from trainserve.serve.config import serve_mode_env
    ports = iter(range(20000, 20010))
    for mode in ("default", "throughput"):
        env = serve_mode_env(mode, tmp_path, lambda: next(ports))
        assert env["RAY_SERVE_GRPC_MAX_MESSAGE_SIZE"] == str(MAX_REQUEST_BYTES)


# ------------------------------------------------------------------------ REST and gRPC

META = {"task": "classification", "class_names": ["no", "yes"], "input_shape": [3],
        "output_dim": 2, "preprocessing": {"kind": "none", "shift": [], "scale": []}}
X = np.arange(6, dtype=np.float32).reshape(2, 3)
BODY = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 3],
                    "data": X.reshape(-1).tolist()}]}


@pytest.fixture(scope="module")
def local():
    torch.manual_seed(0)
    serving = LocalServing()
    serving.register("clf", 1, torch.nn.Sequential(torch.nn.Linear(3, 2)), META,
                     endpoint="clf")
    return serving


@pytest.fixture
def rest(local):
    return TestClient(build_rest_app(local.service, max_request_bytes=LIMIT))


@pytest.mark.parametrize("path", ["/v2/models/clf/infer", "/v1/models/clf:predict"])
def test_rest_refuses_a_large_body_with_413(rest, path):
    big = b'{"inputs": [' + b" " * (LIMIT + 10) + b"]}"
    r = rest.post(path, content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json() == {"error": f"the request body ({len(big)} bytes by its Content-Length) "
                                 f"is larger than the limit of {LIMIT} bytes (1 MiB, "
                                 "ServeConfig.max_request_bytes)"}

    def chunked():  # no Content-Length: counted as it comes
        for _ in range(64):
            yield bytes(64 * 1024)
    r = rest.post(path, content=chunked())
    assert r.status_code == 413 and "the request body is larger than the limit" in r.text


def test_rest_refuses_a_gzip_bomb_with_413_and_takes_gzip_below_the_limit(rest):
    r = rest.post("/v2/models/clf/infer", content=gzip_bomb(64 * MiB),
                  headers={"Content-Encoding": "gzip"})
    assert r.status_code == 413 and "gzip request body once inflated" in r.json()["error"]
    for path, body in (("/v2/models/clf/infer", BODY),
                       ("/v1/models/clf:predict", {"instances": X.tolist()})):
        r = rest.post(path, content=gzip.compress(json.dumps(body).encode()),
                      headers={"Content-Encoding": "gzip"})
        assert r.status_code == 200, r.text


def test_grpc_refuses_a_large_message(local):
    servicer = GrpcInference(local.service, max_request_bytes=LIMIT)
    req = pb.ModelInferRequest(model_name="clf")
    req.inputs.add(name="input", datatype="FP32", shape=[2, 3])
    req.raw_input_contents.append(X.tobytes())
    ctx = RecordingContext()
    asyncio.run(servicer.call("ModelInfer", req.SerializeToString(), ctx))
    assert ctx.code is None
    req.id = "x" * LIMIT
    ctx = RecordingContext()
    asyncio.run(servicer.call("ModelInfer", req.SerializeToString(), ctx))
    assert ctx.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"limit of {LIMIT} bytes" in ctx.details
