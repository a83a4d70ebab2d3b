"""The training loop: one code path for a single process and for DDP ranks.

Data lives in tensors and batches are taken by index (no DataLoader, no per-sample Python).
Every epoch draws one seeded permutation, identical on all ranks; each global batch of
`batch_size` samples is split across the ranks, and each rank's loss is scaled so that DDP's
gradient averaging yields exactly the global-batch mean, as in a single process.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from trainserve import errors
from trainserve.train import checkpoints
from trainserve.train.artifacts import save_artifact, unwrap
from trainserve.train.data import PreparedData, prepare_data
from trainserve.train.losses import build_loss
from trainserve.train.optimizers import build_optimizer
from trainserve.train.paths import JobPaths
from trainserve.train.reporting import Reporter
from trainserve.train.results import TrainResult
from trainserve.train.zoo import build_model

log = logging.getLogger(__name__)

CANCEL_POLL_S = 0.5   # target time between cancellation checks inside an epoch
EVAL_CHUNK = 4096     # samples per forward pass when evaluating


def train(spec, job_dir: str | Path, reporter: Reporter, *, rank: int = 0, world_size: int = 1,
          num_threads: int = 1, keep_checkpoints: int = 2,
          device: str | torch.device = "cpu") -> TrainResult:
    """Train a checked `JobSpec` (see `validate.check_spec`) as rank `rank` of `world_size`.

    With `world_size > 1`, torch.distributed must already be initialized (Ray Train does it).
    Resumes from the newest checkpoint in `<job_dir>/checkpoints/`; rank 0 reports to
    `reporter`, writes checkpoints, the artifact (`<job_dir>/artifact/`) and `result.json`.
    Returns status "cancelled" when the reporter asks to stop (all ranks stop together).
    Raises `errors.TrainingError` when training diverges or cannot run. `device` is where the
    model and data live (e.g. "cuda:0"; collectives then need a backend for that device).
    """
    torch.set_num_threads(max(1, int(num_threads)))  # pooled workers keep stale thread counts
    return _Trainer(spec, JobPaths(Path(job_dir)), reporter, rank, world_size,
                    keep_checkpoints, torch.device(device)).run()


def derive_seed(seed: int, *stream: int) -> int:
    """An independent 63-bit seed for `(seed, *stream)`, e.g. `(seed, epoch, rank)`."""
    return int(np.random.SeedSequence([seed % 2**64, *stream]).generate_state(1, np.uint64)[0]
               >> np.uint64(1))


class _CancelPoll:
    """Asks rank 0's reporter about every `CANCEL_POLL_S` and broadcasts the answer.

    All ranks must reach each broadcast at the same step, so rank 0 also broadcasts how many
    steps to run until the next check, sized from its measured step rate.
    """

    def __init__(self, reporter: Reporter, rank: int, world_size: int, device: torch.device):
        self.reporter, self.rank, self.world_size, self.device = reporter, rank, world_size, device
        self.steps_left, self.steps_since, self.last = 1, 0, time.monotonic()

    def step(self) -> bool:
        """Call after every optimizer step; True when the job must stop."""
        self.steps_since += 1
        self.steps_left -= 1
        return self.steps_left <= 0 and self.check()

    def check(self) -> bool:
        """A collective: every rank calls it at the same point. True when the job must stop."""
        msg = torch.zeros(2, dtype=torch.int64)
        if self.rank == 0:
            now = time.monotonic()
            rate = self.steps_since / max(now - self.last, 1e-6)
            msg[0] = int(bool(self.reporter.cancel_requested()))
            msg[1] = max(1, int(rate * CANCEL_POLL_S))
            self.last, self.steps_since = now, 0
        if self.world_size > 1:
            msg = msg.to(self.device)  # NCCL only moves GPU tensors
            dist.broadcast(msg, src=0)
        self.steps_left = int(msg[1])
        return bool(msg[0])


class _Trainer:
    def __init__(self, spec, paths: JobPaths, reporter: Reporter, rank: int, world_size: int,
                 keep_checkpoints: int, device: torch.device):
        self.spec, self.paths, self.reporter = spec, paths, reporter
        self.rank, self.world_size, self.keep = rank, world_size, keep_checkpoints
        self.device = device
        self.started = time.monotonic()
        self.data: PreparedData = prepare_data(spec)
        self.classification = self.data.info.task == "classification"
        self.tensors = {name: torch.from_numpy(getattr(self.data, name)).to(device) for name in
                        ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
        self.poll = _CancelPoll(reporter, rank, world_size, device)
        self._check_batch_geometry()

    def run(self) -> TrainResult:
        start_epoch = self._setup()
        total, metrics = self.spec.training.epochs, {}
        if self.poll.check():
            return self._finish("cancelled", metrics)
        for epoch in range(start_epoch + 1, total + 1):
            epoch_metrics = self._run_epoch(epoch)
            if epoch_metrics is None:  # cancelled mid-epoch: report the last full epoch
                return self._finish("cancelled", metrics)
            metrics = epoch_metrics
            if self.poll.check():
                return self._finish("cancelled", metrics)
        test = self._evaluate("test")
        return self._finish("succeeded", test)

    # --- setup ---------------------------------------------------------------------------

    def _check_batch_geometry(self) -> None:
        per_rank = self.spec.training.batch_size // self.world_size
        arch = self.spec.model.WhichOneof("arch")
        need = 2 if getattr(getattr(self.spec.model, arch), "batch_norm", False) else 1
        if per_rank < need:
            raise errors.TrainingError(
                f"batch_size {self.spec.training.batch_size} gives {per_rank} sample(s) per "
                f"worker across {self.world_size} workers; need at least {need} per worker")
        # Matches `_global_batches`: at least one full batch, or a short one that it keeps.
        if len(self.tensors["x_train"]) < min(self.spec.training.batch_size,
                                              2 * self.world_size):
            raise errors.TrainingError(
                f"the training split ({len(self.tensors['x_train'])} samples) is too small "
                f"for {self.world_size} workers")

    def _setup(self) -> int:
        """Build model, optimizer and loss; resume; wrap for DDP. Returns the epoch resumed at."""
        torch.manual_seed(derive_seed(self.spec.training.seed, 0))
        self.module = build_model(self.spec, self.data.info).to(self.device)
        if not self.classification:
            self._fit_target_scale()
        self.optimizer = build_optimizer(self.module.parameters(), self.spec.optimizer)
        self.loss_fn = build_loss(self.spec.loss, self.data.info)
        start_epoch = self._resume()
        self.model = self.module
        if self.world_size > 1:
            # Broadcasts rank 0's parameters and buffers, so all ranks start identical.
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(self.module, device_ids=ids)
        if self.rank == 0:
            self._log_start(start_epoch)
        return start_epoch

    def _fit_target_scale(self) -> None:
        y = self.data.y_train.astype(np.float64)
        std = float(y.std())
        self.module.target_scale.shift.fill_(float(y.mean()))
        self.module.target_scale.scale.fill_(std if std > 1e-6 else 1.0)

    def _resume(self) -> int:
        """Load the newest checkpoint (chosen by rank 0, loaded by all). Returns its epoch."""
        epoch = torch.zeros(1, dtype=torch.int64, device=self.device)
        if self.rank == 0:
            checkpoints.remove_temp_dirs(self.paths.checkpoints)
            found = checkpoints.list_checkpoints(self.paths.checkpoints)
            epoch[0] = found[-1][0] if found else 0
        if self.world_size > 1:
            dist.broadcast(epoch, src=0)
        if epoch.item() == 0:
            return 0
        state = checkpoints.load_checkpoint(
            self.paths.checkpoints / checkpoints.checkpoint_name(epoch.item()))
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.rank == 0 and state.get("dataset_hash") != self.data.dataset_hash:
            self.reporter.log("the dataset changed since the checkpoint was written",
                              level="warning")
        return int(state["epoch"])

    def _log_start(self, start_epoch: int) -> None:
        d, s = self.data, self.spec
        self.reporter.log((
            f"training {s.model.WhichOneof('arch')} on {d.info.name}: {len(d.x_train)} train / "
            f"{len(d.x_val)} val / {len(d.x_test)} test samples, {s.training.epochs} epochs, "
            f"batch {s.training.batch_size} over {self.world_size} worker(s)"))
        if start_epoch:
            self.reporter.log(f"resumed from the checkpoint of epoch {start_epoch}")

    # --- one epoch -------------------------------------------------------------------------

    def _run_epoch(self, epoch: int) -> dict[str, float] | None:
        """Train one epoch, evaluate, checkpoint and report. None when cancelled mid-epoch."""
        t0 = time.monotonic()
        sums = self._train_epoch(epoch)
        if sums is None:
            return None
        seconds = time.monotonic() - t0
        metrics = self._train_metrics(sums, epoch)
        if len(self.tensors["x_val"]):
            metrics.update(self._evaluate("val"))
        if self.rank == 0:
            self._save_checkpoint(epoch)
            self.reporter.epoch(epoch, self.spec.training.epochs, metrics,
                                float(sums[1]) / max(seconds, 1e-9),
                                time.monotonic() - self.started)
        return metrics

    def _train_epoch(self, epoch: int) -> torch.Tensor | None:
        """Sums over all ranks of [loss, samples, correct | abs error]; None when cancelled."""
        seed = self.spec.training.seed
        x, y = self.tensors["x_train"], self.tensors["y_train"]
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(
            derive_seed(seed, 1, epoch))).to(self.device)
        torch.manual_seed(derive_seed(seed, 2, epoch, self.rank))  # dropout, per rank
        self.model.train()
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        for batch in self._global_batches(perm):
            local = batch[self.rank::self.world_size]
            out = self.model(x[local])
            per_sample = self.loss_fn(out, y[local])
            loss = per_sample.sum() * (self.world_size / len(batch))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            sums += self._batch_sums(out.detach(), y[local], per_sample.detach())
            if self.poll.step():
                return None
        return self._all_reduce(sums)

    def _global_batches(self, perm: torch.Tensor):
        size, n = self.spec.training.batch_size, len(perm)
        for start in range(0, n, size):
            batch = perm[start:start + size]
            # A short last batch is dropped when it cannot give every rank two samples
            # (an empty shard stalls DDP; BatchNorm fails on one); the permutation
            # changes every epoch, so no sample is dropped for good.
            if len(batch) < size and len(batch) < 2 * self.world_size:
                return
            yield batch

    def _batch_sums(self, out, y, per_sample) -> torch.Tensor:
        if self.classification:
            third = (out.argmax(dim=1) == y).sum()
        else:
            third = (out[:, 0] - y).abs().sum()
        count = torch.tensor(len(y), dtype=torch.float64, device=self.device)
        return torch.stack([per_sample.sum().double(), count, third.double()])

    def _train_metrics(self, sums: torch.Tensor, epoch: int) -> dict[str, float]:
        loss, n, third = sums.tolist()
        if not math.isfinite(loss):
            raise errors.TrainingError(
                f"training diverged in epoch {epoch}: the loss became {loss}; try a lower "
                f"learning rate than spec.optimizer.lr = {self.spec.optimizer.lr:g}")
        key = "train_accuracy" if self.classification else "train_mae"
        return {"train_loss": loss / n, key: third / n}

    # --- evaluation, checkpoints, results --------------------------------------------------

    @torch.no_grad()
    def _evaluate(self, split: str) -> dict[str, float]:
        """Metrics on `split` ("val" or "test"), each rank evaluating a shard."""
        self._sync_buffers()
        x, y = self.tensors[f"x_{split}"], self.tensors[f"y_{split}"]
        idx = torch.arange(self.rank, len(x), self.world_size, device=self.device)
        sums = torch.zeros(6, dtype=torch.float64, device=self.device)
        self.module.eval()
        for start in range(0, len(idx), EVAL_CHUNK):
            part = idx[start:start + EVAL_CHUNK]
            out, target = self.module(x[part]), y[part]
            sums[:3] += self._batch_sums(out, target, self.loss_fn(out, target))
            if not self.classification:
                err, t = (out[:, 0] - target).double(), target.double()
                sums[3:] += torch.stack([(err ** 2).sum(), t.sum(), (t ** 2).sum()])
        self._all_reduce(sums)
        return _split_metrics(split, sums.tolist(), self.classification)

    def _sync_buffers(self) -> None:
        # DDP broadcasts buffers before each training forward, so after the last step the
        # ranks' BatchNorm statistics differ by one update: evaluate with rank 0's.
        if self.world_size > 1:
            for buf in self.module.buffers():
                dist.broadcast(buf, src=0)

    def _all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        if self.world_size > 1:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def _save_checkpoint(self, epoch: int) -> None:
        checkpoints.save_checkpoint(self.paths.checkpoints, epoch, {
            "epoch": epoch,
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "dataset_hash": self.data.dataset_hash,
        }, keep=self.keep)

    def _finish(self, status: str, metrics: dict[str, float]) -> TrainResult:
        artifact = None
        if status == "succeeded" and self.rank == 0:
            artifact = str(save_artifact(self.paths.artifact, unwrap(self.model), self.spec,
                                         self.data.info, self.data.preprocessing, metrics,
                                         self.data.dataset_hash))
        elif status == "succeeded":
            artifact = str(self.paths.artifact)
        result = TrainResult(status, metrics, artifact, self.data.dataset_hash)
        if self.rank == 0:
            result.write(self.paths.result)
            self.reporter.log(f"training {status}: " + ", ".join(
                f"{k}={v:.4g}" for k, v in sorted(metrics.items())))
        return result


def _split_metrics(split: str, sums: list[float], classification: bool) -> dict[str, float]:
    loss, n, third, sq_err, y_sum, y_sq = sums
    if classification:
        return {f"{split}_loss": loss / n, f"{split}_accuracy": third / n}
    total = y_sq - y_sum ** 2 / n
    return {f"{split}_loss": loss / n, f"{split}_mse": sq_err / n, f"{split}_mae": third / n,
            f"{split}_r2": 1.0 - sq_err / total if total > 0 else float("nan")}
