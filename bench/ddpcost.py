"""Where a 2-worker DDP job's extra start-up goes, outside Ray: two processes on this machine
(torch.multiprocessing, gloo, the xor MLP of `examples/xor_mlp.yaml`), each timing on rank 0

- `init_process_group` (what Ray Train does before the training function runs),
- wrapping the model in `DistributedDataParallel` in a fresh process: its constructor imports
  `torch._dynamo` the first time (to ask for its DDP optimizer mode), then checks the
  parameters' shapes across ranks and broadcasts rank 0's,
- the same wrap of a second model in the same process (the import already done),
- the first and the second training step (forward, backward with its gradient all-reduce).

Ray Train's own `TorchTrainer.fit` of an empty loop (the spine bench's baseline) wraps no
model, so it never pays the import; every training job does.

    .venv/bin/python bench/run.py ddpcost      # about 20 s
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, print_table, row, save, spread  # noqa: E402

REPEATS = 3
STAGES = ("init_process_group", "DDP wrap, first in the process (imports torch._dynamo)",
          "DDP wrap, second in the process", "first training step", "second training step")


def _rank(rank: int, port: int, out) -> None:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))

    def mlp():
        return torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(),
                                   torch.nn.Linear(8, 2))
    marks = [time.perf_counter()]
    dist.init_process_group("gloo", rank=rank, world_size=2)
    marks.append(time.perf_counter())
    model = DDP(mlp())
    marks.append(time.perf_counter())
    DDP(mlp())
    marks.append(time.perf_counter())
    x, y = torch.randn(16, 2), torch.randint(0, 2, (16,))
    for _ in range(2):
        torch.nn.functional.cross_entropy(model(x), y).backward()
        marks.append(time.perf_counter())
    dist.destroy_process_group()
    if rank == 0:
        out.put([b - a for a, b in zip(marks, marks[1:])])


def once() -> list[float]:
    """Each stage's seconds on rank 0, in a fresh pair of processes."""
    import torch.multiprocessing as mp
    ctx = mp.get_context("spawn")
    out, port = ctx.Queue(), free_port()
    procs = [ctx.Process(target=_rank, args=(r, port, out)) for r in range(2)]
    for p in procs:
        p.start()
    stages = out.get(timeout=120)
    for p in procs:
        p.join(60)
    return stages


def main() -> list[dict]:
    runs = [once() for _ in range(REPEATS)]
    rows = []
    for i, name in enumerate(STAGES):
        values = [r[i] for r in runs]
        rows.append(row(f"2 ranks (gloo, CPU), rank 0: {name}, s", statistics.median(values),
                        spread=spread(values)))
    print_table("DDP start-up outside Ray: where the seconds go", rows)
    print("results:", save("ddpcost", rows, {"repeats": REPEATS}))
    return rows


if __name__ == "__main__":
    main()
