"""Attention maps of examples/seq2seq_reverse_attention.yaml: train it (seed 0), draw its
`attention.png` as the job API does, and ask the served model for its `attention` output over
OIP REST (the gateway's REST app and inference service, in this process); print the request,
the response (weights rounded), which encoder position each decoder step attends to most,
and what the maps cost: saving them at the end of training, drawing them, and a request with
and without them.

Runs the training core and the serving code in this process (no stack needed):

    .venv/bin/python examples/attention_measure.py [--png docs/img/attention_seq2seq.png]

The example request and response and the costs in docs/interpretability.md come from this
script.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from google.protobuf import json_format
from starlette.testclient import TestClient

from trainserve.core.pb import spec_pb2
from trainserve.jobs import plots
from trainserve.serve.rest import build_rest_app
from trainserve.serve.signature import version_record
from trainserve.serve.testing import LocalServing
from trainserve.training.artifacts import load_artifact
from trainserve.training.attention import attention_arrays
from trainserve.training.data import prepare_data
from trainserve.training.loop import train
from trainserve.training.reporting import NullReporter
from trainserve.training.validate import check_spec

HERE = Path(__file__).resolve().parent
SOURCE = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4]
ROUNDS = 7


def best_of(fn, rounds: int = ROUNDS) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def trained(root: Path):
    doc = yaml.safe_load((HERE / "seq2seq_reverse_attention.yaml").read_text())
    spec = check_spec(json_format.ParseDict(doc, spec_pb2.JobSpec()))
    result = train(spec, root / "job", NullReporter())
    print(f"trained: " + ", ".join(f"{k}={v:.3f}" for k, v in sorted(result.metrics.items())
                                   if k.startswith("test_")))
    return spec, result


def served(artifact_dir: str) -> TestClient:
    local = LocalServing(loader=load_artifact)
    meta = load_artifact(artifact_dir).meta
    local.models.put(version_record("reverse", 1, meta, artifact_dir))
    local.deploy("reverse", "reverse", 1)
    return TestClient(build_rest_app(local.service))


def show_request(client: TestClient) -> None:
    body = {"inputs": [{"name": "input", "datatype": "INT64", "shape": [1, 20],
                        "data": SOURCE}],
            "outputs": [{"name": "tokens"}, {"name": "attention"}]}
    print("metadata outputs:", json.dumps(client.get("/v2/models/reverse").json()["outputs"]))
    print("request:", json.dumps(body))
    doc = client.post("/v2/models/reverse/infer", json=body).json()
    for out in doc["outputs"]:
        if out["name"] == "attention":
            w = np.asarray(out["data"]).reshape(out["shape"])
            print("attention row sums:", np.round(w.sum(-1), 4).reshape(-1).tolist())
            print("most attended encoder position per decoder step:",
                  w[0, 0, 0].argmax(-1).tolist())
            out["data"] = [round(v, 2) for v in out["data"]]
    print("response:", json.dumps(doc))


def costs(spec, result, client: TestClient, png: Path) -> None:
    loaded = load_artifact(result.artifact_dir)
    data = prepare_data(spec)
    x = torch.from_numpy(data.x_test)
    save_s = best_of(lambda: attention_arrays(loaded.module.eval(), x, data.info))
    arrays = plots.load_evaluation(Path(result.artifact_dir).parent / "evaluation.npz")
    out = png.parent / ".attention-draw"
    draw_s = best_of(lambda: plots.evaluation_plots(arrays, out, "reverse"), 3)
    shutil.copyfile(out / "attention.png", png)
    shutil.rmtree(out)
    inputs = [{"name": "input", "datatype": "INT64", "shape": [1, 20], "data": SOURCE}]
    plain_s = best_of(lambda: client.post("/v2/models/reverse/infer", json={"inputs": inputs}))
    with_s = best_of(lambda: client.post("/v2/models/reverse/infer", json={
        "inputs": inputs, "outputs": [{"name": "tokens"}, {"name": "attention"}]}))
    print(f"save the maps (3 examples): {save_s * 1000:.1f} ms; draw attention.png: "
          f"{draw_s:.2f} s; a request: {plain_s * 1000:.1f} ms, with attention: "
          f"{with_s * 1000:.1f} ms (best of {ROUNDS})")
    print(f"attention.png written to {png}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--png", type=Path, help="where to copy attention.png (default: a temp dir)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        spec, result = trained(Path(tmp))
        client = served(result.artifact_dir)
        show_request(client)
        costs(spec, result, client, args.png or Path(tmp) / "attention.png")


if __name__ == "__main__":
    main()
