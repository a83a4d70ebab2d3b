"""Evaluation metrics over whole splits, in torch (ROC AUC too, as the Mann-Whitney U statistic).

Per epoch (the curves): loss and accuracy, or loss, MSE, MAE and R^2 for regression; the
names are `stopping.epoch_metric_names`. At the end (`final_metrics`), classification adds
macro precision, recall and F1, ROC AUC (binary: of the class-1 probability; more classes:
one-vs-rest, macro-averaged), the confusion matrix (rows: true class, columns: predicted)
and the clinical metrics of `training.clinical_metrics` (per-class sensitivity, specificity,
PPV, NPV and counts; top-k accuracy; Brier score and expected calibration error). With
`training.epoch_clinical_metrics`, the validation split's are reported every epoch too
(`epoch_clinical`, names in `training.epoch_clinical`).
Regression outputs `(N, k)` are averaged over the k outputs (R^2 per output, then the mean).
"""
from __future__ import annotations

import math

import torch

from trainserve.training.clinical_metrics import clinical_metrics
from trainserve.training.epoch_clinical import epoch_names, per_class_names


def train_sums(out: torch.Tensor, y: torch.Tensor, loss_sum: torch.Tensor,
               classification: bool) -> torch.Tensor:
    """float64 `[sum of losses, samples, correct | sum of per-sample MAE]` of one batch, to be
    summed over batches and ranks (an all-reduce of sums is exact, unlike one of means);
    `loss_sum` is the sum of the batch's per-sample losses."""
    count = torch.tensor(len(y), dtype=torch.float64, device=out.device)
    return torch.stack([loss_sum.double(), count, train_third(out, y, classification).double()])


def train_third(out: torch.Tensor, y: torch.Tensor, classification: bool) -> torch.Tensor:
    """The third of `train_sums`: correct predictions | the sum of per-sample MAE."""
    if classification:  # max's indices: argmax's, in half the time on a CPU
        return (out.max(dim=1).indices == y).sum()
    return (out - y.reshape(out.shape)).abs().mean(dim=1).sum()


def train_metrics(sums: list[float], classification: bool) -> dict[str, float]:
    """`train_loss` and `train_accuracy` | `train_mae` from `train_sums` totals."""
    loss, n, third = sums
    key = "train_accuracy" if classification else "train_mae"
    return {"train_loss": loss / n, key: third / n}


def epoch_metrics(split: str, out: torch.Tensor, y: torch.Tensor, per_sample: torch.Tensor,
                  classification: bool) -> dict[str, float]:
    """The per-epoch metrics of `split` from its outputs, targets and per-sample losses."""
    loss = float(per_sample.double().mean())
    if classification:
        return {f"{split}_loss": loss, f"{split}_accuracy": accuracy(out, y)}
    return {f"{split}_loss": loss} | {f"{split}_{k}": v for k, v in regression(out, y).items()}


def final_metrics(split: str, out: torch.Tensor, y: torch.Tensor, per_sample: torch.Tensor,
                  num_classes: int, class_names=(), top_k: int | None = None
                  ) -> tuple[dict[str, float], list[list[int]] | None]:
    """Every metric of `split` and, for classification (`num_classes` > 0), its confusion
    matrix as nested lists. `class_names` name the per-class metrics, `top_k` is the spec's
    k of the top-k accuracy (None: the default; see `training.clinical_metrics`)."""
    metrics = epoch_metrics(split, out, y, per_sample, num_classes > 0)
    if num_classes == 0:
        return metrics, None
    cm = confusion_matrix(out.argmax(dim=1), y, num_classes)
    metrics |= {f"{split}_{k}": v for k, v in from_confusion(cm).items()}
    metrics[f"{split}_auc"] = roc_auc(out, y, num_classes)
    prob = torch.softmax(out.detach().double(), dim=1).cpu().numpy()
    metrics |= clinical_metrics(split, prob, y.cpu().numpy(), cm.numpy(), class_names, top_k)
    return metrics, cm.tolist()


def epoch_clinical(split: str, out: torch.Tensor, y: torch.Tensor, num_classes: int,
                   class_names=(), top_k: int | None = None) -> dict[str, float]:
    """The clinical metrics of `split` for one epoch's curves: `final_metrics`' under the names
    of `epoch_clinical.epoch_names`. A per-class rate whose denominator is 0 (a class never
    predicted, or absent) counts as 0, as the macro precision and recall do, so that the
    epochs share their names; a value that is not finite (ROC AUC of a split that lacks a
    class, outputs that diverged) is left out of the epoch."""
    cm = confusion_matrix(out.argmax(dim=1), y, num_classes)
    metrics = {f"{split}_{k}": v for k, v in from_confusion(cm).items()}
    metrics[f"{split}_auc"] = roc_auc(out, y, num_classes)
    prob = torch.softmax(out.detach().double(), dim=1).cpu().numpy()
    metrics |= clinical_metrics(split, prob, y.cpu().numpy(), cm.numpy(), class_names, top_k)
    zero = per_class_names(class_names, num_classes, split)
    values = {name: metrics.get(name, 0.0 if name in zero else math.nan)
              for name in epoch_names(class_names, num_classes, top_k, split)}
    return {name: v for name, v in values.items() if math.isfinite(v)}


def accuracy(out: torch.Tensor, y: torch.Tensor) -> float:
    return float((out.argmax(dim=1) == y).double().mean())


def regression(out: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """`mse`, `mae` and `r2` of outputs `(N, k)` against targets `(N,)` or `(N, k)`."""
    err = (out - y.reshape(out.shape)).double()
    t = y.reshape(out.shape).double()
    total = ((t - t.mean(dim=0)) ** 2).sum(dim=0)
    # R^2 per output, then the mean (scikit-learn's "uniform_average"); NaN for a constant target.
    r2 = torch.where(total > 0, 1 - (err ** 2).sum(dim=0) / total, torch.nan)
    return {"mse": float((err ** 2).mean()), "mae": float(err.abs().mean()),
            "r2": float(r2.mean())}


def confusion_matrix(pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """int64 `[C, C]`: entry (i, j) counts samples of true class i predicted as j."""
    flat = y.long() * num_classes + pred.long()
    return torch.bincount(flat.cpu(), minlength=num_classes ** 2).reshape(num_classes,
                                                                           num_classes)


def from_confusion(cm: torch.Tensor) -> dict[str, float]:
    """`accuracy` and macro `precision`, `recall`, `f1` from a confusion matrix.

    A class never predicted has precision 0 (and one absent from the split recall 0), as
    scikit-learn's `zero_division=0`; classes absent from both are left out of the means.
    """
    cm = cm.double()
    tp, predicted, actual = cm.diag(), cm.sum(dim=0), cm.sum(dim=1)
    present = (predicted + actual) > 0
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), 0.0)
    recall = torch.where(actual > 0, tp / actual.clamp(min=1), 0.0)
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-300), 0.0)
    return {"accuracy": float(tp.sum() / cm.sum().clamp(min=1)),
            "precision": float(precision[present].mean()),
            "recall": float(recall[present].mean()), "f1": float(f1[present].mean())}


def roc_auc(out: torch.Tensor, y: torch.Tensor, num_classes: int) -> float:
    """ROC AUC of the softmax probabilities: binary, or one-vs-rest macro for more classes
    (scikit-learn's `roc_auc_score`, `multi_class="ovr"`). NaN when the split lacks a class
    (AUC is undefined then) or when an output is not finite. Computed here rather than by
    scikit-learn, whose import costs a fresh training worker most of a second."""
    prob = torch.softmax(out.detach().double(), dim=1).cpu()
    target = y.cpu()
    if len(torch.unique(target)) < num_classes or not bool(torch.isfinite(prob).all()):
        return math.nan
    if num_classes == 2:
        return binary_auc(prob[:, 1], target == 1)
    return sum(binary_auc(prob[:, c], target == c) for c in range(num_classes)) / num_classes


def binary_auc(score: torch.Tensor, positive: torch.Tensor) -> float:
    """The area under the ROC curve of `score` for the boolean labels `positive`: the
    Mann-Whitney U statistic over the positive-negative pairs, a tie counting half."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    u = float(_average_ranks(score)[positive].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    """1-based float64 ranks of `x`; tied values share the mean of their ranks."""
    ordered, order = torch.sort(x)
    _, group, counts = torch.unique_consecutive(ordered, return_inverse=True,
                                                return_counts=True)
    mean_rank = counts.cumsum(0).double() - (counts.double() - 1) / 2
    ranks = torch.empty(len(x), dtype=torch.float64)
    ranks[order] = mean_rank[group]
    return ranks
