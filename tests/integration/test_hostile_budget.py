"""A network too large for any worker, submitted through the real job API: refused at once with
RESOURCE_EXHAUSTED and its numbers, without the API building it (its memory stays flat)."""
from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from tests.integration.helpers import rpc_error
from trainserve.core.spec import parse_spec
from trainserve.core.pb import job_pb2

pytestmark = pytest.mark.integration


def _giant_mlp(width: int):
    """64 hidden layers of `width` units on digits: ~17 billion parameters at 16 384."""
    return parse_spec({"dataset": {"name": "digits"}, "model": {"mlp": {"hidden": [width] * 64}},
                       "training": {"batch_size": 64}})


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def _refusal(stubs, spec) -> tuple[grpc.RpcError, float]:
    start = time.monotonic()
    err = rpc_error(stubs.jobs.SubmitJob, job_pb2.SubmitJobRequest(spec=spec), timeout=60)
    return err, time.monotonic() - start


def test_giant_mlp_is_refused_quickly_with_its_numbers_and_flat_api_memory(stack, stubs):
    api = stack.pid("api")
    # The API loaded torch at start-up (`budget.warm`): the first refusal is as quick.
    err, first = _refusal(stubs, _giant_mlp(16384))
    assert first < 2.0, f"the first refusal took {first:.2f} s"
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.details()
    assert "16.9 billion parameters and needs ~253 GiB to train at batch 64 per worker" \
        in err.details()
    assert "the server's limit is 100 million parameters / 8 GiB per worker" in err.details()
    before = _rss_bytes(api)
    peak, took_all = before, []
    # Widths the API has not seen: each is a new build on meta, none of them a cache hit.
    for width in (16383, 16000, 15000, 14000, 12000):
        err, took = _refusal(stubs, _giant_mlp(width))
        peak = max(peak, _rss_bytes(api))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.details()
        assert "billion parameters" in err.details() and "spec.model" in err.details()
        assert took < 2.0, f"refusing width {width} took {took:.2f} s"
        took_all.append(took)
    shown = ", ".join(f"{t * 1000:.0f}" for t in [first, *took_all])
    print(f"refusals took {shown} ms; API RSS {before >> 20} MiB before, peak {peak >> 20} MiB")
    # 64 x 16 000 x 16 000 float32 weights alone would be 61 GiB; a few MiB of Python objects
    # (the meta modules, the cached estimates) is what the refusals may leave behind.
    assert peak - before < 64 << 20, f"API RSS grew {(peak - before) >> 20} MiB"
    jobs = stubs.jobs.ListJobs(job_pb2.ListJobsRequest(), timeout=10).jobs
    assert not [j for j in jobs if j.spec.model.mlp.hidden[:1] and
                j.spec.model.mlp.hidden[0] >= 12000], "a refused job was queued"
