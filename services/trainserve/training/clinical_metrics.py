"""The metrics a clinician asks of a classifier, over a whole split (final metrics only).

- Per class, one-vs-rest: `sensitivity` (recall, TP / (TP + FN)), `specificity`
  (TN / (TN + FP)), `ppv` (precision, TP / (TP + FP)), `npv` (TN / (TN + FN)) and the counts
  `tp`, `fp`, `tn`, `fn`, named `<split>_<class>_<metric>` (e.g. `test_malignant_sensitivity`)
  so that a name still ends in its metric, which is how `core.metrics.default_mode` tells the
  direction of improvement. Only for up to `MAX_PER_CLASS` classes (8 values a class); past
  that the confusion matrix holds the counts. A rate whose denominator is 0 (a class absent
  from the split, or never predicted) is undefined, not 0: it is left out of the map.
- Macro means over the classes where defined (NaN when defined for none):
  `<split>_specificity`, `<split>_npv` (the macro sensitivity and PPV are the existing
  `<split>_recall` and `<split>_precision`).
- `<split>_top<k>_accuracy`: the true class among the k most probable; k is
  `spec.training.top_k`, else 5 when there are more than 5 classes, else not reported.
- Calibration of the softmax probabilities: `<split>_brier` (binary: the mean squared error of
  the class-1 probability; more classes: the mean over samples of the squared distance to the
  one-hot target, scikit-learn's `brier_score_loss` convention) and `<split>_ece`, the
  expected calibration error of the top-label confidence over `ECE_BINS` equal-width bins
  (the sample-weighted mean of |accuracy - mean confidence| per bin).
"""
from __future__ import annotations

import math
import re

import numpy as np

MAX_PER_CLASS = 10
DEFAULT_TOP_K = 5
ECE_BINS = 15
PER_CLASS = ("sensitivity", "specificity", "ppv", "npv", "tp", "fp", "tn", "fn")
_NAME_CHARS = 32


def clinical_metrics(split: str, prob: np.ndarray, y: np.ndarray, cm: np.ndarray,
                     class_names=(), top_k: int | None = None) -> dict[str, float]:
    """Every metric of the module docstring for probabilities `prob` [N, C], true classes `y`
    [N] and their confusion matrix `cm` [C, C] (rows true, columns predicted)."""
    num_classes = cm.shape[0]
    rates = one_vs_rest(cm)
    out = {f"{split}_specificity": _nanmean(rates["specificity"]),
           f"{split}_npv": _nanmean(rates["npv"])}
    if num_classes <= MAX_PER_CLASS:
        for c, name in enumerate(metric_class_names(class_names, num_classes)):
            out |= {f"{split}_{name}_{m}": float(rates[m][c]) for m in PER_CLASS
                    if math.isfinite(rates[m][c])}
    k = top_k_of(top_k, num_classes)
    if k:
        out[f"{split}_top{k}_accuracy"] = top_k_accuracy(prob, y, k)
    out[f"{split}_brier"] = brier_score(prob, y)
    out[f"{split}_ece"] = expected_calibration_error(prob, y)
    return out


def one_vs_rest(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per class c (one-vs-rest): the counts tp, fp, tn, fn and the four rates (NaN where
    the denominator is 0)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    fp, fn = cm.sum(axis=0) - tp, cm.sum(axis=1) - tp
    tn = cm.sum() - tp - fp - fn
    return {"tp": tp, "fp": fp, "tn": tn, "fn": fn, "sensitivity": _ratio(tp, tp + fn),
            "specificity": _ratio(tn, tn + fp), "ppv": _ratio(tp, tp + fp),
            "npv": _ratio(tn, tn + fn)}


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _nanmean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan


def metric_class_names(class_names, num_classes: int) -> list[str]:
    """A metric-name-safe name per class: letters, digits and '_' (at most 32 characters);
    the class index (`class<i>`) for every class when that leaves one empty or two equal."""
    names = [re.sub(r"[^A-Za-z0-9]+", "_", str(n)).strip("_")[:_NAME_CHARS]
             for n in class_names]
    if len(names) != num_classes or not all(names) or len(set(names)) != len(names):
        return [f"class{c}" for c in range(num_classes)]
    return names


def top_k_of(top_k: int | None, num_classes: int) -> int:
    """The k reported (0: none): the spec's when set, else `DEFAULT_TOP_K` with more classes
    than that; never k >= the number of classes (the accuracy would always be 1)."""
    k = top_k if top_k else (DEFAULT_TOP_K if num_classes > DEFAULT_TOP_K else 0)
    return k if 0 < k < num_classes else 0


def top_k_accuracy(prob: np.ndarray, y: np.ndarray, k: int) -> float:
    """The fraction of samples whose true class is among their k most probable."""
    if len(y) == 0:
        return math.nan
    top = np.argsort(-np.asarray(prob, np.float64), axis=1, kind="stable")[:, :k]
    return float((top == np.asarray(y)[:, None]).any(axis=1).mean())


def brier_score(prob: np.ndarray, y: np.ndarray) -> float:
    """Binary: mean (p1 - y)^2; more classes: mean over samples of sum_c (p_c - [y = c])^2."""
    prob = np.asarray(prob, np.float64)
    if len(y) == 0 or not np.isfinite(prob).all():
        return math.nan
    onehot = np.eye(prob.shape[1])[np.asarray(y)]
    total = float(((prob - onehot) ** 2).sum(axis=1).mean())
    return total / 2 if prob.shape[1] == 2 else total


def reliability_bins(prob: np.ndarray, y: np.ndarray, bins: int = ECE_BINS):
    """Per equal-width bin of the top-label confidence ((lo, hi], the first also holds 0):
    (sample counts, mean confidence, accuracy); empty bins have NaN means."""
    prob = np.asarray(prob, np.float64)
    confidence, correct = prob.max(axis=1), prob.argmax(axis=1) == np.asarray(y)
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(which, confidence, minlength=bins) / counts
        acc = np.bincount(which, correct.astype(np.float64), minlength=bins) / counts
    return counts, conf, acc


def expected_calibration_error(prob: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """sum over bins of (samples in bin / N) * |accuracy - mean confidence|."""
    if len(y) == 0 or not np.isfinite(np.asarray(prob, np.float64)).all():
        return math.nan
    counts, conf, acc = reliability_bins(prob, y, bins)
    used = counts > 0
    return float((counts[used] * np.abs(acc[used] - conf[used])).sum() / counts.sum())
