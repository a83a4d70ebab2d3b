"""Dynamic batching: the plain-asyncio `Batcher`, the rule of which requests may share a pass,
and batching through `InferenceService` + `LocalBackend` with an endpoint's options."""
import asyncio
import time

import numpy as np
import pytest
import torch

from tests.unit.test_client_sdk import fake_api  # noqa: F401 - fixture
from trainserve.core.pb import deployment_pb2
from trainserve.serve.batching import Batcher, batchable, split_rows
from trainserve.serve.dataplane import InferInput, InferRequest
from trainserve.serve.host import LocalBackend
from trainserve.serve.predictor import Predictor
from trainserve.serve.resolver import Batching
from trainserve.serve.testing import LocalServing


def run(coro):
    return asyncio.run(coro)


class Model:
    """A row-wise "model" that remembers the batches it ran: output = 2 * input."""

    def __init__(self, fail: Exception | None = None):
        self.batches: list[int] = []
        self.fail = fail

    def __call__(self, inputs, parameters=None):
        (x,) = inputs.values()
        self.batches.append(len(x))
        if self.fail:
            raise self.fail
        return {"double": x * 2, "sum": x.sum(axis=1)}


def rows(n, start=0, width=3):
    return np.arange(start, start + n * width, dtype=np.float32).reshape(n, width)


async def submit_all(batcher, model, requests, max_batch_size=32, wait_ms=5.0,
                     model_id="m:1", stagger_s=0.0):
    async def one(x):
        return await batcher.submit(model_id, {"input": x}, model, max_batch_size, wait_ms)
    tasks = []
    for x in requests:
        tasks.append(asyncio.create_task(one(x)))
        if stagger_s:
            await asyncio.sleep(stagger_s)
    return await asyncio.gather(*tasks, return_exceptions=True)


def test_concurrent_requests_run_as_one_pass_and_get_their_own_rows():
    batcher, model = Batcher(), Model()
    requests = [rows(n, start=10 * i) for i, n in enumerate([1, 3, 2, 1])]
    outs = run(submit_all(batcher, model, requests))
    assert model.batches == [7]
    for x, out in zip(requests, outs):
        np.testing.assert_array_equal(out["double"], x * 2)
        np.testing.assert_array_equal(out["sum"], x.sum(axis=1))
    assert batcher.sizes() == {"m:1": {4: 1}}
    assert batcher.pending() == 0


def test_a_lone_request_runs_when_the_wait_is_over():
    batcher, model = Batcher(), Model()

    async def go():
        t = time.perf_counter()
        out = await batcher.submit("m:1", {"input": rows(2)}, model, 32, 20.0)
        return out, time.perf_counter() - t
    out, took = run(go())
    np.testing.assert_array_equal(out["double"], rows(2) * 2)
    assert 0.015 <= took < 1.0
    assert model.batches == [2] and batcher.sizes() == {"m:1": {1: 1}}


def test_requests_after_the_wait_start_a_new_batch():
    batcher, model = Batcher(), Model()
    run(submit_all(batcher, model, [rows(1)] * 4, wait_ms=1.0, stagger_s=0.02))
    assert model.batches == [1, 1, 1, 1]
    assert batcher.sizes() == {"m:1": {1: 4}}


def test_a_full_batch_runs_at_once_and_never_exceeds_max_batch_size():
    batcher, model = Batcher(), Model()

    async def go():
        tasks = [asyncio.create_task(batcher.submit("m:1", {"input": rows(3, start=i)}, model,
                                                    8, 10_000)) for i in range(7)]
        await asyncio.sleep(0.05)
        done = sum(t.done() for t in tasks)
        for t in tasks:
            t.cancel()
        return done
    assert run(go()) == 6  # three full passes of 6 (a third request would make 9); the
    assert model.batches == [6, 6, 6]  # seventh waits for its (long) timer


def test_a_request_as_large_as_max_batch_size_runs_alone():
    batcher, model = Batcher(), Model()
    outs = run(submit_all(batcher, model, [rows(1), rows(4, start=100), rows(1, start=7)],
                          max_batch_size=4))
    assert sorted(model.batches) == [2, 4]
    np.testing.assert_array_equal(outs[1]["double"], rows(4, start=100) * 2)
    assert batcher.sizes() == {"m:1": {1: 1, 2: 1}}


def test_errors_reach_every_request_of_the_pass():
    batcher, model = Batcher(), Model(fail=ValueError("bad weights"))
    outs = run(submit_all(batcher, model, [rows(1)] * 5))
    assert model.batches == [5]
    assert all(isinstance(o, ValueError) and str(o) == "bad weights" for o in outs)
    assert batcher.pending() == 0


def test_outputs_that_are_not_row_wise_fail_every_request():
    batcher = Batcher()
    outs = run(submit_all(batcher, lambda inputs: {"one": np.zeros(1)}, [rows(2)] * 2))
    assert all(isinstance(o, ValueError) and "cannot be split" in str(o) for o in outs)


def test_models_and_row_shapes_queue_apart():
    batcher, model = Batcher(), Model()

    async def go():
        a = [batcher.submit("a:1", {"input": rows(1)}, model, 32, 5) for _ in range(3)]
        b = [batcher.submit("b:1", {"input": rows(1)}, model, 32, 5) for _ in range(2)]
        wide = [batcher.submit("a:1", {"input": rows(1, width=5)}, model, 32, 5)]
        return await asyncio.gather(*a, *b, *wide)
    outs = run(go())
    assert sorted(model.batches) == [1, 2, 3]
    assert outs[-1]["double"].shape == (1, 5)
    assert batcher.sizes() == {"a:1": {1: 1, 3: 1}, "b:1": {2: 1}}


def test_the_observer_sees_every_pass():
    seen = []
    batcher = Batcher(on_batch=lambda model_id, n: seen.append((model_id, n)))
    run(submit_all(batcher, Model(), [rows(1)] * 3))
    batcher.run_alone("m:1", {"input": rows(1)}, Model())
    assert seen == [("m:1", 3), ("m:1", 1)]


def test_split_rows():
    parts = split_rows({"y": np.arange(6)}, [1, 2, 3])
    assert [p["y"].tolist() for p in parts] == [[0], [1, 2], [3, 4, 5]]


@pytest.mark.parametrize("task, inputs, parameters, expected", [
    ("classification", {"input": np.zeros((2, 4), np.float32)}, {}, True),
    ("regression", {"input": np.zeros((2, 4), np.float32)}, None, True),
    ("reconstruction", {"input": np.zeros((2, 4), np.float32)}, {}, True),
    ("seq2seq", {"tokens": np.zeros((2, 5), np.int64)}, {}, True),
    ("classification", {"input": np.zeros((2, 4), np.float32)}, {"seed": 1}, False),
    ("reconstruction", {"num_samples": np.array([3], np.int64)}, {}, False),  # a VAE sampling
    ("generation", {"num_samples": np.array([3], np.int64)}, {}, False),
    ("language_model", {"prompt": np.array([b"ab"], dtype=object)},
     {"max_new_tokens": 5, "temperature": 1.0}, False),
])
def test_only_row_wise_requests_without_parameters_are_batchable(task, inputs, parameters,
                                                                  expected):
    assert batchable(task, inputs, parameters) is expected


# ------------------------------------------------------- through the service and backend

META = {"task": "classification", "class_names": ["a", "b", "c"], "input_shape": [4],
        "output_dim": 3, "preprocessing": {"kind": "standard", "shift": [1, 2, 3, 4],
                                           "scale": [2, 2, 2, 2]}}


def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def serving(max_batch_size: int, wait_ms: float | None = 5.0) -> LocalServing:
    s = LocalServing()
    s.register("iris-mlp", 1, mlp(), META)
    options = deployment_pb2.ServingOptions(max_batch_size=max_batch_size)
    if wait_ms is not None:
        options.batch_wait_ms = wait_ms
    s.deployments.put(deployment_pb2.Deployment(
        name="iris", model_name="iris-mlp", model_version=1, options=options,
        state=deployment_pb2.DEPLOYMENT_STATE_READY))
    return s


def infer_many(s: LocalServing, xs, parameters=None):
    async def go():
        return await asyncio.gather(*(s.service.infer("iris", "", InferRequest(
            [InferInput("input", "FP32", x.shape, x)], parameters=parameters or {}))
            for x in xs))
    return run(go())


@pytest.mark.parametrize("max_batch_size, expected", [(32, {"iris-mlp:1": {16: 1}}),
                                                      (0, {"iris-mlp:1": {1: 16}})])
def test_the_endpoints_options_turn_batching_on(max_batch_size, expected):
    s = serving(max_batch_size)
    xs = [np.random.default_rng(i).normal(3, 2, (1 + i % 3, 4)).astype(np.float32)
          for i in range(16)]
    responses = infer_many(s, xs)
    want = Predictor(mlp(), META).predict
    for x, resp in zip(xs, responses):
        got = {o.name: o.data for o in resp.outputs}
        np.testing.assert_allclose(got["probabilities"], want(x)["probabilities"], rtol=1e-6)
        np.testing.assert_array_equal(got["label"], want(x)["label"])
    assert run(s.backend.stats()) == {"batch_sizes": expected}


def test_requests_with_parameters_run_alone():
    s = serving(32)
    x = {"input": np.ones((1, 4), np.float32)}

    async def go():
        return await asyncio.gather(
            *(s.backend.predict("iris-mlp:1", "/models/iris-mlp/1", x, {"seed": i},
                                Batching(32, 5.0)) for i in range(4)))
    run(go())
    assert s.backend.batcher.sizes() == {"iris-mlp:1": {1: 4}}


def test_parameters_a_model_does_not_read_do_not_stop_batching():
    s = serving(32)
    infer_many(s, [np.ones((1, 4), np.float32)] * 4, parameters={"binary_data_output": True})
    assert s.backend.batcher.sizes() == {"iris-mlp:1": {4: 1}}


def test_the_default_wait_applies_when_unset():
    s = serving(8, wait_ms=None)
    ep = run(s.resolver.resolve("iris"))
    assert ep.batching == Batching(8, 2.0) and ep.batching.enabled


def test_local_backend_without_batching_counts_single_passes():
    backend = LocalBackend(lambda d: type("A", (), {"module": mlp(), "meta": META})())
    run(backend.predict("m:1", "/m", {"input": np.ones((2, 4), np.float32)}, {}))
    assert backend.batcher.sizes() == {"m:1": {1: 1}}


# ---------------------------------------------------------- options and host scaling


def test_serving_options_are_checked():
    from trainserve.core.errors import InvalidArgument
    from trainserve.registry.service import check_serving_options

    check_serving_options(deployment_pb2.ServingOptions(max_batch_size=4096, batch_wait_ms=0))
    check_serving_options(deployment_pb2.ServingOptions())
    for options, field in [({"max_batch_size": 4097}, "options.max_batch_size"),
                           ({"max_batch_size": -1}, "options.max_batch_size"),
                           ({"max_batch_size": 8, "batch_wait_ms": 1000.5},
                            "options.batch_wait_ms"),
                           ({"batch_wait_ms": -1}, "options.batch_wait_ms")]:
        with pytest.raises(InvalidArgument) as err:
            check_serving_options(deployment_pb2.ServingOptions(**options))
        assert err.value.field == field


def test_host_options_keep_one_replica_by_default_and_autoscale_when_asked():
    from trainserve.serve.config import ServeConfig

    assert ServeConfig().host_options() == {
        "num_replicas": 1, "ray_actor_options": {"num_cpus": 0.0},
        "max_ongoing_requests": 256}
    scaled = ServeConfig(replicas=0, max_replicas=4, target_ongoing_requests=32,
                         num_cpus=0.5, num_gpus=0.25).host_options()
    assert scaled["autoscaling_config"] == {"min_replicas": 0, "max_replicas": 4,
                                            "target_ongoing_requests": 32}
    assert "num_replicas" not in scaled
    assert scaled["ray_actor_options"] == {"num_cpus": 0.5, "num_gpus": 0.25}
    for bad in ({"max_replicas": 1, "replicas": 2}, {"replicas": 0}, {"num_gpus": -1},
                {"target_ongoing_requests": 0}, {"max_ongoing_requests": 0}):
        with pytest.raises(ValueError):
            ServeConfig(**bad)


def test_the_application_applies_the_host_options():
    from trainserve.serve.app import build_app
    from trainserve.serve.config import ServeConfig

    colocated = build_app(ServeConfig(max_replicas=3, num_gpus=0.5))
    gateway = colocated._bound_deployment
    assert gateway.init_args[0] is None  # no model host: the gateway runs the models
    app = build_app(ServeConfig(max_replicas=3, num_gpus=0.5, colocate_models=False))
    host = app._bound_deployment.init_args[0]._bound_deployment  # the bound model host
    for runs_models in (gateway, host):
        assert runs_models.max_ongoing_requests == 256
        assert runs_models._deployment_config.autoscaling_config.max_replicas == 3
        assert runs_models.ray_actor_options["num_gpus"] == 0.5


def test_cli_deploy_sends_the_batching_options(fake_api, monkeypatch, tmp_path):  # noqa: F811
    from typer.testing import CliRunner

    from trainserve.cli.main import app

    api, address = fake_api
    monkeypatch.setenv("TRAINSERVE_API", address)
    monkeypatch.setenv("TRAINSERVE_STATE_DIR", str(tmp_path / "state"))
    for args, want in [(["--max-batch-size", "32", "--batch-wait-ms", "2"],
                        deployment_pb2.ServingOptions(max_batch_size=32, batch_wait_ms=2)),
                       ([], deployment_pb2.ServingOptions())]:
        result = CliRunner().invoke(app, ["deploy", "xor-mlp", "--name", "xor", "--no-wait",
                                          "-o", "json", *args])
        assert result.exit_code == 0, result.output
        (_, request), = [r for r in api.requests[-1:] if r[0] == "Deploy"]
        assert request.options == want
        assert request.options.HasField("batch_wait_ms") == want.HasField("batch_wait_ms")
