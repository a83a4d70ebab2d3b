"""The spine on a warm local stack, against baselines measured in the same run.

- submit → first epoch event, and submit → SUCCEEDED, for examples/xor_mlp.yaml
  (median of 5, after one warm-up job): the single-worker fast path;
- the same job forced through Ray Train (2 DDP workers), to show what the fast path saves;
- steady-state training samples/s of LeNet-5 on digits (1 worker, 1 thread) against a plain
  PyTorch loop over the same data, model, batch size and thread count, in this process.
"""
from __future__ import annotations

import time
import uuid


from bench.common import local_stack, median, print_table, save

REPEATS = 5


def _timed_job(stubs, spec) -> tuple[float, float, object]:
    """(seconds to the first epoch event, seconds to the terminal state, events)."""
    from trainserve.pb import job_pb2

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
    from trainserve.jobs.spec import load_spec_file, parse_spec
    from bench.common import ROOT

    spec = load_spec_file(ROOT / "examples" / f"{name}.yaml")
    spec.MergeFrom(parse_spec(overrides))
    spec.ClearField("deploy")
    return spec


def job_latency(stubs) -> list[dict]:
    xor = _spec("xor_mlp")
    _timed_job(stubs, xor)  # warm-up: pooled workers import torch once
    runs = [_timed_job(stubs, xor)[:2] for _ in range(REPEATS)]
    ddp = _spec("xor_mlp", scaling={"num_workers": 2})
    ddp_runs = [_timed_job(stubs, ddp)[:2] for _ in range(2)]
    fast_done, train_done = median([r[1] for r in runs]), median([r[1] for r in ddp_runs])
    return [
        {"figure": "xor_mlp submit → first epoch event (s, fast path)",
         "ours": median([r[0] for r in runs])},
        {"figure": "xor_mlp submit → SUCCEEDED (s, fast path)", "ours": fast_done,
         "baseline": train_done, "ratio": fast_done / train_done,
         "note": "baseline: the same job through Ray Train TorchTrainer (2 workers)"},
        {"figure": "xor_mlp submit → first epoch event (s, Ray Train, 2 workers)",
         "ours": median([r[0] for r in ddp_runs])},
    ]


def plain_loop_samples_per_second(spec, epochs: int = 5) -> float:
    """What a user would write: the same model, data and batch size, pre-batched tensors."""
    import torch

    from trainserve.train.data import prepare_data
    from trainserve.train.validate import check_spec
    from trainserve.train.zoo import build_model

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
    return [{"figure": "LeNet-5 digits training samples/s (1 worker, 1 thread)", "ours": ours,
             "baseline": base, "ratio": ours / base,
             "note": "baseline: plain PyTorch loop over pre-batched tensors, same run"}]


def main() -> list[dict]:
    from trainserve.pb import job_pb2_grpc

    with local_stack() as stack:
        channel = stack.api_channel()
        stubs = job_pb2_grpc.JobServiceStub(channel)
        rows = job_latency(stubs) + lenet_throughput(stubs)
    print_table("spine (warm local stack, 2 CPUs)", rows)
    print("results:", save("spine", rows, {"repeats": REPEATS}))
    return rows


if __name__ == "__main__":
    main()
