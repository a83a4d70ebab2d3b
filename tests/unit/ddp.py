"""Running a training function as two real DDP ranks (gloo, CPU) in spawned processes."""
from __future__ import annotations

import torch

from tests.conftest import free_port


def run_two_ranks(worker, dirs: list[str], timeout: float = 120) -> list:
    """Start `worker(rank, port, dirs, queue)` as ranks 0 and 1; each puts one result on the
    queue, which comes back sorted (so rank 0's first when it leads its tuple)."""
    ctx = torch.multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=worker, args=(r, port, dirs, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=timeout) for _ in procs)
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    return results
