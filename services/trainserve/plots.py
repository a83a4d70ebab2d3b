"""PNG plots of a job's results: a search's trials (each trial's metric per epoch; the final
metric against each searched value) and an ordinary job's train and validation curves.

Plain functions: protos or lists in, PNG paths out; no API calls. matplotlib (Agg backend) is
imported on first use, so importing this module stays cheap.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from trainserve import errors
from trainserve.pb import job_pb2

TRIAL_CURVES = "trials_curves.png"
TRIAL_PARAMS = "trials_params.png"
TRAINING_CURVES = "curves.png"
SPLITS = ("train", "val")
STOPPED = "stopped_early"
SCORED_STATES = ("finished", STOPPED)
BEST_COLOR, STOPPED_COLOR = "tab:red", "0.6"
DPI = 110


class NoEpochs(errors.FailedPrecondition):
    """The job has reported no epoch yet, so there is nothing to plot."""


# -- shared helpers -------------------------------------------------------------------------

def _pyplot():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def _grid(n: int, cols: int = 3, size: tuple[float, float] = (4.6, 3.4)):
    """A figure with `n` panels in rows of at most `cols`; the unused panels hidden."""
    plt = _pyplot()
    ncols = min(n, cols)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows),
                             squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


# -- searches -------------------------------------------------------------------------------

def search_metric(job: job_pb2.Job) -> tuple[str, str]:
    """The metric the search ranks trials by, and "max" or "min" (server defaults if unset)."""
    from trainserve.train.stopping import default_mode
    metric = job.spec.search.metric or "val_loss"
    return metric, job.spec.search.mode or default_mode(metric.removesuffix("_mean"))


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
    metric, _ = search_metric(job)
    if not any(curve_of(t, metric)[0] for t in job.trials):
        raise NoEpochs(f"job {job.id} has no epochs yet: no trial has reported {metric}")
    out_dir = Path(out_dir)
    return [plot_trial_curves(job, out_dir / TRIAL_CURVES),
            plot_trial_params(job, out_dir / TRIAL_PARAMS)]


def plot_trial_curves(job: job_pb2.Job, path: Path) -> Path:
    """The search metric per epoch, one line per trial: the best thick and red, trials the
    scheduler stopped early dashed (their last point crossed), the rest thin."""
    metric, mode = search_metric(job)
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
    metric, _ = search_metric(job)
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
    metric, mode = search_metric(job)
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

def epoch_points(events: Iterable[job_pb2.JobEvent]) -> list[job_pb2.EpochMetrics]:
    """The epoch events of a job's history, in epoch order; a repeated epoch (a job resumed
    after a recovery reports it again) keeps its latest report."""
    by_epoch: dict[int, job_pb2.EpochMetrics] = {}
    for event in events:
        if event.WhichOneof("event") == "epoch":
            by_epoch[event.epoch.epoch] = event.epoch
    return [by_epoch[e] for e in sorted(by_epoch)]


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
    """The plots of an ordinary training job (today its curves); `NoEpochs` without any."""
    series = metric_series(epochs)
    if not series:
        raise NoEpochs(f"job {job.id} has no epochs yet")
    return [plot_training_curves(series, Path(out_dir) / TRAINING_CURVES,
                                 title=job.spec.name or job.id)]


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
