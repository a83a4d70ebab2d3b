"""`trainserve watch`: a job's events as a live progress bar (epoch/total, loss, validation
metric, ETA) on a terminal, or one line per event when the output is a file or a pipe.

A search (spec.search) shows a line per trial start and end instead, and a leaderboard of its
trials, best first: kept live on a terminal, reprinted after each trial ends otherwise."""
from __future__ import annotations

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from trainserve.cli import render
from trainserve.core.metrics import search_metric
from trainserve.core.pb import job_pb2

# Which metrics of an epoch the bar shows: every validation metric, val_loss first (the one
# the overfitting lesson compares with the training loss).
VAL_PREFIX = "val_"


class JobProgress:
    """Feed it `JobEvent`s (`on_event`); use as a context manager around the watch."""

    def __init__(self, console: Console, job_id: str, live: bool | None = None):
        self.console = console
        self.job_id = job_id
        self.live = console.is_terminal if live is None else live
        self.progress: Progress | None = None
        self.task = None

    def __enter__(self) -> "JobProgress":
        if self.live:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[loss]}"), TextColumn("{task.fields[val]}"),
                TextColumn("{task.fields[eta]}"), console=self.console, transient=False)
            self.progress.start()
            self.task = self.progress.add_task(f"job {self.job_id}", total=None, loss="",
                                               val="", eta="")
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()

    def on_event(self, event: job_pb2.JobEvent) -> None:
        kind = event.WhichOneof("event")
        if kind == "state":
            self._print_state(event)
        elif kind == "epoch":
            self._epoch(event.epoch)
        elif kind == "log":
            self._print(log_line(event))

    def _print(self, markup: str) -> None:
        # Through the Progress's console so the bar stays below the printed lines.
        (self.progress.console if self.progress else self.console).print(markup,
                                                                         highlight=False)

    def _print_state(self, event: job_pb2.JobEvent) -> None:
        self._print(state_line(event))

    def _epoch(self, e: job_pb2.EpochMetrics) -> None:
        loss = f"loss {render.number(e.metrics['train_loss'])}" if "train_loss" in e.metrics else ""
        val = validation_text(e.metrics)
        eta = ""
        if e.epoch and e.total_epochs and e.elapsed_seconds:
            left = e.elapsed_seconds / e.epoch * (e.total_epochs - e.epoch)
            eta = f"ETA {render.duration(left)}" if e.epoch < e.total_epochs else ""
        if self.progress is not None:
            self.progress.update(self.task, total=e.total_epochs or None, completed=e.epoch,
                                 loss=loss, val=val, eta=eta)
        else:
            fields = "  ".join(x for x in (loss, val, eta) if x)
            self.console.print(f"epoch {e.epoch}/{e.total_epochs}  {fields}".rstrip(),
                               highlight=False)


def validation_text(metrics) -> str:
    """"val_loss 0.31  val_accuracy 0.9": every validation metric of an epoch, val_loss
    first, the others by name."""
    names = sorted((k for k in metrics if k.startswith(VAL_PREFIX)),
                   key=lambda k: (k != "val_loss", k))
    return "  ".join(f"{k} {render.number(metrics[k])}" for k in names)


def progress_for(console: Console, job: job_pb2.Job, live: bool | None = None):
    """The watch display for `job`: a `SearchProgress` for a search, else a `JobProgress`."""
    if render.is_search(job):
        return SearchProgress(console, job, live)
    return JobProgress(console, job.id, live)


def state_line(event: job_pb2.JobEvent) -> str:
    name = render.job_state_name(event.state.state)
    style = render.STATE_STYLE.get(name, "")
    text = event.state.message
    message = f"  {text}" if text and text.lower() != name else ""
    return f"{render.timestamp(event.time)}  [{style}]{name.upper()}[/{style}]{message}"


def log_line(event: job_pb2.JobEvent) -> str:
    return f"[dim]{event.log.level.lower() or 'info'}: {event.log.text}[/dim]"


class SearchProgress:
    """`JobProgress` for a search: trial lines and the trials' leaderboard (`board`)."""

    def __init__(self, console: Console, job: job_pb2.Job, live: bool | None = None):
        self.console = console
        self.job_id = job.id
        self.metric, self.mode = search_metric(job.spec)
        self.live = console.is_terminal if live is None else live
        self.trials: dict[str, job_pb2.Trial] = {t.id: t for t in job.trials}
        self.display: Live | None = None
        self.unprinted = False  # the board changed since it was last printed (not live)

    def __enter__(self) -> "SearchProgress":
        if self.live:
            self.display = Live(self.board(), console=self.console, auto_refresh=False)
            self.display.start(refresh=True)
        return self

    def __exit__(self, *exc) -> None:
        if self.display is not None:
            self.display.update(self.board(), refresh=True)
            self.display.stop()
        elif self.unprinted:
            self.console.print(self.board())

    def board(self):
        trials = list(self.trials.values())
        if not trials:
            return f"search {self.job_id}: no trials yet"
        title = f"search {self.job_id}: trials {render.trial_counts(trials)}"
        return render.trials_table(trials, self.metric, self.mode, title=title)

    def on_event(self, event: job_pb2.JobEvent) -> None:
        kind = event.WhichOneof("event")
        if kind == "trial":
            self._trial(event)
        elif kind == "state":
            self._print(state_line(event))
        elif kind == "log":
            self._print(log_line(event))

    def _print(self, markup: str) -> None:
        # Through the Live's console so the board stays below the printed lines.
        (self.display.console if self.display else self.console).print(markup,
                                                                       highlight=False)

    def _trial(self, event: job_pb2.JobEvent) -> None:
        kind, trial = event.trial.kind, event.trial.trial
        self.trials[trial.id] = trial
        if kind in ("started", "ended"):
            self._print(self._trial_line(event))
        if self.display is not None:
            self.display.update(self.board(), refresh=True)
        elif kind == "ended":
            self.console.print(self.board())
            self.unprinted = False
        else:
            self.unprinted = True

    def _trial_line(self, event: job_pb2.JobEvent) -> str:
        trial = event.trial.trial
        head = f"{render.timestamp(event.time)}  trial {escape(trial.id)}"
        config = escape(render.config_text(trial.config))
        if event.trial.kind == "started":
            return f"{head} [yellow]started[/yellow]  {config}"
        style = render.TRIAL_STATE_STYLE.get(trial.state, "")
        value = render.trial_metric(trial, self.metric)
        scored = f"  {self.metric} {render.number(value)}" if value is not None else ""
        epochs = f" after {trial.epochs} epoch{'s' if trial.epochs != 1 else ''}"
        message = f"  {escape(trial.message)}" if trial.message else ""
        return (f"{head} [{style}]{render.trial_state(trial.state).plain}[/{style}]"
                f"{epochs if trial.epochs else ''}{scored}  {config}{message}")


def print_outcome(console: Console, job: job_pb2.Job) -> None:
    """The final state, its message and the job's (test) metrics."""
    name = render.job_state_name(job.state)
    style = render.STATE_STYLE.get(name, "")
    line = f"job {job.id} [bold {style}]{name.upper()}[/bold {style}]"
    if job.message:
        line += f": {job.message}"
    console.print(line, highlight=False)
    if job.model_name:
        console.print(f"model {render.model_ref(job.model_name, job.model_version)}"
                      + (f", deployed as {job.deployment}" if job.deployment else ""),
                      highlight=False)
    best = next((t for t in job.trials if t.id == job.best_trial), None)
    if best is not None:
        metric, _ = search_metric(job.spec)
        console.print(f"best trial {escape(render.trial_summary(best, metric))}",
                      highlight=False)
    if job.metrics:
        console.print(render.metrics_table(job.metrics, title="final metrics"))
