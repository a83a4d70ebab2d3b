"""Early stopping, and the names of the per-epoch metrics it may monitor.

torch-free at import (validation uses the names). The loop calls `EarlyStopping.update` after
every epoch with the epoch's metrics, which are identical on every DDP rank (rank 0's are
broadcast), so every rank stops at the same epoch.

Defaults (applied by validation): metric val_loss, mode by metric (max for accuracy-like
metrics, min otherwise), patience 5, min_delta 0, restore_best true. A classifier may also
monitor a clinical metric of its validation split (e.g. val_malignant_sensitivity, val_auc,
val_brier; `training.epoch_clinical`), which validation then has computed every epoch.
"""
from __future__ import annotations

import math

from trainserve.core.metrics import default_mode
from trainserve.training.checks import check_choice, check_range, fail

DEFAULT_METRIC = "val_loss"
DEFAULT_PATIENCE = 5
MAX_PATIENCE = 100_000
MODES = ("max", "min")
# The token tasks' per-epoch metrics besides <split>_loss (see training.seq_tasks).
TOKEN_METRICS = {"seq2seq": (["token_accuracy"], ["token_accuracy", "exact_match"]),
                 "language_model": (["token_accuracy"], ["token_accuracy"])}


def epoch_metric_names(task: str, with_val: bool) -> list[str]:
    """The per-epoch metrics the loop reports for `task` (besides `lr`), as it names them."""
    if task == "reconstruction":
        train = ["train_loss", "train_recon_mse"]
        return train + (["val_loss", "val_recon_mse"] if with_val else [])
    if task in TOKEN_METRICS:
        train_only, val = TOKEN_METRICS[task]
        train = ["train_loss"] + [f"train_{m}" for m in train_only]
        return train + (["val_loss"] + [f"val_{m}" for m in val] if with_val else [])
    train = ["train_loss", "train_accuracy" if task == "classification" else "train_mae"]
    if not with_val:
        return train
    val = ["val_accuracy"] if task == "classification" else ["val_mse", "val_mae", "val_r2"]
    return train + ["val_loss"] + val


def check_early_stopping(es, task: str, with_val: bool, path: str,
                         clinical: list[str] = ()) -> None:
    """Apply the defaults to an `EarlyStoppingSpec` and validate it; `with_val` says whether
    the trainings have a validation split (for k-fold CV: the folds), `clinical` names the
    per-epoch clinical metrics they can report (`epoch_clinical.names_for`)."""
    es.metric = es.metric or DEFAULT_METRIC
    known = epoch_metric_names(task, with_val) + list(clinical)
    if es.metric not in known:
        hint = "" if with_val or not es.metric.startswith("val_") else (
            " (no validation split: set spec.split.val_fraction > 0 or spec.split.folds >= 2"
            " to monitor a val_ metric)")
        fail(f"{path}.metric", f"unknown per-epoch metric {es.metric!r} for {task}; "
                               f"known: {', '.join(known)}{hint}")
    es.mode = es.mode or default_mode(es.metric)
    check_choice(es.mode, MODES, f"{path}.mode", "mode")
    if not es.HasField("patience"):
        es.patience = DEFAULT_PATIENCE
    if not 1 <= es.patience <= MAX_PATIENCE:
        fail(f"{path}.patience", f"must be in [1, {MAX_PATIENCE}], got {es.patience}")
    check_range(es.min_delta, f"{path}.min_delta", low=0.0, high=math.inf)
    if not es.HasField("restore_best"):
        es.restore_best = True


class EarlyStopping:
    """Tracks the monitored metric of a checked `EarlyStoppingSpec`.

    `update` returns True when training must stop: `patience` epochs in a row without an
    improvement larger than `min_delta`. With `restore_best`, a CPU copy of the best epoch's
    state dict is kept (and checkpointed, so a resumed run restores the same weights).
    """

    def __init__(self, es):
        self.metric, self.mode, self.patience = es.metric, es.mode, es.patience
        self.min_delta, self.restore_best = es.min_delta, es.restore_best
        self.best = -math.inf if self.mode == "max" else math.inf
        self.best_epoch, self.bad, self.stopped_epoch = 0, 0, 0
        self.best_state: dict | None = None

    @property
    def stopped(self) -> bool:
        return self.stopped_epoch > 0

    def improved(self, value: float) -> bool:
        """Whether `value` beats the best so far by more than `min_delta` (NaN never does)."""
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def update(self, epoch: int, metrics: dict[str, float], module) -> bool:
        """Record epoch `epoch`; True when training must stop after it. A metric the epoch
        left out (undefined, e.g. the ROC AUC of a split lacking a class) counts as NaN."""
        value = metrics.get(self.metric, math.nan)
        if self.improved(value):
            self.best, self.best_epoch, self.bad = value, epoch, 0
            if self.restore_best:
                self.best_state = {k: v.detach().to("cpu", copy=True)
                                   for k, v in module.state_dict().items()}
            return False
        self.bad += 1
        if self.bad >= self.patience:
            self.stopped_epoch = epoch
        return self.stopped

    def restore(self, module) -> bool:
        """Load the best epoch's weights into `module` (with restore_best); True if it did."""
        if not (self.restore_best and self.best_state is not None):
            return False
        module.load_state_dict(self.best_state)
        return True

    def summary(self, last_epoch: int) -> dict[str, float]:
        """Final metrics: `best_epoch` and `stopped_epoch` (the last epoch trained, which is
        the epoch limit when it never triggered)."""
        return {"best_epoch": float(self.best_epoch),
                "stopped_epoch": float(self.stopped_epoch or last_epoch)}

    def message(self) -> str:
        """The log line when it triggers."""
        kept = "its weights are kept" if self.restore_best else "the last epoch's weights are kept"
        return (f"early stopping after epoch {self.stopped_epoch}: {self.metric} has not improved "
                f"by more than {self.min_delta:g} for {self.patience} epoch(s); best epoch "
                f"{self.best_epoch} ({self.metric}={self.best:.4g}), {kept}")

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad": self.bad,
                "stopped_epoch": self.stopped_epoch, "best_state": self.best_state}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.best, self.best_epoch, self.bad = state["best"], state["best_epoch"], state["bad"]
            self.stopped_epoch, self.best_state = state["stopped_epoch"], state["best_state"]
