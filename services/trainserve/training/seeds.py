"""Seeds: every random stream of a job derived from its one `training.seed`."""
from __future__ import annotations

import numpy as np
import torch


def derive_seed(seed: int, *stream: int) -> int:
    """An independent 63-bit seed for `(seed, *stream)`, e.g. `(seed, epoch, rank)`."""
    return int(np.random.SeedSequence([seed % 2**64, *stream]).generate_state(1, np.uint64)[0]
               >> np.uint64(1))


def seed_device_rng(seed: int, device: torch.device) -> None:
    """Seed the global generator that random ops on `device` draw from (dropout): the same
    streams as `torch.manual_seed`, which also visits every other backend and costs about a
    millisecond, as much as several steps of a small model."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)
