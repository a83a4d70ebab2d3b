"""A language model end to end on the real local stack: a tiny GPT job, deployed, completing
prompts over OIP REST (request parameters in the JSON body) and over gRPC with tritonclient
(`ModelInferRequest.parameters`), with the metadata describing its BYTES input and output and
its optional `attention` output, which a request gets by naming it (REST and gRPC)."""
from __future__ import annotations

import json
import subprocess
import sys

import httpx
import numpy as np
import pytest

from tests.integration.helpers import deploy, submit, wait_job
from trainserve.core.spec import parse_spec
from trainserve.core.state import JobState
from trainserve.core.pb import deployment_pb2

pytestmark = pytest.mark.integration

SPEC = {"name": "gen-gpt", "dataset": {"name": "corpus", "sequenceLength": 16},
        "model": {"gpt": {"dModel": 16, "numHeads": 2, "numLayers": 1}},
        "training": {"epochs": 1}}

_GRPC_COMPLETE = r"""
import json, sys
import numpy as np
import tritonclient.grpc as g
prompts = np.array([p.encode() for p in json.loads(sys.argv[3])], dtype=object)
inp = g.InferInput("prompt", [len(prompts)], "BYTES")
inp.set_data_from_numpy(prompts)
r = g.InferenceServerClient(sys.argv[1]).infer(
    sys.argv[2], [inp], parameters={"seed": 3, "max_new_tokens": 9, "temperature": "0.7"})
print(json.dumps([t.decode() for t in r.as_numpy("text").reshape(-1)]))
"""

_GRPC_ATTENTION = r"""
import json, sys
import numpy as np
import tritonclient.grpc as g
inp = g.InferInput("prompt", [1], "BYTES")
inp.set_data_from_numpy(np.array([sys.argv[3].encode()], dtype=object))
r = g.InferenceServerClient(sys.argv[1]).infer(
    sys.argv[2], [inp], outputs=[g.InferRequestedOutput("attention")],
    parameters={"max_new_tokens": 1})
w = r.as_numpy("attention")
print(json.dumps({"outputs": [o.name for o in r.get_response().outputs],
                  "shape": list(w.shape), "dtype": str(w.dtype), "data": w.tolist()}))
"""


def test_a_gpt_deploys_and_completes_prompts_over_rest_and_grpc(stack, stubs):
    job = wait_job(stubs, submit(stubs, parse_spec(SPEC)).id, timeout=180)
    assert JobState(job.state) == JobState.SUCCEEDED, job.message
    dep = deploy(stubs, job.model_name, "gen-gpt")
    assert dep.state == deployment_pb2.DEPLOYMENT_STATE_READY, dep.message
    url = f"http://{stack.config.serve_http}/v2/models/gen-gpt"
    md = httpx.get(url, timeout=30).json()
    assert md["inputs"] == [{"name": "prompt", "datatype": "BYTES", "shape": [-1]}]
    assert md["outputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]},
                             {"name": "attention", "datatype": "FP32",
                              "shape": [-1, 1, 2, -1, -1]}]  # only when named

    body = {"inputs": [{"name": "prompt", "datatype": "BYTES", "shape": [2],
                        "data": ["The model", "a"]}],
            "parameters": {"seed": 3, "max_new_tokens": 9, "temperature": 0.7}}
    first = httpx.post(f"{url}/infer", json=body, timeout=60)
    assert first.status_code == 200, first.text
    texts = first.json()["outputs"][0]["data"]
    assert [len(t) for t in texts] == [9, 9]
    assert httpx.post(f"{url}/infer", json=body, timeout=60).json() == first.json()
    bad = httpx.post(f"{url}/infer", json={**body, "parameters": {"temperature": "hot"}})
    assert bad.status_code == 400 and "parameter 'temperature'" in bad.json()["error"]

    # tritonclient.grpc in a child process (its protobuf symbols clash with ours); it sends
    # parameters as bool, int or string only, so the temperature goes as "0.7".
    proc = subprocess.run([sys.executable, "-c", _GRPC_COMPLETE, stack.config.serve_grpc,
                           "gen-gpt", json.dumps(["The model", "a"])],
                          text=True, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout) == texts  # the same seed, the same samples

    _attention_over_rest_and_grpc(stack, url)


def _attention_over_rest_and_grpc(stack, url):
    """The causal attention over a prompt's characters, when a request names the output."""
    body = {"inputs": [{"name": "prompt", "datatype": "BYTES", "shape": [1],
                        "data": ["The model"]}],
            "outputs": [{"name": "text"}, {"name": "attention"}],
            "parameters": {"max_new_tokens": 1}}
    r = httpx.post(f"{url}/infer", json=body, timeout=60)
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    assert list(out) == ["text", "attention"] and out["attention"]["shape"] == [1, 1, 2, 9, 9]
    w = np.asarray(out["attention"]["data"]).reshape(1, 1, 2, 9, 9)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
    assert float(np.abs(np.triu(w, 1)).max()) == 0.0

    proc = subprocess.run([sys.executable, "-c", _GRPC_ATTENTION, stack.config.serve_grpc,
                           "gen-gpt", "The model"], text=True, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout)
    assert got["outputs"] == ["attention"] and got["dtype"] == "float32"
    np.testing.assert_allclose(np.asarray(got["data"]), w, atol=1e-6)  # the same weights

