"""Exported models (TorchScript, ONNX) answer what the served predictor answers, on raw inputs.

Tiny models are trained in-process, exported to both formats, loaded back with
`torch.jit.load` and onnxruntime, and compared with `serve.predictor.Predictor`."""
from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import numpy as np
import pytest

from tests.unit.test_cli_commands import assert_error, cli  # noqa: F401 - fixture
from tests.unit.test_client_sdk import FakeApi, fake_api  # noqa: F401 - fixture
from trainserve.core import errors
from trainserve.core.spec import parse_spec
from trainserve.core.pb import model_pb2
from trainserve.registry import export
from trainserve.serve.predictor import Predictor
from trainserve.core.tenancy import Principal
from trainserve.training.artifacts import load_artifact
from trainserve.training.loop import train
from trainserve.training.reporting import NullReporter
from trainserve.training.validate import check_spec

TOL = 1e-4
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
SPECS = {
    "mlp-moons": {"dataset": {"name": "moons", "num_samples": 200, "normalize": "standard"},
                  "model": {"mlp": {"hidden": [16]}}, "training": {"epochs": 3}},
    "lenet5-digits": {"dataset": {"name": "digits", "normalize": "standard"},
                      "model": {"lenet5": {}}, "training": {"epochs": 1}},
    "mlp-diabetes": {"dataset": {"name": "diabetes", "normalize": "standard"},
                     "model": {"mlp": {"hidden": [16]}}, "loss": {"name": "mse"},
                     "training": {"epochs": 3}},
    "ae-digits": {"dataset": {"name": "digits", "normalize": "standard"},
                  "model": {"autoencoder": {"hidden": [32], "latent_dim": 4}},
                  "training": {"epochs": 2}},
}
OUTPUTS = {"classification": ["probabilities", "label"], "regression": ["prediction"],
           "reconstruction": ["reconstruction", "latent"]}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """name -> artifact directory of each tiny model, trained once for the module."""
    root = tmp_path_factory.mktemp("export")
    out = {}
    for name, doc in SPECS.items():
        spec = check_spec(parse_spec({"name": name, **doc}))
        result = train(spec, root / name, NullReporter())
        assert result.status == "succeeded"
        out[name] = Path(result.artifact_dir)
    return out


def _raw_inputs(meta: dict, n: int) -> np.ndarray:
    """Raw inputs in the data's own units (not standardized): the shift/scale matter."""
    rng = np.random.default_rng(n)
    shape = (n, *meta["input_shape"])
    if meta["spec"]["dataset"]["name"] == "digits":
        return rng.uniform(0, 16, shape).astype(np.float32)
    pre = meta["preprocessing"]  # per-feature mean and std of the training split
    return (np.asarray(pre["shift"]) + np.asarray(pre["scale"]) * rng.normal(0, 1.5, shape)
            ).astype(np.float32)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
@pytest.mark.parametrize("name", list(SPECS))
def test_export_matches_the_served_predictor(artifacts, name, fmt):
    loaded = load_artifact(artifacts[name])
    predictor = Predictor(loaded.module, loaded.meta)
    data = export.export_artifact(artifacts[name], fmt, name=name, version=3)
    task = loaded.meta["task"]
    names = OUTPUTS[task]
    if fmt == "onnx":
        import onnxruntime as ort
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == ["input"]
        assert [o.name for o in session.get_outputs()] == names
        meta = session.get_modelmeta().custom_metadata_map
        assert json.loads(meta["version"]) == 3 and json.loads(meta["task"]) == task
    else:
        import torch
        extra = {export.META_EXTRA_FILE: ""}
        torch.jit.load(io.BytesIO(data), _extra_files=extra)
        info = json.loads(extra[export.META_EXTRA_FILE])
        assert info["name"] == name and info["outputs"] == names
    for n in (1, 7):
        x = _raw_inputs(loaded.meta, n)
        expect = predictor.predict(x)
        got = dict(zip(names, export.run_exported(data, fmt, x), strict=True))
        for key in names:
            assert got[key].shape == expect[key].shape, (key, n)
            if key == "label":
                assert got[key].dtype == np.int64
                np.testing.assert_array_equal(got[key], expect[key])
            else:
                diff = float(np.max(np.abs(got[key] - expect[key])))
                print(f"{name} {fmt} n={n} {key}: max abs diff {diff:.2e}")
                assert diff <= TOL, (key, n, diff)


def test_single_logit_classifier_exports_sigmoid_probabilities():
    import torch
    net = torch.nn.Sequential(torch.nn.Linear(2, 1))
    meta = {"task": "classification", "class_names": ["no", "yes"], "input_shape": [2],
            "output_dim": 1, "preprocessing": {"kind": "standard", "shift": [1.0, -1.0],
                                               "scale": [2.0, 0.5]}}
    x = np.random.default_rng(0).normal(size=(7, 2)).astype(np.float32) * 3
    expect = Predictor(net, meta).predict(x)
    for fmt in export.FORMATS:
        probs, label = export.run_exported(export.export_model(net, meta, fmt), fmt, x)
        np.testing.assert_allclose(probs, expect["probabilities"], atol=TOL)
        np.testing.assert_array_equal(label, expect["label"])


@pytest.mark.parametrize("task", ["generation", "seq2seq", "language_model"])
def test_other_tasks_are_refused(task):
    import torch
    meta = {"task": task, "input_shape": [4], "class_names": []}
    with pytest.raises(errors.FailedPrecondition, match="classification, regression and "
                                                        "reconstruction"):
        export.export_model(torch.nn.Identity(), meta, "onnx", name="m", version=1)


def test_unknown_format_is_invalid():
    with pytest.raises(errors.InvalidArgument) as info:
        export.check_format("tflite")
    assert info.value.field == "format"
    assert export.check_format("ONNX") == "onnx"
    assert export.export_filename("digits", 4, "torchscript") == "digits-v4.pt"
    assert export.export_filename("digits", 4, "onnx") == "digits-v4.onnx"


# -- the ModelService servicer ----------------------------------------------------------------

# The caller the servicer sees (the auth interceptor sets one for every call; outside a call
# nobody is, and the servicer refuses).
ADA = Principal("ada", "user")


class _Core:
    """ModelsCore's `get`, over one artifact directory."""

    def __init__(self, artifact_dir: Path):
        self.artifact_dir = artifact_dir

    def get(self, name: str, version: int = 0, caller=None, alias: str = ""
            ) -> model_pb2.ModelVersion:
        if name != "moons":
            raise errors.NotFound(f"model {name!r} not found")
        return model_pb2.ModelVersion(name=name, version=version or 2,
                                      artifact_uri=str(self.artifact_dir))


async def _inline(fn, *args, **kwargs):
    return fn(*args, **kwargs)


def _stream(servicer, **request) -> list:
    from trainserve.api.auth import acting_as

    async def collect():
        req = model_pb2.ExportModelRequest(**request)
        return [chunk async for chunk in servicer.ExportModel(req, None)]
    with acting_as(ADA):  # what the auth interceptor sets for a call
        return asyncio.run(collect())


def test_servicer_streams_the_export_in_chunks(artifacts, monkeypatch):
    from trainserve.api import servicers
    monkeypatch.setattr(servicers, "EXPORT_CHUNK_BYTES", 512)
    servicer = servicers.ModelServicer(_Core(artifacts["mlp-moons"]), _inline)
    chunks = _stream(servicer, name="moons", format="onnx")
    assert len(chunks) > 1 and all(len(c.data) <= 512 for c in chunks)
    assert chunks[0].filename == "moons-v2.onnx" and chunks[0].format == "onnx"
    assert chunks[0].version == 2 and not chunks[1].filename
    data = b"".join(c.data for c in chunks)
    x = _raw_inputs(load_artifact(artifacts["mlp-moons"]).meta, 5)
    probs, _ = export.run_exported(data, "onnx", x)
    assert probs.shape == (5, 2)


def test_servicer_errors(artifacts):
    from trainserve.api import servicers
    servicer = servicers.ModelServicer(_Core(artifacts["mlp-moons"]), _inline)
    with pytest.raises(errors.InvalidArgument) as info:
        _stream(servicer, name="moons", format="pickle")
    assert info.value.field == "format"
    with pytest.raises(errors.NotFound):
        _stream(servicer, name="nope", format="onnx")


# -- the SDK and the CLI, against the fake API ------------------------------------------------

@pytest.fixture
def export_cli(artifacts, monkeypatch, request):
    """The `cli` fixture of test_cli_commands.py, its fake API answering ExportModel with
    the real export of the tiny MLP (model "moons", latest version 2)."""
    from trainserve.api.servicers import ModelServicer
    real = ModelServicer(_Core(artifacts["mlp-moons"]), _inline)

    def export_model(self, req, context):
        from trainserve.api.auth import acting_as

        async def collect():
            return [chunk async for chunk in real.ExportModel(req, context)]
        try:
            with acting_as(ADA):  # what the auth interceptor sets for a call
                chunks = asyncio.run(collect())
            yield from chunks
        except errors.TrainserveError as exc:
            import grpc
            context.abort(getattr(grpc.StatusCode, exc.grpc_code), exc.message)
    monkeypatch.setattr(FakeApi, "ExportModel", export_model, raising=False)
    return request.getfixturevalue("cli")


def test_cli_export_writes_the_default_file(export_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = export_cli("export", "moons", "--format", "onnx")
    assert result.exit_code == 0, result.output
    path = tmp_path / "moons-v2.onnx"
    assert path.is_file() and "moons-v2.onnx" in result.stdout
    probs, label = export.run_exported(path.read_bytes(), "onnx",
                                       np.zeros((3, 2), np.float32))
    assert probs.shape == (3, 2) and label.shape == (3,)


def test_cli_export_to_a_chosen_file(export_cli, tmp_path):
    out = tmp_path / "sub" / "m.pt"
    result = export_cli("export", "moons:1", "--format", "torchscript", "--out", out)
    assert result.exit_code == 0, result.output
    import torch
    torch.jit.load(str(out))


def test_cli_export_errors(export_cli):
    assert_error(export_cli("export", "moons", "--format", "keras"), 2, "format")
    assert_error(export_cli("export", "missing", "--format", "onnx"), 1, "not found")
