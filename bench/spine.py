"""The spine on a warm local stack, against baselines measured in the same run.

- `trainserve up` to ready (`LocalStack.up()`, every component) against `ray start --head`
  alone with the same flags, timed until it reports the head started;
- submit → first epoch event, and submit → SUCCEEDED, for examples/xor_mlp.yaml
  (median of 5, after one warm-up job): the single-worker fast path, against Ray Train's own
  start-up, `TorchTrainer.fit` of an empty loop (1 worker) on the same Ray cluster;
- the same job with 2 DDP workers (through Ray Train) against `TorchTrainer.fit` of an empty
  2-worker loop, interleaved;
- steady-state training samples/s of LeNet-5 on digits (1 worker, 1 thread) through the stack
  against a plain PyTorch loop over the same data, model, batch size and thread count, in this
  process (bench/train.py measures the loop itself against its baselines).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid

from bench.common import local_stack, median, print_table, row, save

REPEATS = 5
DDP_REPEATS = 3  # a median of 3: the baseline alone moves by 1-2 s between fits


def _timed_job(stubs, spec) -> tuple[float, float, object]:
    """(seconds to the first epoch event, seconds to the terminal state, events)."""
    from trainserve.core.pb import job_pb2

    t0 = time.perf_counter()
    job = stubs.SubmitJob(job_pb2.SubmitJobRequest(spec=spec, request_id=uuid.uuid4().hex))
    first, events = None, []
    for event in stubs.WatchJob(job_pb2.WatchJobRequest(job_id=job.id), timeout=900):
        events.append(event)
        if first is None and event.HasField("epoch"):
            first = time.perf_counter() - t0
    done = time.perf_counter() - t0
    final = events[-1].state
    if final.state != job_pb2.JOB_STATE_SUCCEEDED:
        raise RuntimeError(f"bench job failed: {final.message}")
    return first, done, events


def _spec(name: str, **overrides):
    from trainserve.core.spec import load_spec_file, parse_spec
    from bench.common import ROOT

    spec = load_spec_file(ROOT / "examples" / f"{name}.yaml")
    spec.MergeFrom(parse_spec(overrides))
    spec.ClearField("deploy")
    return spec


def ray_start_seconds(stack) -> float:
    """`ray start --head` with the stack's own flags (fresh ports and temp folder), timed until
    it prints that the head started; then stopped through its own process group."""
    from trainserve.local import free_port

    c = stack.config
    cmd = [a for a in stack.launch("ray").argv if not a.startswith(("--port=", "--temp-dir=",
                                                                 "--dashboard-port="))]
    tmp = tempfile.mkdtemp(prefix="ts-bench-ray-")
    cmd += [f"--port={free_port()}", f"--temp-dir={tmp}", f"--dashboard-port={free_port()}"]
    env = os.environ | stack.ray_env()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        for line in proc.stdout:
            if "Ray runtime started" in line:
                return time.perf_counter() - t0
        raise RuntimeError(f"ray start exited with {proc.wait()}")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


_FIT_PROBE = """
import json, sys, tempfile, time, uuid
import ray
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
ray.init(address=sys.argv[1], log_to_driver=False)
storage = tempfile.mkdtemp(prefix="ts-bench-train-")

def empty_loop(config=None):
    pass

for line in sys.stdin:
    t0 = time.perf_counter()
    TorchTrainer(empty_loop, scaling_config=ScalingConfig(
        num_workers=int(line), resources_per_worker={"CPU": 1}),
        run_config=RunConfig(storage_path=storage, name=uuid.uuid4().hex)).fit()
    print(json.dumps(time.perf_counter() - t0), flush=True)
"""


class RayTrainBaseline:
    """`TorchTrainer.fit` of an empty loop on the stack's Ray cluster, from a driver process
    of its own (started with the stack's Ray environment, which Ray reads at import), kept
    alive between fits as the dispatcher is."""

    def __init__(self, stack):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _FIT_PROBE, stack.config.ray_address],
            env=os.environ | stack.ray_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True)

    def fit_seconds(self, workers: int) -> float:
        self.proc.stdin.write(f"{workers}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the TorchTrainer probe exited with {self.proc.wait()}")
        return float(line)

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def job_latency(stubs, baseline: RayTrainBaseline) -> list[dict]:
    xor = _spec("xor_mlp")
    _timed_job(stubs, xor)  # warm-up: pooled workers import torch once
    runs = [_timed_job(stubs, xor)[:2] for _ in range(REPEATS)]
    fit1 = [baseline.fit_seconds(1) for _ in range(DDP_REPEATS)]
    ddp = _spec("xor_mlp", scaling={"num_workers": 2})
    ddp_runs, fit2 = [], []
    for _ in range(DDP_REPEATS):  # interleaved with its baseline
        ddp_runs.append(_timed_job(stubs, ddp)[:2])
        fit2.append(baseline.fit_seconds(2))
    first, done = median([r[0] for r in runs]), median([r[1] for r in runs])
    base1, base2 = median(fit1), median(fit2)
    note1 = "baseline: TorchTrainer.fit of an empty 1-worker loop, same cluster and run"
    return [
        row("xor_mlp submit -> first epoch event (s), 1 worker", first, base1, "<= 2",
            on="ours", note=note1),
        row("xor_mlp submit -> first epoch event / Ray Train start-up", first, base1, "<= 0.25",
            note=note1),
        row("xor_mlp submit -> SUCCEEDED (s), 1 worker", done, base1, "<= 3", on="ours",
            note=note1),
        row("xor_mlp 2-worker DDP submit -> first epoch event (s)",
            median([r[0] for r in ddp_runs]), base2, "<= 1.1",
            note="baseline: TorchTrainer.fit of an empty 2-worker loop, interleaved"),
        row("xor_mlp 2-worker DDP submit -> SUCCEEDED (s)", median([r[1] for r in ddp_runs]),
            base2),
    ]


def plain_loop_samples_per_second(spec, epochs: int = 5) -> float:
    """What a user would write: the same model, data and batch size, pre-batched tensors."""
    import torch

    from trainserve.training.data import prepare_data
    from trainserve.training.validate import check_spec
    from trainserve.training.zoo import build_model

    torch.set_num_threads(1)
    full = check_spec(spec)
    data = prepare_data(full)
    torch.manual_seed(0)
    model = build_model(full, data.info)
    opt = torch.optim.Adam(model.parameters(), lr=full.optimizer.lr)
    x = torch.as_tensor(data.x_train, dtype=torch.float32)
    y = torch.as_tensor(data.y_train, dtype=torch.long)
    bs, n = full.training.batch_size, len(x)
    rates = []
    for _ in range(epochs):
        perm = torch.randperm(n)
        t0 = time.perf_counter()
        model.train()
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        rates.append(n / (time.perf_counter() - t0))
    return median(rates[1:])


def lenet_throughput(stubs) -> list[dict]:
    spec = _spec("digits_lenet5", scaling={"num_workers": 1}, training={"epochs": 8})
    _, _, events = _timed_job(stubs, spec)
    rates = [e.epoch.samples_per_second for e in events if e.HasField("epoch")]
    ours = median(rates[1:])
    base = plain_loop_samples_per_second(spec)
    return [row("LeNet-5 digits train samples/s via the stack (median epoch)", ours, base,
                note="baseline: plain PyTorch loop, in the bench process, same run")]


def main() -> list[dict]:
    from trainserve.core.pb import job_pb2_grpc

    with local_stack() as stack:
        up_s = stack.bench_up_s
        ray_s = median([ray_start_seconds(stack) for _ in range(2)])
        channel = stack.api_channel()
        stubs = job_pb2_grpc.JobServiceStub(channel)
        baseline = RayTrainBaseline(stack)
        try:
            rows = job_latency(stubs, baseline) + lenet_throughput(stubs)
        finally:
            baseline.close()
    rows.insert(0, row("trainserve up -> ready (s)", up_s, ray_s, "<= 2",
                       note="baseline: ray start --head alone, same flags, same run"))
    print_table("spine (warm local stack, 2 CPUs)", rows)
    print("results:", save("spine", rows, {"repeats": REPEATS, "ddp_repeats": DDP_REPEATS}))
    return rows


if __name__ == "__main__":
    main()
