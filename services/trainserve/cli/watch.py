"""`trainserve watch`: a job's events as a live progress bar (epoch/total, loss, validation
metric, ETA) on a terminal, or one line per event when the output is a file or a pipe."""
from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from trainserve.cli import render
from trainserve.pb import job_pb2

# The validation metric the bar shows, first found wins.
VAL_METRICS = ("val_accuracy", "val_r2", "val_loss")


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
            self._print(f"[dim]{event.log.level.lower() or 'info'}: {event.log.text}[/dim]")

    def _print(self, markup: str) -> None:
        # Through the Progress's console so the bar stays below the printed lines.
        (self.progress.console if self.progress else self.console).print(markup,
                                                                         highlight=False)

    def _print_state(self, event: job_pb2.JobEvent) -> None:
        name = render.job_state_name(event.state.state)
        style = render.STATE_STYLE.get(name, "")
        when = render.timestamp(event.time)
        text = event.state.message
        message = f"  {text}" if text and text.lower() != name else ""
        self._print(f"{when}  [{style}]{name.upper()}[/{style}]{message}")

    def _epoch(self, e: job_pb2.EpochMetrics) -> None:
        loss = f"loss {render.number(e.metrics['train_loss'])}" if "train_loss" in e.metrics else ""
        val = next((f"{k} {render.number(e.metrics[k])}" for k in VAL_METRICS
                    if k in e.metrics), "")
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
    if job.metrics:
        console.print(render.metrics_table(job.metrics, title="final metrics"))
