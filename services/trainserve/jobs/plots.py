"""PNG plots of a job's results: a search's trials (each trial's metric per epoch; the final
metric against each searched value), an ordinary job's train and validation curves, and what
its training run saved for plots (`training.evaluation`, `evaluation.npz`): a classifier's
confusion matrix, (binary) ROC curve and reliability diagram (calibration), a regression's
predicted against true values, an autoencoder's reconstructions (and a VAE's samples), a
GAN's samples (a scatter over the real points for 2-D data, an image grid for images).

Plain functions: protos or arrays in, PNG paths out; no API calls, no model runs. matplotlib
(Agg backend) is imported on first use, so importing this module stays cheap.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from trainserve.core import errors
from trainserve.core.metrics import search_metric
from trainserve.core.pb import job_pb2
from trainserve.jobs.figures import (grid as _grid, pyplot as _pyplot, save as _save,
                                     show_image as _show_image)

TRIAL_CURVES = "trials_curves.png"
TRIAL_PARAMS = "trials_params.png"
TRAINING_CURVES = "curves.png"
CONFUSION = "confusion_matrix.png"
ROC = "roc_curve.png"
RELIABILITY = "reliability.png"
PREDICTIONS = "predictions.png"
RECONSTRUCTIONS = "reconstructions.png"
SAMPLES = "samples.png"
SPLITS = ("train", "val")
STOPPED = "stopped_early"
SCORED_STATES = ("finished", STOPPED)
BEST_COLOR, STOPPED_COLOR = "tab:red", "0.6"


class NoEpochs(errors.FailedPrecondition):
    """The job has reported no epoch yet, so there is nothing to plot."""


# -- shared helpers -------------------------------------------------------------------------

def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


# -- searches -------------------------------------------------------------------------------

def curve_of(trial: job_pb2.Trial, metric: str) -> tuple[list[int], list[float]]:
    """The trial's (epochs, values) of `metric`, skipping points without a finite value."""
    points = [(p.epoch, p.metrics[metric]) for p in trial.curve
              if _finite(p.metrics.get(metric))]
    return [e for e, _ in points], [v for _, v in points]


def final_metric(trial: job_pb2.Trial, metric: str) -> float | None:
    """The trial's latest `metric`: from its metrics, else its curve's last point with it."""
    if _finite(trial.metrics.get(metric)):
        return trial.metrics[metric]
    _, values = curve_of(trial, metric)
    return values[-1] if values else None


def search_plots(job: job_pb2.Job, out_dir: Path) -> list[Path]:
    """Both search plots of `job` under `out_dir`; `NoEpochs` when no trial reported one."""
    metric, _ = search_metric(job.spec)
    if not any(curve_of(t, metric)[0] for t in job.trials):
        raise NoEpochs(f"job {job.id} has no epochs yet: no trial has reported {metric}")
    out_dir = Path(out_dir)
    return [plot_trial_curves(job, out_dir / TRIAL_CURVES),
            plot_trial_params(job, out_dir / TRIAL_PARAMS)]


def plot_trial_curves(job: job_pb2.Job, path: Path) -> Path:
    """The search metric per epoch, one line per trial: the best thick and red, trials the
    scheduler stopped early dashed (their last point crossed), the rest thin."""
    metric, mode = search_metric(job.spec)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    label_each = len(job.trials) <= 10
    colors = _trial_colors()
    for n, trial in enumerate(job.trials):
        epochs, values = curve_of(trial, metric)
        if epochs:
            _trial_line(ax, trial, epochs, values, trial.id == job.best_trial,
                        colors[n % len(colors)], label_each)
    ax.set(xlabel="epoch", ylabel=metric,
           title=f"{job.spec.name or job.id}: {metric} per trial ({mode} is best)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    handles = ax.get_legend_handles_labels()[0] if label_each else _style_keys(job.best_trial)
    ax.legend(handles=handles, fontsize="small", loc="best")
    return _save(fig, path)


def _trial_colors() -> list[str]:
    """tab10 without its red, which marks the best trial."""
    return [f"C{i}" for i in range(10) if i != 3]


def _trial_line(ax, trial, epochs, values, best: bool, color: str, label_each: bool) -> None:
    stopped = trial.state == STOPPED
    style = {"color": BEST_COLOR if best else color, "zorder": 3 if best else 2,
             "linewidth": 3.0 if best else 1.3, "linestyle": "--" if stopped else "-",
             "alpha": 1.0 if best else (0.6 if stopped else 0.85), "marker": "o" if best else "",
             "markersize": 4}
    notes = ", ".join(n for n, on in (("best", best), ("stopped early", stopped)) if on)
    label = (f"{trial.id} ({notes})" if notes else trial.id) if label_each else None
    ax.plot(epochs, values, label=label, **style)
    if stopped:
        ax.plot(epochs[-1], values[-1], marker="x", color=style["color"], markersize=8)


def _style_keys(best: str) -> list:
    """Legend entries saying what the styles mean (too many trials to name each)."""
    from matplotlib.lines import Line2D
    keys = [Line2D([], [], color="0.3", linestyle="--", marker="x", label="stopped early")]
    if best:
        keys.insert(0, Line2D([], [], color=BEST_COLOR, linewidth=3.0, marker="o",
                              label=f"best: {best}"))
    return keys


@dataclass
class ParamPanel:
    """One searched path: the x positions of the trials' values and how to draw the axis."""
    path: str
    kind: str                                   # the distribution: loguniform, choice, ...
    categorical: bool = False                   # values at labelled positions 0, 1, ...
    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)
    stopped: list[bool] = field(default_factory=list)
    best: list[bool] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)   # categorical: tick labels by position


def param_panels(job: job_pb2.Job) -> list[ParamPanel]:
    """Per searched path, each finished or stopped-early trial's value and final metric."""
    metric, _ = search_metric(job.spec)
    panels = [_panel(path, job) for path in _searched_paths(job)]
    for trial in job.trials:
        value = final_metric(trial, metric)
        if trial.state not in SCORED_STATES or value is None:
            continue
        for panel in panels:
            if panel.path in trial.config:
                _add_point(panel, trial, value, trial.id == job.best_trial)
    return panels


def _searched_paths(job: job_pb2.Job) -> list[str]:
    return sorted(job.spec.search.space) or sorted({p for t in job.trials for p in t.config})


def _panel(path: str, job: job_pb2.Job) -> ParamPanel:
    """An empty panel for `path`: its axis kind from the space (categorical values seeded in
    the space's order), else guessed from the sampled values."""
    from trainserve.tune.space import parse_axis
    text = job.spec.search.space.get(path)
    try:
        axis = parse_axis(path, text) if text else None
    except errors.InvalidArgument:
        axis = None
    if axis is not None and axis.categorical:
        return ParamPanel(path, axis.kind, True, labels=[_label(v) for v in axis.values])
    if axis is not None:
        return ParamPanel(path, axis.kind)
    sampled = [_decode(t.config[path]) for t in job.trials if path in t.config]
    numeric = sampled and all(_is_number(v) for v in sampled)
    return ParamPanel(path, "values", not numeric)


def _add_point(panel: ParamPanel, trial: job_pb2.Trial, value: float, best: bool) -> None:
    sampled = _decode(trial.config[panel.path])
    if panel.categorical:
        label = _label(sampled)
        if label not in panel.labels:
            panel.labels.append(label)
        x = float(panel.labels.index(label))
    elif _is_number(sampled):
        x = float(sampled)
    else:
        return
    panel.xs.append(x)
    panel.ys.append(value)
    panel.stopped.append(trial.state == STOPPED)
    panel.best.append(best)


def _decode(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _label(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def plot_trial_params(job: job_pb2.Job, path: Path) -> Path:
    """One panel per searched path: the final search metric against the sampled value (log x
    for loguniform, labelled positions for choice/grid); stopped trials grey, the best red."""
    metric, mode = search_metric(job.spec)
    panels = param_panels(job)
    if not panels:
        raise NoEpochs(f"job {job.id} has no sampled values to plot")
    fig, axes = _grid(len(panels))
    for ax, panel in zip(axes, panels):
        _draw_panel(ax, panel, metric)
    fig.suptitle(f"{job.spec.name or job.id}: final {metric} by searched value "
                 f"({mode} is best; grey: stopped early)")
    fig.tight_layout()
    return _save(fig, path)


def _draw_panel(ax, panel: ParamPanel, metric: str) -> None:
    for stopped, best, color, size in ((True, False, STOPPED_COLOR, 36),
                                       (False, False, "tab:blue", 40),
                                       (None, True, BEST_COLOR, 90)):
        points = [(x, y) for x, y, s, b in zip(panel.xs, panel.ys, panel.stopped, panel.best)
                  if b == best and (best or s == stopped)]
        if points:
            edges = {"edgecolors": "black"} if best else {}
            ax.scatter(*zip(*points), s=size, c=color, zorder=3 if best else 2,
                       marker="*" if best else ("x" if stopped else "o"), **edges)
    if panel.kind == "loguniform":
        ax.set_xscale("log")
    if panel.categorical:
        ax.set_xticks(range(len(panel.labels)), panel.labels,
                      rotation=30 if max(map(len, panel.labels), default=0) > 6 else 0)
        ax.set_xlim(-0.5, max(len(panel.labels) - 0.5, 0.5))
    ax.set(xlabel=f"{panel.path} ({panel.kind})", ylabel=metric)
    ax.grid(alpha=0.3)


# -- ordinary training jobs -----------------------------------------------------------------

def split_metric(name: str) -> tuple[str, str]:
    """"val_accuracy" -> ("accuracy", "val"); a name without a split prefix -> (name, "")."""
    for split in SPLITS:
        if name.startswith(split + "_"):
            return name[len(split) + 1:], split
    return name, ""


def metric_series(epochs: Sequence[job_pb2.EpochMetrics]
                  ) -> dict[str, dict[str, tuple[list[int], list[float]]]]:
    """{base metric: {split: (epochs, values)}}, base names sorted."""
    series: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    for point in epochs:
        for name in sorted(point.metrics):
            value = point.metrics[name]
            if not math.isfinite(value):
                continue
            base, split = split_metric(name)
            xs, ys = series.setdefault(base, {}).setdefault(split, ([], []))
            xs.append(point.epoch)
            ys.append(value)
    return dict(sorted(series.items()))


def training_plots(job: job_pb2.Job, epochs: Sequence[job_pb2.EpochMetrics],
                   out_dir: Path) -> list[Path]:
    """The plots of an ordinary training job: its curves, and the per-layer statistics of
    `spec.training.diagnostics` in plots of their own (`plots_inside`); `NoEpochs` without
    any epoch."""
    from trainserve.jobs import plots_inside
    everything = metric_series(epochs)
    series = without_constant_lr({base: splits for base, splits in everything.items()
                                  if not plots_inside.is_diagnostic(base)})
    if not series:
        raise NoEpochs(f"job {job.id} has no epochs yet")
    title = job.spec.name or job.id
    return [plot_training_curves(series, Path(out_dir) / TRAINING_CURVES, title=title),
            *plots_inside.curve_plots(everything, Path(out_dir), title)]


def without_constant_lr(series: dict) -> dict:
    """`series` without the learning rate's panel when it never changed: the loop reports
    `lr` every epoch, and a flat line only says that no schedule was set."""
    values = series.get("lr", {}).get("", ([], []))[1]
    if values and max(values) == min(values):
        return {base: splits for base, splits in series.items() if base != "lr"}
    return series


def plot_training_curves(series: dict[str, dict[str, tuple[list[int], list[float]]]],
                         path: Path, title: str = "") -> Path:
    """One panel per metric (train_/val_ prefix dropped), train and validation overlaid."""
    fig, axes = _grid(len(series))
    styles = {"train": {"color": "tab:blue", "label": "train"},
              "val": {"color": "tab:orange", "label": "validation"}}
    for ax, (base, splits) in zip(axes, series.items()):
        for split, (xs, ys) in splits.items():
            style = styles.get(split, {"color": "tab:green", "label": base})
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else "", markersize=3, **style)
        ax.set(title=base, xlabel="epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(f"{title}: training curves")
    fig.tight_layout()
    return _save(fig, path)


# -- what the training run saved (training.evaluation) -----------------------------------------

def load_evaluation(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of an `evaluation.npz`, loaded without unpickling anything."""
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def evaluation_plots(arrays: dict[str, np.ndarray], out_dir: Path,
                     title: str = "") -> list[Path]:
    """The plots of a job's saved evaluation (see the module docstring), and those looking
    inside the network (`plots_inside`), under `out_dir`."""
    from trainserve.jobs import plots_attention, plots_inside
    return [*_task_plots(arrays, Path(out_dir), title),
            *plots_inside.evaluation_plots(arrays, Path(out_dir), title),
            *plots_attention.attention_plots(arrays, Path(out_dir), title)]


def _task_plots(arrays: dict[str, np.ndarray], out_dir: Path, title: str) -> list[Path]:
    kind = str(arrays["kind"])
    if kind == "classification":
        paths = [plot_confusion(arrays["y_true"], arrays["probabilities"].argmax(axis=1),
                                list(arrays["class_names"]), out_dir / CONFUSION, title)]
        if arrays["probabilities"].shape[1] == 2 and len(np.unique(arrays["y_true"])) == 2:
            paths.append(plot_roc(arrays["y_true"], arrays["probabilities"][:, 1],
                                  out_dir / ROC, title, positive=str(arrays["class_names"][1])))
        paths.append(plot_reliability(arrays["y_true"], arrays["probabilities"],
                                      out_dir / RELIABILITY, title))
        return paths
    if kind == "regression":
        return [plot_predictions(arrays["y_true"], arrays["y_pred"], out_dir / PREDICTIONS, title)]
    if kind == "reconstruction":
        paths = [plot_reconstructions(arrays["originals"], arrays["reconstructions"],
                                      out_dir / RECONSTRUCTIONS, title)]
        if "samples" in arrays:
            paths.append(plot_samples(arrays["samples"], out_dir / SAMPLES, title))
        return paths
    if kind == "generation":
        return [plot_samples(arrays["samples"], out_dir / SAMPLES, title, arrays.get("real"),
                             arrays.get("real_labels"))]
    return []


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """[C, C] counts: row the true class, column the predicted one."""
    flat = np.asarray(y_true, np.int64) * num_classes + np.asarray(y_pred, np.int64)
    return np.bincount(flat, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def plot_confusion(y_true, y_pred, class_names: list[str], path: Path, title: str = "") -> Path:
    """The confusion matrix, counts written in the cells (up to 20 classes)."""
    n = len(class_names)
    cm = confusion_counts(y_true, y_pred, n)
    plt = _pyplot()
    side = min(max(4.5, 0.5 * n + 2.5), 14)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    image = ax.imshow(cm, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), class_names, rotation=45 if n > 4 else 0, ha="right" if n > 4 else
                  "center")
    ax.set_yticks(range(n), class_names)
    if n <= 20:
        for (i, j), count in np.ndenumerate(cm):
            ax.text(j, i, str(count), ha="center", va="center", fontsize="small",
                    color="white" if count > cm.max() / 2 else "black")
    accuracy = np.trace(cm) / max(cm.sum(), 1)
    ax.set(xlabel="predicted", ylabel="true",
           title=f"{title + ': ' if title else ''}confusion matrix (test, accuracy "
                 f"{accuracy:.3f})")
    return _save(fig, path)


def roc_points(y_true, scores) -> tuple[np.ndarray, np.ndarray, float]:
    """(false positive rates, true positive rates, AUC) of `scores` for class 1 of binary
    `y_true`, one point per distinct score (ties move both rates at once)."""
    y = np.asarray(y_true) == 1
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    s, y = np.asarray(scores, np.float64)[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]   # the end of each run of ties
    tp, fp = np.cumsum(y)[last], np.cumsum(~y)[last]
    tpr = np.r_[0.0, tp / max(y.sum(), 1)]
    fpr = np.r_[0.0, fp / max((~y).sum(), 1)]
    return fpr, tpr, float(np.trapezoid(tpr, fpr))


def plot_roc(y_true, scores, path: Path, title: str = "", positive: str = "1") -> Path:
    """The ROC curve of a binary classifier's class-1 probability, with its AUC."""
    fpr, tpr, auc = roc_points(y_true, scores)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot(fpr, tpr, color="tab:blue", linewidth=2, label=f"model (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate",
           ylabel="true positive rate",
           title=f"{title + ': ' if title else ''}ROC curve (test, positive: {positive})")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_reliability(y_true, probabilities, path: Path, title: str = "") -> Path:
    """The reliability diagram of the top-label confidence (accuracy against mean confidence
    per bin, as `training.clinical_metrics` computes the ECE), with the Brier score and ECE,
    over a histogram of the confidences."""
    from trainserve.training import clinical_metrics as C
    prob = np.asarray(probabilities, np.float64)
    counts, conf, acc = C.reliability_bins(prob, y_true)
    used = counts > 0
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5.5, 6.5), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], color="0.6", linestyle="--", label="perfectly calibrated")
    top.plot(conf[used], acc[used], marker="o", color="tab:blue", linewidth=2, label="model")
    top.set(xlim=(0, 1), ylim=(0, 1.01), ylabel="accuracy in bin",
            title=f"{title + ': ' if title else ''}reliability (test, Brier "
                  f"{C.brier_score(prob, y_true):.3f}, ECE "
                  f"{C.expected_calibration_error(prob, y_true):.3f})")
    top.grid(alpha=0.3)
    top.legend(loc="upper left")
    edges = np.linspace(0, 1, C.ECE_BINS + 1)
    bottom.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="tab:blue",
               alpha=0.6)
    bottom.set(xlabel="confidence (top-class probability)", ylabel="samples")
    return _save(fig, path)


def plot_predictions(y_true, y_pred, path: Path, title: str = "") -> Path:
    """Predicted against true values of the test split, one panel per output (at most 6)."""
    y_true, y_pred = np.atleast_2d(y_true.T).T, np.atleast_2d(y_pred.T).T
    outputs = min(y_pred.shape[1], 6)
    fig, axes = _grid(outputs)
    for k, ax in enumerate(axes):
        t, p = y_true[:, k], y_pred[:, k]
        ax.scatter(t, p, s=12, alpha=0.6)
        lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
        ax.plot([lo, hi], [lo, hi], color="0.5", linestyle="--", linewidth=1)
        ax.set(xlabel="true", ylabel="predicted", title=f"output {k}" if outputs > 1 else "")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title + ': ' if title else ''}predicted vs true (test)")
    fig.tight_layout()
    return _save(fig, path)


def _is_image(sample_shape: tuple[int, ...]) -> bool:
    return len(sample_shape) == 3 and sample_shape[0] in (1, 3)


def plot_reconstructions(originals, reconstructions, path: Path, title: str = "") -> Path:
    """Test samples (top row) above their reconstructions (bottom row): images as images,
    other inputs as their values per feature."""
    n = len(originals)
    plt = _pyplot()
    if _is_image(originals.shape[1:]):
        fig, axes = plt.subplots(2, n, figsize=(max(1.3 * n, 6), 3.4), squeeze=False)
        vmin, vmax = float(originals.min()), float(originals.max())
        for j in range(n):
            _show_image(axes[0][j], originals[j], vmin, vmax)
            _show_image(axes[1][j], reconstructions[j], vmin, vmax)
        axes[0][0].set_ylabel("original")
        axes[1][0].set_ylabel("reconstruction")
    else:
        fig, flat = _grid(n, cols=4, size=(3.6, 2.6))
        for j, ax in enumerate(flat):
            ax.plot(originals[j].reshape(-1), marker="o", markersize=3, label="original")
            ax.plot(reconstructions[j].reshape(-1), marker="x", markersize=3,
                    label="reconstruction")
            ax.set(xlabel="feature", title=f"test sample {j}")
            ax.grid(alpha=0.3)
        flat[0].legend(fontsize="small")
    fig.suptitle(f"{title + ': ' if title else ''}test samples and their reconstructions")
    fig.tight_layout()
    return _save(fig, path)


def plot_samples(samples, path: Path, title: str = "", real=None, real_labels=None) -> Path:
    """Generated samples: 2-D points scattered over the real ones, images as a grid, other
    inputs as their values per feature."""
    shape = samples.shape[1:]
    heading = f"{title + ': ' if title else ''}generated samples (fixed seed)"
    if int(np.prod(shape)) == 2:
        return _scatter_samples(samples.reshape(-1, 2), path, heading, real, real_labels)
    plt = _pyplot()
    if _is_image(shape):
        cols = min(8, len(samples))
        rows = math.ceil(len(samples) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols + 0.5, 1.2 * rows + 0.8),
                                 squeeze=False)
        vmin, vmax = float(samples.min()), float(samples.max())
        for ax, sample in zip(axes.flat, samples):
            _show_image(ax, sample, vmin, vmax)
        for ax in list(axes.flat)[len(samples):]:
            ax.set_visible(False)
    else:
        fig, ax = plt.subplots(figsize=(8, 5))
        for sample in samples[:16]:
            ax.plot(sample.reshape(-1), alpha=0.6)
        ax.set(xlabel="feature", ylabel="value")
        ax.grid(alpha=0.3)
    fig.suptitle(heading)
    fig.tight_layout()
    return _save(fig, path)


def _scatter_samples(samples, path: Path, heading: str, real, real_labels) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 6))
    if real is not None and len(real):
        ax.scatter(*np.asarray(real).reshape(-1, 2).T, s=14, alpha=0.5, label="real (test)",
                   c=real_labels if real_labels is not None else "0.6", cmap="tab10")
    ax.scatter(*samples.T, s=6, c="black", alpha=0.5, label=f"generated ({len(samples)})")
    ax.set(title=heading, xlabel="x0", ylabel="x1", aspect="equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    return _save(fig, path)
