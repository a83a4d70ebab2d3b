"""The main job, end to end: bring up the local stack, train LeNet-5 on the digits with 2 DDP
workers (live progress), deploy it, query it over OIP REST and gRPC, and print the test
accuracy computed from the endpoint's answers. The stack is left running."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "examples" / "digits_lenet5.yaml"
TRAINSERVE = str(Path(sys.executable).with_name("trainserve"))


def sh(*args: str) -> None:
    print(f"\n$ trainserve {' '.join(args)}", flush=True)
    subprocess.run([TRAINSERVE, *args], check=True)


def test_split(spec):
    """The job's test set as raw inputs (the endpoint applies the stored normalization)."""
    from trainserve.training.splits import split_indices
    from trainserve.training.datasets import load_dataset

    x, y = load_dataset(spec.dataset)
    _, _, test = split_indices(y, spec.split.test_fraction, spec.split.val_fraction,
                               spec.split.stratify, spec.training.seed)
    return x[test].astype(np.float32), y[test]


def query(name: str, x: np.ndarray, http: str, grpc_target: str) -> dict[str, np.ndarray]:
    import tritonclient.grpc as tgrpc
    import tritonclient.http as thttp

    labels = {}
    for proto, mod, target in (("OIP REST", thttp, http), ("OIP gRPC", tgrpc, grpc_target)):
        client = mod.InferenceServerClient(target)
        inp = mod.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        t0 = time.perf_counter()
        result = client.infer(name, [inp], outputs=[mod.InferRequestedOutput("label")])
        labels[proto] = (result.as_numpy("label"), time.perf_counter() - t0)
    return labels


def wait_ready(client, name: str, timeout: float = 120):
    """The spec deploys on success; wait until the endpoint has loaded the model."""
    from trainserve.core.pb import deployment_pb2

    deadline = time.time() + timeout
    while time.time() < deadline:
        dep = client.get_deployment(name)
        if dep.state == deployment_pb2.DEPLOYMENT_STATE_READY:
            return dep
        if dep.state == deployment_pb2.DEPLOYMENT_STATE_FAILED:
            raise SystemExit(f"deployment {name} failed: {dep.message}")
        time.sleep(0.25)
    raise SystemExit(f"deployment {name} not ready after {timeout:.0f} s")


def main() -> None:
    from trainserve.client import Client
    from trainserve.core.pb import job_pb2
    from trainserve.local import Config, recorded_config
    from trainserve.core.spec import load_spec_file
    from trainserve.training.validate import check_spec

    sh("up")
    cfg = recorded_config(Config.from_env().state_dir) or Config.from_env()
    client = Client(cfg.api_address)
    spec = check_spec(load_spec_file(SPEC))
    job = client.submit(str(SPEC))
    print(f"\nsubmitted {job.id}: LeNet-5 on digits, {spec.scaling.num_workers} DDP workers")
    sh("watch", job.id)
    job = client.get_job(job.id)
    if job.state != job_pb2.JOB_STATE_SUCCEEDED:
        raise SystemExit(f"job {job.id} did not succeed: {job.message}")
    name = job.deployment or spec.deploy.name
    dep = wait_ready(client, name)
    print(f"\ndeployed {job.model_name}:{job.model_version} as {dep.name}: {dep.rest_url}")
    x, y = test_split(spec)
    print(f"querying {len(y)} held-out test images")
    for proto, (labels, secs) in query(name, x, cfg.serve_http, cfg.serve_grpc).items():
        acc = float((labels == y).mean())
        print(f"  {proto:9} test accuracy {acc:.4f}  ({len(y)} images in {secs * 1e3:.0f} ms)")
    print(f"\nthe job's own test accuracy: {job.metrics['test_accuracy']:.4f}")
    print("the stack is still up: `.venv/bin/trainserve status`, `.venv/bin/trainserve down`")


if __name__ == "__main__":
    main()
