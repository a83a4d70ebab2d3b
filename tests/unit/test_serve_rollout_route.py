"""Rollout routing over in-memory records: the canary's share, only once it is loaded."""
import asyncio

import numpy as np
import pytest
import torch

from trainserve.core.errors import NotFound
from trainserve.core.pb import deployment_pb2
from trainserve.serve.dataplane import InferInput, InferRequest
from trainserve.serve.resolver import Route
from trainserve.serve.testing import LocalServing

META = {"task": "classification", "class_names": ["a", "b"], "input_shape": [2],
        "output_dim": 2}
READY, PENDING = deployment_pb2.DEPLOYMENT_STATE_READY, deployment_pb2.DEPLOYMENT_STATE_PENDING


def _serving(canary_state, percent=30):
    serving = LocalServing(ttl_s=0.0)
    for version in (1, 2):
        serving.register("m", version, torch.nn.Linear(2, 2), META)
    serving.deployments.put(deployment_pb2.Deployment(
        name="ep", model_name="m", model_version=1, state=READY, canary_version=2,
        canary_percent=percent, canary_state=canary_state))
    return serving


def _versions(serving, n=400):
    x = np.zeros((1, 2), np.float32)
    request = InferRequest([InferInput("input", "FP32", x.shape, x)], [])

    async def go():
        return [(await serving.service.infer("ep", "", request)).model_version
                for _ in range(n)]
    return asyncio.run(go())


def test_a_loaded_canary_takes_its_share():
    got = _versions(_serving(READY, percent=30))
    assert 0.2 < got.count("2") / len(got) < 0.4


def test_a_canary_still_loading_takes_nothing_but_can_be_warmed():
    serving = _serving(PENDING)
    assert set(_versions(serving, 100)) == {"1"}
    assert asyncio.run(serving.service.warm("ep", canary=True)) == "m:2"
    assert asyncio.run(serving.service.warm("ep")) == "m:1"


def test_warming_a_canary_that_does_not_exist_is_not_found():
    serving = LocalServing()
    serving.register("m", 1, torch.nn.Linear(2, 2), META, endpoint="ep")
    with pytest.raises(NotFound):
        asyncio.run(serving.service.warm("ep", canary=True))


@pytest.mark.parametrize("draw,ready,expect", [(0.29, True, "canary"), (0.31, True, "stable"),
                                               (0.0, False, "stable")])
def test_route_pick(draw, ready, expect):
    route = Route("stable", "canary", 30, ready)
    assert route.pick(lambda: draw) == expect
