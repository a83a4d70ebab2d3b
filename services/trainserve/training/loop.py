"""The training loop: one code path for a single process and for DDP ranks.

Data lives in tensors and batches are taken by index (no DataLoader, no per-sample Python).
Every epoch draws one seeded permutation, identical on all ranks; each global batch (of
`batch_size` samples, the whole training split for "gd", one sample for "perceptron") is split
across the ranks, and each rank's loss is scaled so that DDP's gradient averaging yields
exactly the global-batch mean, as in a single process.

Per epoch: the scheduled learning rate is set (and reported as `lr`), training batches are
augmented (images, `DatasetSpec.augmentation`), L1/L2 penalties join the loss (`train_loss`
stays the data loss, so curves remain comparable), gradients are clipped; then the validation
split is evaluated, rank 0's metrics are broadcast (so every rank takes the same plateau and
early-stopping decisions), and rank 0 checkpoints (schedule and early-stopping state included)
and reports. At the end, the best epoch's weights are restored when early stopping asks for
it, the final split is evaluated with every metric (`metrics.final_metrics`), and rank 0
writes the artifact and `result.json`.

What a batch's loss and the metrics are depends on the task (`training.tasks`): supervised, or
reconstruction for autoencoders; the loop itself is the same for both.

`split.folds` >= 2 runs k-fold cross-validation around this (`cv.cross_validate`).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from trainserve.core import errors
from trainserve.training import checkpoints, zoo
from trainserve.training.artifacts import save_artifact, unwrap
from trainserve.training.augment import Augmenter, enabled as augmentation_enabled
from trainserve.training.data import PreparedData, prepare_data
from trainserve.training.diagnostics import PROBE_SAMPLES, make_diagnostics
from trainserve.training.evaluation import EVALUATION_FILE, save_evaluation
from trainserve.training.inside import inside_arrays
from trainserve.training.losses import build_loss, build_mean_loss
from trainserve.training.optimizers import build_optimizer, get_optimizer, step_size
from trainserve.training.paths import JobPaths
from trainserve.training.plan import Plan
from trainserve.training.reporting import Reporter
from trainserve.training.results import TrainResult
from trainserve.training.schedule import LRSchedule
from trainserve.training.seeds import derive_seed, seed_device_rng
from trainserve.training.stopping import EarlyStopping
from trainserve.training import metrics as M
from trainserve.training.task_hooks import SupervisedTask, make_task
from trainserve.training.zoo import build_model

log = logging.getLogger(__name__)

CANCEL_POLL_S = 0.5   # target time between cancellation checks inside an epoch
EVAL_CHUNK = 4096     # samples per forward pass when evaluating
SUMS_FLUSH = 1 << 22  # output values kept before the deferred training sums are reduced


def train(spec, job_dir: str | Path, reporter: Reporter, *, rank: int = 0, world_size: int = 1,
          num_threads: int = 1, keep_checkpoints: int = 2,
          device: str | torch.device = "cpu", data: PreparedData | None = None) -> TrainResult:
    """Train a checked `JobSpec` (see `validate.check_spec`) as rank `rank` of `world_size`.

    With `world_size > 1`, torch.distributed must already be initialized (Ray Train does it).
    Resumes from the newest checkpoint in `<job_dir>/checkpoints/`; rank 0 reports to
    `reporter`, writes checkpoints, the artifact (`<job_dir>/artifact/`) and `result.json`.
    Returns status "cancelled" when the reporter asks to stop (all ranks stop together).
    Raises `errors.TrainingError` when training diverges or cannot run. `device` is where the
    model and data live (e.g. "cuda:0"; collectives then need a backend for that device).
    With `spec.split.folds` >= 2, runs k-fold cross-validation first (`cv.cross_validate`).
    `data`: `prepare_data(spec)` done already (e.g. once for all DDP ranks; unused with folds).
    """
    torch.set_num_threads(max(1, int(num_threads)))  # pooled workers keep stale thread counts
    paths = JobPaths(Path(job_dir))
    run = functools.partial(run_training, reporter=reporter, rank=rank, world_size=world_size,
                            keep_checkpoints=keep_checkpoints, device=torch.device(device))
    if spec.split.folds >= 2:
        from trainserve.training.cv import cross_validate
        return cross_validate(spec, paths, reporter, run, rank=rank)
    return run(spec, Plan(prepare_data(spec) if data is None else data, paths))


def gpu_figures(device: torch.device) -> dict[str, float]:
    """This rank's GPU utilization (0-1, over the driver's last sample period) and the memory
    the training holds, for the epoch's report; empty off CUDA. Utilization needs NVML
    (pynvml); without it only the memory is reported."""
    if device.type != "cuda":
        return {}
    figures = {"gpu_memory_bytes": float(torch.cuda.memory_allocated(device))}
    try:
        figures["gpu_utilization"] = torch.cuda.utilization(device) / 100.0
    except Exception:  # noqa: BLE001 - NVML missing or unsupported: memory only
        pass
    return figures


def use_channels_last(perf, info, device: torch.device) -> bool:
    """`spec.training.performance.channels_last`, or when unset: image inputs on a CPU
    (oneDNN's NHWC convolutions) or on a GPU with bf16 autocast (tensor cores)."""
    if perf.HasField("channels_last"):
        return perf.channels_last
    return info.is_image and (device.type == "cpu" or perf.autocast == "bf16")


def run_training(spec, plan: Plan, *, reporter: Reporter, rank: int = 0, world_size: int = 1,
                 keep_checkpoints: int = 2,
                 device: torch.device = torch.device("cpu")) -> TrainResult:
    """Run one training of a checked `spec` as `plan` says (see `train` for the rest)."""
    return _Trainer(spec, plan, reporter, rank, world_size, keep_checkpoints, device).run()


class _EpochSeeds:
    """`(shuffle, device RNG, augmentation)` seeds of each epoch for one rank, derived
    `BLOCK` epochs at a time: `derive_seed` takes about 7 µs in a loop but about 40 µs alone
    between epochs, and three of those cost a course MLP about 3 % of its epoch."""

    BLOCK = 128

    def __init__(self, seed: int, rank: int, epochs: int):
        self.seed, self.rank, self.epochs = seed, rank, epochs
        self.table: dict[int, tuple[int, int, int]] = {}

    def __call__(self, epoch: int) -> tuple[int, int, int]:
        if epoch not in self.table:
            seed, rank = self.seed, self.rank
            stop = max(epoch + 1, min(epoch + self.BLOCK, self.epochs + 1))
            self.table = {e: (derive_seed(seed, 1, e), derive_seed(seed, 2, e, rank),
                              derive_seed(seed, 3, e, rank)) for e in range(epoch, stop)}
        return self.table[epoch]


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
    def __init__(self, spec, plan: Plan, reporter: Reporter, rank: int, world_size: int,
                 keep_checkpoints: int, device: torch.device):
        self.spec, self.plan, self.paths, self.reporter = spec, plan, plan.paths, reporter
        self.rank, self.world_size, self.keep = rank, world_size, keep_checkpoints
        self.device = device
        perf = spec.training.performance
        self.channels_last = use_channels_last(perf, plan.data.info, device)
        self.autocasting = perf.autocast == "bf16"
        self.autocast = functools.partial(torch.autocast, device.type, dtype=torch.bfloat16) \
            if self.autocasting else contextlib.nullcontext
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed batch shapes: pick the fastest kernels
        self.started = time.monotonic()
        self.data: PreparedData = plan.data
        self.tensors = {name: torch.from_numpy(getattr(self.data, name)).to(device) for name in
                        ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
        self.has_val = len(self.tensors["x_val"]) > 0
        self.step_samples = step_size(spec.optimizer, spec.training.batch_size,
                                      len(self.tensors["x_train"]))
        self.poll = _CancelPoll(reporter, rank, world_size, device)
        # When a checkpoint was last written and last fsynced.
        self.checkpointed_at, self.durable_at = self.started, float("-inf")
        self._check_batch_geometry()
        self.batches = self._batch_plan(len(self.tensors["x_train"]))

    def run(self) -> TrainResult:
        start_epoch = self._setup()
        self.epoch, metrics = start_epoch, {}
        if self.poll.check():
            return self._finish("cancelled", metrics)
        for epoch in range(start_epoch + 1, self.spec.training.epochs + 1):
            if self.stopper is not None and self.stopper.stopped:
                break  # stopped early (in this attempt or before a resume)
            epoch_metrics = self._run_epoch(epoch)
            if epoch_metrics is None:  # cancelled mid-epoch: report the last full epoch
                return self._finish("cancelled", metrics)
            metrics, self.epoch = epoch_metrics, epoch
            if self.poll.check():
                return self._finish("cancelled", metrics)
        return self._complete()

    # --- setup ---------------------------------------------------------------------------

    def _check_batch_geometry(self) -> None:
        opt = self.spec.optimizer
        if get_optimizer(opt.name).steps == "sample" and self.world_size > 1:
            raise errors.TrainingError(
                f"optimizer {opt.name!r} updates after every single sample, which cannot be "
                f"split across {self.world_size} workers; use spec.scaling.num_workers = 1")
        per_rank = self.step_samples // self.world_size
        arch = self.spec.model.WhichOneof("arch")
        need = 2 if getattr(getattr(self.spec.model, arch), "batch_norm", False) else 1
        if per_rank < need:
            what = (f"batch_size {self.spec.training.batch_size}" if self.step_samples ==
                    self.spec.training.batch_size else f"optimizer {opt.name!r}'s steps of "
                                                       f"{self.step_samples} sample(s)")
            raise errors.TrainingError(
                f"{what} gives {per_rank} sample(s) per worker across {self.world_size} "
                f"workers; need at least {need} per worker")
        # Matches `_global_batches`: at least one full batch, or a short one that it keeps.
        if len(self.tensors["x_train"]) < min(self.step_samples, 2 * self.world_size):
            raise errors.TrainingError(
                f"the training split ({len(self.tensors['x_train'])} samples) is too small "
                f"for {self.world_size} workers")

    def _setup(self) -> int:
        """Build model, optimizer, loss and the per-epoch controllers; resume; wrap for DDP.
        Returns the epoch resumed at."""
        spec = self.spec
        torch.manual_seed(derive_seed(spec.training.seed, 0))
        self.module = build_model(spec, self.data.info).to(self.device)
        if self.channels_last:
            self.module.to(memory_format=torch.channels_last)
        self._init_from_data()
        self._transfer()
        if self.data.info.task == "regression":
            self._fit_target_scale()
        self.optimizer = build_optimizer(  # frozen (transfer) parameters are not optimized
            [p for p in self.module.parameters() if p.requires_grad], spec.optimizer)
        self.loss_fn = build_loss(spec.loss, self.data.info)
        self.mean_loss = build_mean_loss(spec.loss, self.data.info)
        self.task = make_task(spec, self.data.info, self.loss_fn)
        # Without a validation split, plateau watches the training loss instead.
        self.schedule = LRSchedule(spec.optimizer, spec.training.epochs,
                                   "val_loss" if self.has_val else "train_loss")
        self.stopper = EarlyStopping(spec.training.early_stopping) \
            if spec.training.HasField("early_stopping") else None
        self.augment = self._augmenter()
        self.penalized = self._penalized_parameters()
        self.diagnostics = make_diagnostics(spec, self.module)  # None unless asked for
        start_epoch = self._resume()
        self.seeds = _EpochSeeds(spec.training.seed, self.rank, spec.training.epochs)
        self.seeds(start_epoch + 1)  # derives the first block's
        self.model = self.module
        if self.world_size > 1:
            # Broadcasts rank 0's parameters and buffers, so all ranks start identical.
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(self.module, device_ids=ids)
        # What the training steps call; evaluation and the artifact use the plain module.
        self.forward = torch.compile(self.model) if spec.training.performance.compile \
            else self.model
        if self.rank == 0:
            self._log_start(start_epoch)
        return start_epoch

    def _init_from_data(self) -> None:
        """Data-dependent initialization (e.g. RBF centres by k-means) through the zoo's
        `init_from_data(model, x_train)`, or else every submodule's own `init_from_data(x)`.
        Each rank runs it on the same data with the same seed, and DDP then broadcasts rank
        0's parameters anyway. A resumed checkpoint overwrites it."""
        x = self.tensors["x_train"]
        hook = getattr(zoo, "init_from_data", None)
        if hook is not None:
            hook(self.module, x)
            return
        with torch.no_grad():
            for module in self.module.modules():
                if callable(getattr(module, "init_from_data", None)):
                    module.init_from_data(x)

    def _transfer(self) -> None:
        """`spec.model.transfer`: load the source's matching weights, freeze (`training.transfer`).
        A resumed checkpoint then overwrites the weights; the freezing stays."""
        from trainserve.training.transfer import apply_transfer
        report = apply_transfer(self.spec, self.module)
        if report is not None and self.rank == 0:
            tr = self.spec.model.transfer
            for line in report.lines(f"model {tr.model or tr.artifact_path!r}"
                                     + (f" version {tr.version}" if tr.version else "")):
                self.reporter.log(line)

    def _fit_target_scale(self) -> None:
        y = self.data.y_train.astype(np.float64)
        std = float(y.std())
        self.module.target_scale.shift.fill_(float(y.mean()))
        self.module.target_scale.scale.fill_(std if std > 1e-6 else 1.0)

    def _augmenter(self) -> Augmenter | None:
        aug = self.spec.dataset.augmentation
        if not augmentation_enabled(aug):
            return None
        pre = self.data.preprocessing
        return Augmenter(aug, pre.shift, pre.scale, self.data.info.input_shape, self.device)

    def _penalized_parameters(self) -> list[torch.nn.Parameter]:
        """What L1/L2 penalize: weight matrices and kernels (>= 2 dimensions), not biases or
        normalization parameters (1 dimension), whose size says nothing about overfitting."""
        reg = self.spec.training.regularization
        if not (reg.l1 or reg.l2):
            return []
        return [p for p in self.module.parameters() if p.requires_grad and p.dim() >= 2]

    def _resume(self) -> int:
        """Load the newest checkpoint (chosen by rank 0, loaded by all). Returns its epoch."""
        epoch, state = torch.zeros(1, dtype=torch.int64, device=self.device), None
        if self.rank == 0:
            checkpoints.remove_temp_dirs(self.paths.checkpoints)
            epoch[0], state, unreadable = checkpoints.newest_readable(self.paths.checkpoints)
            for bad, error in unreadable:
                self.reporter.log(f"the checkpoint of epoch {bad} is unreadable and was "
                                  f"removed ({error})", level="warning")
        if self.world_size > 1:
            dist.broadcast(epoch, src=0)
        if epoch.item() == 0:
            return 0
        if state is None:  # the other ranks load what rank 0 chose
            state = checkpoints.load_checkpoint(
                self.paths.checkpoints / checkpoints.checkpoint_name(epoch.item()))
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state.get("schedule") or {})
        if self.stopper is not None:
            self.stopper.load_state_dict(state.get("early_stopping") or {})
        if self.rank == 0 and state.get("dataset_hash") != self.data.dataset_hash:
            self.reporter.log("the dataset changed since the checkpoint was written",
                              level="warning")
        return int(state["epoch"])

    def _log_start(self, start_epoch: int) -> None:
        d, s = self.data, self.spec
        steps = {"batch": f"batch {s.training.batch_size}", "epoch": "full batch",
                 "sample": "one sample a step"}[get_optimizer(s.optimizer.name).steps]
        self.reporter.log((
            f"training {s.model.WhichOneof('arch')} on {d.info.name}: {len(d.x_train)} train / "
            f"{len(d.x_val)} val / {len(d.x_test)} test samples, {s.training.epochs} epochs, "
            f"{s.optimizer.name} with {steps} over {self.world_size} worker(s)"))
        if start_epoch:
            self.reporter.log(f"resumed from the checkpoint of epoch {start_epoch}")

    # --- one epoch -------------------------------------------------------------------------

    def _run_epoch(self, epoch: int) -> dict[str, float] | None:
        """Train one epoch, evaluate, update the controllers, checkpoint and report. None when
        cancelled mid-epoch."""
        t0 = time.monotonic()
        lr = self.schedule.lr(epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        sums = self._train_epoch(epoch)  # read to the host: waits for the device
        if sums is None:
            return None
        metrics = self._train_metrics(sums, epoch)
        seconds = time.monotonic() - t0
        if self.diagnostics is not None:  # every rank: the metrics' keys must agree
            metrics.update(self.diagnostics.epoch_metrics(self._probe))
        if self.has_val:
            metrics.update(self._evaluate("val"))
        metrics = self._agree(metrics | {"lr": lr})
        self.schedule.observe(epoch, metrics)
        stop = self.stopper is not None and self.stopper.update(epoch, metrics, self.module)
        if self.rank == 0:
            self._checkpoint(epoch, final=stop or epoch == self.spec.training.epochs)
        # Every rank reports (the metrics agree): a reporter that synchronizes the ranks, such
        # as Ray Train's, needs each of them; the others' reporters usually report nothing.
        self.reporter.epoch(epoch, self.spec.training.epochs, metrics | gpu_figures(self.device),
                            sums[1] / max(seconds, 1e-9), time.monotonic() - self.started)
        if self.rank == 0 and stop:
            self.reporter.log(self.stopper.message())
        return metrics

    def _train_epoch(self, epoch: int) -> list[float] | None:
        """Sums over all ranks of [loss, samples, the task's third sum (correct, abs error,
        reconstruction MSE)]; None when cancelled."""
        shuffle_seed, device_seed, augment_seed = self.seeds(epoch)
        x, y = self.tensors["x_train"], self.tensors["y_train"]
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(shuffle_seed)
                              ).to(self.device)
        # One gather an epoch: every batch (and rank shard) is then a view, as in a
        # hand-written loop over pre-batched tensors.
        xs, ys = x[perm], y[perm]
        seed_device_rng(device_seed, self.device)  # dropout
        augment_rng = None if self.augment is None else \
            torch.Generator().manual_seed(augment_seed)
        self.model.train()
        sums = _EpochSums(self.task, self.device, self.mean_loss)
        # Locals: a small model's step lasts ~0.2 ms, and the loop's own Python counts.
        step, forward, optimizer, poll = sums.step, self.forward, self.optimizer, self.poll
        augment, penalized = self.augment, self.penalized
        grad_clip = self.spec.optimizer.grad_clip
        diagnose = None if self.diagnostics is None else self.diagnostics.step
        for batch, scale in self.batches:
            xb, yb = self._batch_input(xs[batch]), ys[batch]
            if augment is not None:
                xb = augment(xb, augment_rng)
            if not self.autocasting:
                loss = step(forward, xb, yb, scale)
            else:
                with self.autocast():
                    loss = step(forward, xb, yb, scale)
            if penalized:
                loss = loss + self._penalty()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if diagnose is not None:
                diagnose()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(self.module.parameters(), grad_clip)
            optimizer.step()
            if poll.step():
                return None
        return self._sum_over_ranks(sums.total())

    def _probe(self) -> None:
        """The probe batch of the activation statistics (`training.diagnostics`)."""
        self.module.eval()
        self._evaluate_chunk(self.tensors["x_train"][:PROBE_SAMPLES],
                             self.tensors["y_train"][:PROBE_SAMPLES])

    def _batch_input(self, xb: torch.Tensor) -> torch.Tensor:
        return xb.contiguous(memory_format=torch.channels_last) if self.channels_last else xb

    def _penalty(self) -> torch.Tensor | float:
        """l1 * sum|w| + l2 * sum w^2 over the penalized weights. Every rank adds it, and
        DDP's averaging of the identical penalty gradients leaves it unchanged."""
        if not self.penalized:
            return 0.0
        reg, total = self.spec.training.regularization, 0.0
        if reg.l1:
            total = total + reg.l1 * sum(p.abs().sum() for p in self.penalized)
        if reg.l2:
            total = total + reg.l2 * sum(p.pow(2).sum() for p in self.penalized)
        return total

    def _batch_plan(self, n: int) -> list[tuple[slice, float | None]]:
        """This rank's share of each global batch of an epoch's permutation of `n` samples,
        with its loss scale: None on one worker (the batch mean itself); with DDP each
        rank's sum scaled so that the ranks' averaged gradients are the global batch mean's."""
        rank, world = self.rank, self.world_size
        return [(slice(start + rank, stop, world),
                 None if world == 1 else world / (stop - start))
                for start, stop in self._global_batches(n)]

    def _global_batches(self, n: int):
        """`(start, stop)` of each global batch in an epoch's permutation of `n` samples."""
        size = self.step_samples
        for start in range(0, n, size):
            stop = min(start + size, n)
            # A short last batch is dropped when it cannot give every rank two samples
            # (an empty shard stalls DDP; BatchNorm fails on one); the permutation
            # changes every epoch, so no sample is dropped for good.
            if stop - start < size and stop - start < 2 * self.world_size:
                return
            yield start, stop

    def _train_metrics(self, totals: list[float], epoch: int) -> dict[str, float]:
        if not math.isfinite(totals[0]):
            raise errors.TrainingError(
                f"training diverged in epoch {epoch}: the loss became {totals[0]}; try a lower "
                f"learning rate than spec.optimizer.lr = {self.spec.optimizer.lr:g}")
        return self.task.train_metrics(totals)

    def _agree(self, metrics: dict[str, float]) -> dict[str, float]:
        """Rank 0's metrics on every rank: the controllers then decide identically even if
        floating-point reductions were to differ in the last bit between ranks."""
        if self.world_size == 1:
            return metrics
        keys = sorted(metrics)
        values = torch.tensor([metrics[k] for k in keys], dtype=torch.float64,
                              device=self.device)
        dist.broadcast(values, src=0)
        return dict(zip(keys, values.tolist()))

    # --- evaluation, checkpoints, results --------------------------------------------------

    def _evaluate(self, split: str) -> dict[str, float]:
        """The per-epoch metrics of `split`."""
        out, losses, x, y = self._predict(split)
        return self.task.epoch_metrics(split, out, x, y, losses)

    @torch.no_grad()
    def _predict(self, split: str):
        """Outputs, per-sample losses, inputs and targets of the whole `split` on every rank:
        each rank runs a shard, then the shards are gathered (metrics such as ROC AUC need all
        outputs at once)."""
        self._sync_buffers()
        x, y = self.tensors[f"x_{split}"], self.tensors[f"y_{split}"]
        idx = torch.arange(self.rank, len(x), self.world_size, device=self.device)
        self.module.eval()
        parts = [self._evaluate_chunk(x[i], y[i])
                 for i in (idx[s:s + EVAL_CHUNK] for s in range(0, len(idx), EVAL_CHUNK))]
        if parts:
            out, losses = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        else:  # an empty shard still takes part in the gather
            out = torch.zeros((0, *self.task.output_shape), device=self.device)
            losses = torch.zeros(0, device=self.device)
        return self._gather(out, len(x)), self._gather(losses, len(x)), x, y

    def _evaluate_chunk(self, x: torch.Tensor, y: torch.Tensor):
        with self.autocast():
            out, losses = self.task.evaluate(self.module, self._batch_input(x), y)
        # Metrics and the gather expect float32 (bf16 outputs under autocast).
        return tuple(t.float() if t.dtype == torch.bfloat16 else t for t in (out, losses))

    def _gather(self, out: torch.Tensor, n: int) -> torch.Tensor:
        """The `n` rows of all ranks' strided shards (rank r has rows r, r + W, ...), in order."""
        if self.world_size == 1:
            return out
        rows = -(-n // self.world_size)  # all_gather needs equal sizes: pad to the largest
        padded = out.new_zeros((rows, *out.shape[1:]))
        padded[:len(out)] = out
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded)
        full = out.new_empty((n, *out.shape[1:]))
        for r, part in enumerate(parts):
            full[r::self.world_size] = part[:len(range(r, n, self.world_size))]
        return full

    def _sync_buffers(self) -> None:
        # DDP broadcasts buffers before each training forward, so after the last step the
        # ranks' BatchNorm statistics differ by one update: evaluate with rank 0's.
        if self.world_size > 1:
            for buf in self.module.buffers():
                dist.broadcast(buf, src=0)

    def _sum_over_ranks(self, values: list[float]) -> list[float]:
        if self.world_size == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def _checkpoint(self, epoch: int, final: bool) -> None:
        """Write the checkpoint of `epoch` when it is the `final` one (the last epoch, or the
        one early stopping ends on) or `spec.training.checkpoint_every_s` have passed since
        the last; fsync it when final or `checkpoints.DURABLE_EVERY_S` have passed."""
        now = time.monotonic()
        if not final and now - self.checkpointed_at < self.spec.training.checkpoint_every_s:
            return
        durable = final or now - self.durable_at >= checkpoints.DURABLE_EVERY_S
        self.checkpointed_at = now
        if durable:
            self.durable_at = now
        checkpoints.save_checkpoint(self.paths.checkpoints, epoch, {
            "epoch": epoch,
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "early_stopping": None if self.stopper is None else self.stopper.state_dict(),
            "dataset_hash": self.data.dataset_hash,
        }, keep=self.keep, durable=durable)

    def _complete(self) -> TrainResult:
        """Restore the best weights if asked, evaluate the final split with every metric."""
        if self.stopper is not None and self.stopper.restore(self.module) and self.rank == 0 \
                and self.stopper.best_epoch != self.epoch:
            self.reporter.log(f"restored the weights of epoch {self.stopper.best_epoch}")
        split = self.plan.final_split
        out, losses, x, y = self._predict(split)
        metrics, cm = self.task.final_metrics(split, out, x, y, losses, self.module)
        if self.rank == 0 and self.plan.artifact:  # what the plots need (training.evaluation)
            save_evaluation(self.paths.root / EVALUATION_FILE, self.data, self.module, out, x,
                            y, self.spec.training.seed,
                            extra=inside_arrays(self.spec, self.data, self.module, x, y))
        if self.stopper is not None:
            metrics |= self.stopper.summary(self.epoch)
        return self._finish("succeeded", metrics | dict(self.plan.extra_metrics), cm)

    def _finish(self, status: str, metrics: dict[str, float],
                confusion: list[list[int]] | None = None) -> TrainResult:
        artifact = None
        if status == "succeeded" and self.plan.artifact:
            artifact = str(self.paths.artifact)
            if self.rank == 0:
                stored = self.spec if self.plan.stored_spec is None else self.plan.stored_spec
                save_artifact(self.paths.artifact, unwrap(self.model), stored, self.data.info,
                              self.data.preprocessing, metrics, self.data.dataset_hash,
                              self.task.extra_meta() |
                              ({"confusion_matrix": confusion} if confusion else {}))
        result = TrainResult(status, metrics, artifact, self.data.dataset_hash, confusion)
        if self.rank == 0:
            result.write(self.paths.result)
            self.reporter.log(f"training {status}: " + ", ".join(
                f"{k}={v:.4g}" for k, v in sorted(metrics.items())))
        return result


def _reduce(per_sample: torch.Tensor, scale: float | None) -> torch.Tensor:
    return per_sample.mean() if scale is None else per_sample.sum() * scale


class _EpochSums:
    """An epoch's float64 training sums `[loss, samples, third]` (see `metrics.train_sums`).

    For the supervised task they are reduced from what the steps kept (outputs, targets and
    each batch's loss) every `SUMS_FLUSH` output values and at the end, rather than every
    step: on a small model the handful of tiny ops per step that the sums take cost as much
    as 20 % of the step. With `mean_loss` (one worker, a loss with a fused batch-mean form),
    a step backpropagates that one op and keeps its value; recomputing per-sample losses
    for the sums would cost a few percent of a small model's epoch. A flush reads its sums
    to the host (on a GPU one synchronization per `SUMS_FLUSH` output values; the epoch's
    end reads them anyway). Other tasks sum per step on the device through their
    `train_step`.
    """

    def __init__(self, task, device: torch.device, mean_loss=None):
        self.task, self.device = task, device
        self.deferred = type(task) is SupervisedTask
        self.mean_loss = mean_loss if self.deferred else None
        # Summed per step on the device (other tasks), or per flush on the host (deferred).
        self.sums = None if self.deferred else torch.zeros(3, dtype=torch.float64,
                                                           device=device)
        self.host = [0.0, 0.0, 0.0]
        self.outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        # Each step's loss: its batch mean (with `mean_loss`) or its per-sample losses.
        self.losses: list[torch.Tensor] = []
        self.held = 0

    def step(self, model, x: torch.Tensor, y: torch.Tensor, scale: float | None
             ) -> torch.Tensor:
        """The batch's loss to backpropagate: the batch mean (`scale` None) or the sum of
        its per-sample losses times `scale` (a DDP rank's share); its sums are counted."""
        if not self.deferred:
            per_sample, batch_sums = self.task.train_step(model, x, y)
            self.sums += batch_sums
            return _reduce(per_sample, scale)
        out = model(x)  # the same math as SupervisedTask.train_step
        # Kept as they are, not detached: `_flush` reads them without grad, and backward
        # frees what their graphs saved all the same.
        if self.mean_loss is not None and scale is None:
            loss = self.mean_loss(out, y)
            self.losses.append(loss)
        else:
            per_sample = self.task.loss_fn(out, y)
            loss = _reduce(per_sample, scale)
            self.losses.append(per_sample)
        self.outputs.append((out, y))
        self.held += out.numel()
        if self.held >= SUMS_FLUSH:
            self._flush()
        return loss

    def _flush(self) -> None:
        """Reduce what the steps kept into `host`, in as few ops as it takes: the flush at
        an epoch's end runs on cold caches, where each op costs several microseconds."""
        if not self.outputs:
            return
        with torch.no_grad():
            self._reduce_kept()
        self.outputs, self.losses, self.held = [], [], 0

    def _reduce_kept(self) -> None:
        out = torch.cat([o for o, _ in self.outputs]).float()
        y = torch.cat([t for _, t in self.outputs])
        if self.losses[0].dim() == 0:  # batch means: weigh each by its batch's size
            means = torch.stack(self.losses).tolist()
            loss_sum = sum(m * len(t) for m, (_, t) in zip(means, self.outputs))
        else:
            loss_sum = torch.cat(self.losses).double().sum().item()
        third = M.train_third(out, y, self.task.classification).item()
        host = self.host
        host[0], host[1], host[2] = host[0] + loss_sum, host[1] + len(y), host[2] + third

    def total(self) -> list[float]:
        """The epoch's sums, read to the host."""
        if not self.deferred:
            return self.sums.tolist()
        self._flush()
        return self.host
