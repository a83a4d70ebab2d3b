"""`TrainingSpec.epoch_clinical_metrics`: a classifier's clinical metrics of the validation
split, every epoch, for early stopping, a search's ranking and the curves.

torch-free (validation uses it). The names are the final metrics' (`training.metrics`,
`training.clinical_metrics`) with the `val_` prefix, without the counts (`tp`, `fp`, `tn`,
`fn`): `epoch_names`. Off unless asked for, since each epoch then pays for a confusion
matrix, a softmax, a ranking (ROC AUC) and a sort (top-k) of the validation outputs; asked
for either explicitly (`epoch_clinical_metrics: true`) or, when left unset, by naming one of
them as `training.early_stopping.metric` or `search.metric` (`require`).
"""
from __future__ import annotations

from trainserve.training.checks import fail
from trainserve.training.clinical_metrics import (MAX_PER_CLASS, metric_class_names,
                                                  top_k_of)

FIELD = "spec.training.epoch_clinical_metrics"
SPLIT = "val"
# What `metrics.from_confusion` and `metrics.roc_auc` add to a split's accuracy.
SCORES = ("precision", "recall", "f1", "auc", "specificity", "npv")
# The per-class rates reported each epoch (a rate whose denominator is 0 is reported as 0).
RATES = ("sensitivity", "specificity", "ppv", "npv")
CALIBRATION = ("brier", "ece")


def epoch_names(class_names, num_classes: int, top_k: int | None = None,
                split: str = SPLIT) -> list[str]:
    """Every per-epoch clinical metric of a `num_classes` classifier, as the loop names them:
    the macro scores, the per-class rates (up to `MAX_PER_CLASS` classes), the top-k accuracy
    when one is reported (`clinical_metrics.top_k_of`), the Brier score and the ECE."""
    names = [f"{split}_{m}" for m in SCORES]
    if num_classes <= MAX_PER_CLASS:
        names += [f"{split}_{name}_{rate}" for name in
                  metric_class_names(class_names, num_classes) for rate in RATES]
    k = top_k_of(top_k, num_classes)
    if k:
        names.append(f"{split}_top{k}_accuracy")
    return names + [f"{split}_{m}" for m in CALIBRATION]


def per_class_names(class_names, num_classes: int, split: str = SPLIT) -> set[str]:
    """The per-class rates among `epoch_names` (those reported as 0 when undefined)."""
    if num_classes > MAX_PER_CLASS:
        return set()
    return {f"{split}_{name}_{rate}" for name in metric_class_names(class_names, num_classes)
            for rate in RATES}


def names_for(spec, info, with_val: bool) -> list[str]:
    """The per-epoch clinical metrics a spec's trainings can report: none unless the task
    (`info`, after `tasks.task_info`) is classification with a validation split or folds
    (`with_val`)."""
    if info.task != "classification" or not with_val:
        return []
    tr = spec.training
    top_k = tr.top_k if tr.HasField("top_k") else None
    return epoch_names(info.class_names, info.num_classes, top_k)


def require(training, metric: str, known: list[str], path: str) -> None:
    """Turn `epoch_clinical_metrics` on when `metric` (the value of field `path`) is one of the
    per-epoch clinical metrics `known`; refused when the spec turned the option off."""
    if metric not in known:
        return
    if training.HasField("epoch_clinical_metrics") and not training.epoch_clinical_metrics:
        fail(FIELD, f"{path} = {metric!r} is computed each epoch only with this option: "
                    f"set it to true or leave it unset")
    training.epoch_clinical_metrics = True


def check(training, task: str, with_val: bool) -> None:
    """An explicit `epoch_clinical_metrics: true` needs a classifier with a validation split
    (or folds)."""
    if not training.epoch_clinical_metrics:
        return
    if task != "classification":
        fail(FIELD, f"clinical metrics need a classification task; this job's is {task}")
    if not with_val:
        fail(FIELD, "clinical metrics per epoch are the validation split's: set "
                    "spec.split.val_fraction > 0 or spec.split.folds >= 2")
