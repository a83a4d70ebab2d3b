"""InferenceService and endpoint resolution over in-memory records (no servers)."""
import asyncio

import numpy as np
import pytest
import torch

from trainserve.core.errors import InvalidArgument, ModelNotReady, NotFound, Unavailable
from trainserve.serve.config import ServeConfig
from trainserve.serve.dataplane import InferInput, InferRequest, RequestedOutput
from trainserve.serve.predictor import Predictor
from trainserve.serve.resolver import EndpointResolver
from trainserve.serve.testing import LocalServing, MemoryDeploymentStore, MemoryModelStore
from trainserve.serve.signature import version_record


def run(coro):
    return asyncio.run(coro)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def mlp(n_in=4, n_out=3, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(n_in, 8), torch.nn.Tanh(),
                               torch.nn.Linear(8, n_out))


IRIS_META = {"task": "classification", "class_names": ["setosa", "versicolor", "virginica"],
             "input_shape": [4], "output_dim": 3,
             "preprocessing": {"kind": "standard", "shift": [5.8, 3.0, 3.7, 1.2],
                               "scale": [0.8, 0.4, 1.7, 0.7]}}


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def local(clock):
    serving = LocalServing(clock=clock)
    serving.register("iris-mlp", 1, mlp(), IRIS_META, endpoint="iris")
    return serving


def request(x, name="input", outputs=()):
    x = np.asarray(x, np.float32)
    return InferRequest([InferInput(name, "FP32", x.shape, x)],
                        [RequestedOutput(o) for o in outputs])


def test_infer_answers_the_models_own_forward(local):
    x = np.random.default_rng(1).normal(5, 1, size=(6, 4)).astype(np.float32)
    resp = run(local.service.infer("iris", "", request(x)))
    expected = Predictor(mlp(), IRIS_META).predict(x)
    outs = {o.name: o for o in resp.outputs}
    assert list(outs) == ["probabilities", "label", "class_name"]
    np.testing.assert_allclose(outs["probabilities"].data, expected["probabilities"], rtol=1e-6)
    np.testing.assert_array_equal(outs["label"].data, expected["label"])
    assert (resp.model_name, resp.model_version) == ("iris", "1")


def test_requested_outputs_only(local):
    resp = run(local.service.infer("iris", "1", request(np.ones((1, 4)), outputs=["label"])))
    assert [o.name for o in resp.outputs] == ["label"]


def test_metadata_comes_from_the_version_record(local):
    md = run(local.service.model_metadata("iris"))
    assert md.versions == ("1",) and md.platform == "pytorch"
    assert [(s.name, s.datatype, s.shape) for s in md.inputs] == [("input", "FP32", (-1, 4))]
    assert [(s.name, s.datatype, s.shape) for s in md.outputs] == [
        ("probabilities", "FP32", (-1, 3)), ("label", "INT64", (-1,)),
        ("class_name", "BYTES", (-1,))]


def test_unknown_models_and_versions_are_not_found(local):
    with pytest.raises(NotFound, match="model 'nope' is not deployed"):
        run(local.service.infer("nope", "", request(np.ones((1, 4)))))
    with pytest.raises(NotFound, match="model 'iris' has no version '2'; it serves version 1"):
        run(local.service.model_metadata("iris", "2"))


def test_invalid_input_never_reaches_the_backend(local):
    with pytest.raises(InvalidArgument, match=r"expected FP32 \[-1, 4\]"):
        run(local.service.infer("iris", "", request(np.ones((1, 5)))))
    assert local.backend.loads == 0


def test_models_load_once_and_ready_reports_load_failures(local):
    assert run(local.service.model_ready("iris"))
    run(local.service.infer("iris", "", request(np.ones((2, 4)))))
    assert local.backend.loads == 1
    local.models.put(version_record("iris-mlp", 2, IRIS_META, "/models/missing"))
    local.deploy("broken", "iris-mlp", 2)
    assert run(local.service.model_ready("broken")) is False
    with pytest.raises(ModelNotReady, match="cannot load the model in /models/missing"):
        run(local.service.infer("broken", "", request(np.ones((1, 4)))))


def test_redeploy_takes_effect_after_the_cache_ttl(local, clock):
    local.register("iris-mlp", 2, mlp(seed=5), IRIS_META)
    x = request(np.ones((1, 4)))
    assert run(local.service.infer("iris", "", x)).model_version == "1"
    local.deploy("iris", "iris-mlp", 2)
    clock.now += 0.5
    assert run(local.service.infer("iris", "", x)).model_version == "1"  # cached
    clock.now += 0.6
    assert run(local.service.infer("iris", "", x)).model_version == "2"


def test_resolution_is_cached_and_warm_bypasses_the_cache(local, clock):
    for _ in range(5):
        run(local.service.model_metadata("iris"))
    assert local.deployments.reads == 1
    assert run(local.service.warm("iris")) == "iris-mlp:1"
    assert local.deployments.reads == 2 and local.backend.loads == 1


def test_unknown_names_are_cached_too_but_not_for_long(local, clock):
    with pytest.raises(NotFound):
        run(local.service.model_metadata("later"))
    local.register("later-m", 1, mlp(), IRIS_META, endpoint="later")
    clock.now += 1.01
    assert run(local.service.model_metadata("later")).versions == ("1",)


def test_a_dangling_deployment_is_not_ready(local):
    local.deploy("dangling", "ghost", 3)
    with pytest.raises(ModelNotReady, match="points at ghost:3, which is not registered"):
        run(local.service.model_metadata("dangling"))


class FlakyDeployments(MemoryDeploymentStore):
    def __init__(self):
        super().__init__()
        self.down = True

    def get(self, name):
        if self.down:
            raise ConnectionError("redis went away")
        return super().get(name)


def test_an_unreachable_store_is_unavailable_and_not_cached():
    deps, models = FlakyDeployments(), MemoryModelStore()
    resolver = EndpointResolver(deps, models)
    with pytest.raises(Unavailable, match="redis went away"):
        run(resolver.resolve("iris"))
    deps.down = False
    with pytest.raises(NotFound):  # asked again at once: the outage was not cached
        run(resolver.resolve("iris"))


def test_artifact_uris_relative_to_storage():
    r = EndpointResolver(MemoryDeploymentStore(), MemoryModelStore(), storage_dir="/srv/ts")
    assert r.artifact_dir("file:///srv/ts/models/m/1") == "/srv/ts/models/m/1"
    assert r.artifact_dir("models/m/1") == "/srv/ts/models/m/1"


def test_serve_config_validation():
    assert ServeConfig().grpc_port == 9000
    with pytest.raises(ValueError, match="must differ"):
        ServeConfig(http_port=9000)
    with pytest.raises(ValueError, match="loader must be 'module:function'"):
        ServeConfig(loader="trainserve.training.artifacts.load_artifact")
    with pytest.raises(ValueError):
        ServeConfig(replicas=0)


class RecordedMetrics:
    def __init__(self):
        self.requests = []

    def request(self, endpoint, model_id, code, seconds):
        self.requests.append((endpoint, model_id, code))

    def batch(self, model_id, requests):
        pass


def test_requests_for_made_up_names_share_one_metrics_label(local):
    from trainserve.serve.service import UNRESOLVED

    local.service.metrics = recorded = RecordedMetrics()
    run(local.service.infer("iris", "", request(np.ones((1, 4)))))
    for made_up in ("nope-1", "nope-2"):
        with pytest.raises(NotFound):
            run(local.service.infer(made_up, "", request(np.ones((1, 4)))))
    local.service.refused("nope-3", InvalidArgument("malformed"))
    assert recorded.requests == [("iris", "iris-mlp:1", "OK"),
                                 (UNRESOLVED, "", "NOT_FOUND"), (UNRESOLVED, "", "NOT_FOUND"),
                                 (UNRESOLVED, "", "INVALID_ARGUMENT")]
