"""ExportModel through the real job API: a registered XOR MLP exported to ONNX and run in
onnxruntime answers what the served predictor answers."""
from __future__ import annotations

import grpc
import numpy as np
import pytest

from tests.integration.helpers import example, rpc_error, submit, wait_job
from trainserve.core.pb import job_pb2, model_pb2

pytestmark = pytest.mark.integration


def _export(stubs, **request) -> list[model_pb2.ExportChunk]:
    return list(stubs.models.ExportModel(model_pb2.ExportModelRequest(**request), timeout=120))


def test_export_a_registered_model_to_onnx(stubs):
    import onnxruntime as ort

    from trainserve.serve.predictor import Predictor
    from trainserve.training.artifacts import load_artifact

    job = submit(stubs, example("xor_mlp", name="xor-export"))
    done = wait_job(stubs, job.id)
    assert done.state == job_pb2.JOB_STATE_SUCCEEDED, done.message
    chunks = _export(stubs, name="xor-export", format="onnx")
    first = chunks[0]
    assert first.format == "onnx" and first.version == done.model_version
    assert first.filename == f"xor-export-v{done.model_version}.onnx"
    assert all(len(c.data) <= 1 << 20 for c in chunks)
    session = ort.InferenceSession(b"".join(c.data for c in chunks),
                                   providers=["CPUExecutionProvider"])
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    probs, label = session.run(["probabilities", "label"], {"input": x})
    np.testing.assert_array_equal(label, [0, 1, 1, 0])
    mv = stubs.models.GetModel(model_pb2.GetModelRequest(name="xor-export"), timeout=10)
    loaded = load_artifact(mv.artifact_uri)
    expect = Predictor(loaded.module, loaded.meta).predict(x)
    assert float(np.max(np.abs(probs - expect["probabilities"]))) <= 1e-4


def test_export_errors(stubs):
    err = rpc_error(_export, stubs, name="no-such-model", format="onnx")
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = rpc_error(_export, stubs, name="no-such-model", format="savedmodel")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith("format")
