"""Which way a metric improves, and the metric a search ranks its trials by.

One rule for everyone who ranks: validation fills in a spec's early-stopping and search
modes with it, the server's plots and the CLI's leaderboard read a search's ranking with it.
"""
from __future__ import annotations

# Metric names ending in one of these improve upwards.
HIGHER_IS_BETTER = ("accuracy", "auc", "f1", "precision", "recall", "r2", "exact_match",
                    "sensitivity", "specificity", "ppv", "npv")
# What a search ranks by when its spec names nothing (validation names one before a search
# runs; a spec that never went through it falls back to this).
DEFAULT_SEARCH_METRIC = "val_loss"
# A cross-validated trial reports its final metrics as cv_<name>_mean (training.cv).
CV_MEAN_SUFFIX = "_mean"


def default_mode(metric: str) -> str:
    """"max" for accuracy-like metrics (accuracy, auc, f1, precision, recall, r2, exact_match,
    sensitivity, specificity, ppv, npv), else "min"; a cross-validated mean (`cv_<name>_mean`) goes the way of <name>."""
    return "max" if metric.removesuffix(CV_MEAN_SUFFIX).endswith(HIGHER_IS_BETTER) else "min"


def search_metric(spec) -> tuple[str, str]:
    """The metric a search (`spec.search` of a JobSpec) ranks its trials by, and "max" or
    "min": the spec's own (validation fills both in), else the defaults."""
    metric = spec.search.metric or DEFAULT_SEARCH_METRIC
    return metric, spec.search.mode or default_mode(metric)
