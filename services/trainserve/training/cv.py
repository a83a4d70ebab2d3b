"""k-fold cross-validation (`SplitSpec.folds` = k >= 2), wrapped around the ordinary training.

1. The test split is drawn as always; the other samples are dealt into k folds (stratified for
   classification unless `stratify` is false; see `data.fold_indices`).
2. k trainings, each an ordinary training (same spec, model, seed) that validates on one fold
   and trains on the others, with its own checkpoints in `<job>/cv/fold-<i>/` (a resumed job
   skips the folds that finished). At the end of each, the fold's validation split is
   evaluated with every final metric (restoring the best epoch first with early stopping).
3. `cv_<metric>_mean` and `cv_<metric>_std` (population std over the folds) for every final
   validation metric (`cv_loss`, `cv_accuracy`, `cv_auc`, ...; for regression `cv_mse`,
   `cv_mae`, `cv_r2`) and, with early stopping, `cv_best_epoch` / `cv_stopped_epoch`; plus
   `cv_folds`.
4. The final model is trained on all non-test samples (there is no validation split: check_spec
   makes `val_fraction` 0) and evaluated on the test split; its metrics are the job's, with the
   `cv_*` summary added. Early stopping on a `val_` metric cannot run without a validation
   split, so the final training runs instead for the folds' mean kept epoch (the best epoch with
   `restore_best`, else the stopped one), rounded; "plateau" watches `train_loss` there.

Progress: every training reports its epochs on one continuous scale, `epoch` = the trainings
before it times `training.epochs` plus its own epoch, of `total` = (k + 1) * epochs (the last
part shrinks to the final training's epochs once known), and each epoch's metrics carry `fold`
(1..k; 0 for the final model). Log lines are prefixed "fold i/k: " or "final model: ".
"""
from __future__ import annotations

import math
import statistics
import time
from typing import Callable

from trainserve.core.pb import spec_pb2
from trainserve.training.data import prepare_data
from trainserve.training.paths import JobPaths
from trainserve.training.plan import Plan
from trainserve.training.reporting import Reporter
from trainserve.training.results import TrainResult

RunFn = Callable[..., TrainResult]  # loop.run_training with everything but spec/plan bound


def cross_validate(spec, paths: JobPaths, reporter: Reporter, run: RunFn, *,
                   rank: int = 0) -> TrainResult:
    """Cross-validate a checked `spec` with `spec.split.folds` folds, then train and evaluate
    the final model (see the module docstring). `run(spec, plan, reporter=...)` runs one
    training. Returns the final model's `TrainResult`, or a cancelled one (which rank 0 also
    writes to the job's `result.json`, where the Ray Train launcher reads it)."""

    k, epochs, started = spec.split.folds, spec.training.epochs, time.monotonic()
    folds = []
    for i in range(k):
        stage = _Stage(reporter, f"fold {i + 1}/{k}", i + 1, i * epochs, (k + 1) * epochs,
                       started)
        plan = Plan(prepare_data(spec, fold=i), JobPaths(paths.root / "cv" / f"fold-{i + 1}"),
                    final_split="val", artifact=False)
        result = run(spec, plan, reporter=stage)
        if result.status != "succeeded":
            cancelled = TrainResult(result.status, result.metrics)
            if rank == 0:
                cancelled.write(paths.result)
            return cancelled
        folds.append(result.metrics)
    summary = summarize(folds)
    reporter.log(f"cross-validation over {k} folds: " + describe(summary))
    final_spec = final_training_spec(spec, folds)
    n_final = final_spec.training.epochs
    stage = _Stage(reporter, "final model", 0, k * epochs, k * epochs + n_final, started)
    if final_spec is not spec:
        stage.log(f"early stopping needs a validation split; training on all non-test samples "
                  f"for {n_final} epochs, the folds' mean kept epoch")
    plan = Plan(prepare_data(spec), paths, stored_spec=spec, extra_metrics=summary)
    return run(final_spec, plan, reporter=stage)


def summarize(folds: list[dict[str, float]]) -> dict[str, float]:
    """`cv_<m>_mean` / `cv_<m>_std` over the folds' final metrics: every `val_<m>`, plus
    `best_epoch` and `stopped_epoch`; non-finite values (e.g. an undefined AUC) are left out."""
    names = [k for k in folds[0] if k.startswith("val_") or k in ("best_epoch", "stopped_epoch")]
    out = {"cv_folds": float(len(folds))}
    for key in names:
        values = [f[key] for f in folds if math.isfinite(f.get(key, math.nan))]
        name = key.removeprefix("val_")
        out[f"cv_{name}_mean"] = statistics.fmean(values) if values else math.nan
        out[f"cv_{name}_std"] = statistics.pstdev(values) if values else math.nan
    return out


def describe(summary: dict[str, float]) -> str:
    """"accuracy 0.95 ± 0.02, loss ..." for a log line."""
    means = sorted(k[3:-5] for k in summary if k.endswith("_mean"))
    return ", ".join(f"{m} {summary[f'cv_{m}_mean']:.4g} ± {summary[f'cv_{m}_std']:.2g}"
                     for m in means)


def final_training_spec(spec, folds: list[dict[str, float]]):
    """The spec of the final training: `spec` itself, except that early stopping on a `val_`
    metric is replaced by a fixed number of epochs, the folds' mean kept epoch."""
    es = spec.training.early_stopping
    if not (spec.training.HasField("early_stopping") and es.metric.startswith("val_")):
        return spec
    key = "best_epoch" if es.restore_best else "stopped_epoch"
    kept = [f[key] for f in folds if f.get(key, 0) > 0]
    out = spec_pb2.JobSpec()
    out.CopyFrom(spec)
    out.training.ClearField("early_stopping")
    if kept:
        out.training.epochs = max(1, round(statistics.fmean(kept)))
    return out


class _Stage:
    """The reporter of one training within the cross-validation: puts its epochs on the
    job's continuous scale, tags them with the fold, prefixes its log lines."""

    def __init__(self, inner: Reporter, prefix: str, fold: int, offset: int, total: int,
                 started: float):
        self.inner, self.prefix, self.fold = inner, prefix, fold
        self.offset, self.total, self.started = offset, total, started

    def epoch(self, epoch, total_epochs, metrics, samples_per_second, elapsed_seconds) -> None:
        tagged = dict(metrics) | {"fold": float(self.fold)}
        self.inner.epoch(self.offset + epoch, self.total, tagged, samples_per_second,
                         time.monotonic() - self.started)

    def log(self, text: str, level: str = "info") -> None:
        self.inner.log(f"{self.prefix}: {text}", level=level)

    def cancel_requested(self) -> bool:
        return self.inner.cancel_requested()
