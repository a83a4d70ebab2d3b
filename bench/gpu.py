"""Training throughput of the loop on a GPU against a raw PyTorch loop on the same GPU, same
model, data, batch size, optimizer, loss and settings (bf16 autocast off and on), with the
peak GPU memory of each. Under 5 minutes on one GPU; `--device cpu` is a smoke run.

Workloads:
- LeNet-5 on digits (1797 x 1 x 8 x 8);
- ResNet ("small" preset) on synthetic 28 x 28 images (10 classes, class-dependent blobs);
- the transformer on `sine` (sequences of 32 steps, one-step forecast).

Ours: `training.loop.train` on the device (the dataset lives on the device; batches are views
of one gather an epoch), samples/s of its best epoch after the first. Raw: the same model
built by the zoo, the job's own loss (mean over the batch) and optimizer, the split moved to
the device once, shuffled with one gather an epoch, batches as views, `torch.autocast` when
bf16 is on; timed with `torch.cuda.synchronize()`. Target: ours/raw >= 0.9.

    .venv/bin/python bench/gpu.py                 # on cuda:0
    .venv/bin/python bench/gpu.py --device cpu --quick
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table, row, save  # noqa: E402

IMAGES28 = "bench_images28"
TARGET = ">= 0.9"


def cuda_available() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


def _register_images28(n: int = 8192) -> None:
    """A synthetic 28 x 28 image set: one Gaussian blob per class at a class position."""
    import numpy as np

    from trainserve.training.datasets import DATASETS, Dataset, DatasetInfo, register_dataset
    if IMAGES28 in DATASETS.names():
        return
    classes = tuple(str(i) for i in range(10))
    info = DatasetInfo(IMAGES28, "classification", 10, classes, (1, 28, 28), n)

    def load(spec):
        rng = np.random.default_rng(0)
        y = rng.integers(0, 10, n)
        yy, xx = np.mgrid[0:28, 0:28]
        cy, cx = 6 + 4 * (y // 4), 5 + 6 * (y % 4)
        blobs = np.exp(-((yy[None] - cy[:, None, None]) ** 2
                         + (xx[None] - cx[:, None, None]) ** 2) / 8.0)
        x = blobs + 0.3 * rng.standard_normal((n, 28, 28))
        return x.astype(np.float32)[:, None], y.astype(np.int64)
    register_dataset(IMAGES28, Dataset(lambda spec: info, load))


WORKLOADS = {
    "LeNet-5, digits 8x8": {
        "dataset": {"name": "digits", "normalize": "none"},
        "model": {"lenet5": {"activation": "relu", "pooling": "max"}}, "batch": 256},
    "ResNet small, synthetic 28x28": {
        "dataset": {"name": IMAGES28}, "model": {"resnet": {"preset": "small"}}, "batch": 256},
    "transformer, sine sequences": {
        "dataset": {"name": "sine", "num_samples": 8192, "sequence_length": 32},
        "model": {"transformer": {"d_model": 64, "num_heads": 4, "num_layers": 2,
                                  "pooling": "mean"}}, "batch": 256},
}


def make_spec(workload: dict, epochs: int, bf16: bool):
    from trainserve.core.spec import parse_spec
    from trainserve.training.validate import check_spec

    fields = {k: v for k, v in workload.items() if k != "batch"} | {
        "optimizer": {"name": "adam", "lr": 0.001},
        "split": {"val_fraction": 0.0},
        "training": {"epochs": epochs, "batch_size": workload["batch"], "seed": 0,
                     "performance": {"autocast": "bf16" if bf16 else "none"}},
        "scaling": {"num_workers": 1, "use_gpu": True}}
    return check_spec(parse_spec(fields))


def _sync(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device) -> float:
    import torch
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0


def ours(spec, device) -> tuple[float, float]:
    """(best samples/s after the first epoch, peak MiB) of `training.loop.train`."""
    from trainserve.training.loop import train
    from trainserve.training.reporting import ListReporter

    _reset_peak(device)
    rep = ListReporter()
    with tempfile.TemporaryDirectory(prefix="ts-bench-gpu-") as tmp:
        train(spec, tmp, rep, num_threads=1, device=device)
    return max(e.samples_per_second for e in rep.epochs[1:]), _peak_mib(device)


def raw(spec, device, epochs: int) -> tuple[float, float]:
    """(best samples/s after the first epoch, peak MiB) of the raw loop, same settings."""
    import contextlib

    import torch

    from trainserve.training.data import prepare_data
    from trainserve.training.losses import build_loss
    from trainserve.training.optimizers import build_optimizer
    from trainserve.training.zoo import build_model

    _reset_peak(device)
    data = prepare_data(spec)
    torch.manual_seed(0)
    model = build_model(spec, data.info).to(device)
    opt = build_optimizer(list(model.parameters()), spec.optimizer)
    loss_fn = build_loss(spec.loss, data.info)
    x = torch.from_numpy(data.x_train).to(device)
    y = torch.from_numpy(data.y_train).to(device)
    bs, n = spec.training.batch_size, len(x)
    bf16 = spec.training.performance.autocast == "bf16"
    amp = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 \
        else contextlib.nullcontext
    model.train()
    rates = []
    for _ in range(epochs):
        _sync(device)
        t0 = time.perf_counter()
        perm = torch.randperm(n, device=device)
        xs, ys = x[perm], y[perm]
        for i in range(0, n, bs):
            with amp():
                loss = loss_fn(model(xs[i:i + bs]), ys[i:i + bs]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _sync(device)
        rates.append(n / (time.perf_counter() - t0))
    return max(rates[1:]), _peak_mib(device)


def run(device_name: str, epochs: int, workloads: dict, images: int = 8192) -> list[dict]:
    import torch

    device = torch.device(device_name)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the loop sets it on CUDA
    from trainserve.training.datasets import DATASETS

    _register_images28(images)
    out = []
    try:
        for name, workload in workloads.items():
            for bf16 in (False, True):
                spec = make_spec(workload, epochs, bf16)
                o, o_mem = ours(spec, device)
                r, r_mem = raw(spec, device, epochs)
                label = f"{name}, batch {workload['batch']}, bf16 {'on' if bf16 else 'off'}"
                out.append(row(f"{label}: samples/s", o, r, TARGET,
                               note=f"baseline: raw PyTorch loop on {device_name}"))
                out.append(row(f"{label}: peak GPU MiB", o_mem, r_mem))
    finally:
        # The registry has no removal: the bench's set must not outlive the run (it would
        # show in every "known datasets" list of the process, e.g. in tests).
        DATASETS._entries.pop(IMAGES28, None)
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--quick", action="store_true",
                   help="2 epochs, small datasets: a smoke run (e.g. with --device cpu)")
    args = p.parse_args(argv or [])
    import torch

    workloads = WORKLOADS
    epochs = args.epochs
    if args.quick:
        epochs = 2
        workloads = {k: w | {"batch": 64} for k, w in WORKLOADS.items()}
        workloads["transformer, sine sequences"]["dataset"] = {
            "name": "sine", "num_samples": 512, "sequence_length": 16}
    device_label = (torch.cuda.get_device_name(torch.device(args.device))
                    if args.device.startswith("cuda") else "cpu")
    rows = run(args.device, epochs, workloads, images=1024 if args.quick else 8192)
    print_table(f"gpu: loop vs raw PyTorch on {device_label}", rows)
    if not args.quick:
        print("results:", save("gpu", rows, {"device": device_label, "epochs": epochs}))
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
