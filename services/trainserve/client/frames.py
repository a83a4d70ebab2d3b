"""Jobs, trials and curves as notebooks want them: `JobList` (`Client.jobs`), `TrialList`
(`Client.trials`) and `Curves` (`Client.curves`) are a plain list or dict with `to_pandas()`
(pandas is optional: a clear ImportError names it when missing) and, for curves, `plot()`
returning a matplotlib Figure that a notebook shows inline."""
from __future__ import annotations

from typing import Any

from trainserve.client.messages import job_state_name

PANDAS_MISSING = "to_pandas() needs pandas, which trainserve does not install: pip install pandas"
SPLITS = ("train", "val", "test")


def pandas():
    """The pandas module, or an ImportError saying how to get it."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError(PANDAS_MISSING) from None
    return pd


class JobList(list):
    """Jobs (`trainserve.v1.Job` messages), newest first, with `to_pandas()`."""

    def to_pandas(self):
        """One row per job: id, name, state, user, epoch, total_epochs, created, started,
        finished (pandas Timestamps, UTC), model, then one column per final metric."""
        pd = pandas()
        frame = pd.DataFrame([job_row(job) for job in self])
        for column in ("created", "started", "finished"):
            if column in frame:
                frame[column] = pd.to_datetime(frame[column], unit="s", utc=True)
        return frame


def job_row(job) -> dict[str, Any]:
    def seconds(ts):
        return ts.seconds + ts.nanos / 1e9 if ts.seconds or ts.nanos else None
    model = f"{job.model_name}:{job.model_version}" if job.model_name else None
    return {"id": job.id, "name": job.spec.name, "state": job_state_name(job.state),
            "user": job.user, "epoch": job.epoch, "total_epochs": job.total_epochs,
            "created": seconds(job.created_at), "started": seconds(job.started_at),
            "finished": seconds(job.finished_at), "model": model, **dict(job.metrics)}


class TrialList(list):
    """A search's trials (`trainserve.v1.Trial` messages), with `to_pandas()`."""

    def to_pandas(self):
        """One row per trial: id, state, epochs, each sampled value (a column per searched
        path, decoded from JSON), then its latest metrics."""
        pd = pandas()
        return pd.DataFrame([trial_row(t) for t in self])


def trial_row(trial) -> dict[str, Any]:
    import json
    config = {}
    for path, text in sorted(trial.config.items()):
        try:
            config[path] = json.loads(text)
        except ValueError:
            config[path] = text
    return {"id": trial.id, "state": trial.state, "epochs": trial.epochs, **config,
            **dict(trial.metrics)}


class Curves(dict):
    """`Client.curves`' dict ({"job_id", "metrics", "trials", "best_trial", "stride"}) with
    `to_pandas()` and `plot()`. For a search, both use the best trial unless given `trial`."""

    def series(self, trial: str | None = None) -> dict[str, list[tuple[int, float]]]:
        """metric -> [(epoch, value), ...]: the job's, or trial `trial`'s (a search: its best
        trial's when not given)."""
        trial = trial or (self.get("best_trial") if not self.get("metrics") else None)
        return self["trials"].get(trial, {}) if trial else self["metrics"]

    def to_pandas(self, trial: str | None = None):
        """One row per epoch (the index), one column per metric; NaN where a metric was not
        reported at an epoch."""
        pd = pandas()
        columns = {name: pd.Series(dict(points), dtype=float)
                   for name, points in self.series(trial).items()}
        frame = pd.DataFrame(columns).sort_index()
        frame.index.name = "epoch"
        return frame

    def plot(self, trial: str | None = None, metrics: list[str] | None = None):
        """A matplotlib Figure: one panel per metric (train_/val_/test_ prefix dropped), the
        splits overlaid; `metrics` picks panels by that name (e.g. ["loss", "accuracy"])."""
        from matplotlib.figure import Figure
        panels = _panels(self.series(trial))
        names = [n for n in (metrics or panels) if n in panels]
        fig = Figure(figsize=(4.2 * max(len(names), 1), 3.2), layout="constrained")
        axes = fig.subplots(1, max(len(names), 1), squeeze=False)[0]
        for ax, name in zip(axes, names):
            for split, points in panels[name].items():
                ax.plot(*zip(*points), marker="o" if len(points) < 30 else "", markersize=3,
                        label=split or name)
            ax.set(title=name, xlabel="epoch")
            ax.legend(fontsize="small")
            ax.grid(alpha=0.3)
        fig.suptitle(f"job {self.get('job_id', '')}" + (f", trial {trial}" if trial else ""))
        return fig


def _panels(series: dict[str, list]) -> dict[str, dict[str, list]]:
    """{"loss": {"train": [...], "val": [...]}, "lr": {"": [...]}}: metrics by name, split."""
    panels: dict[str, dict[str, list]] = {}
    for name, points in sorted(series.items()):
        split, _, base = name.partition("_")
        if split not in SPLITS or not base:
            split, base = "", name
        if points:
            panels.setdefault(base, {})[split] = points
    return panels
