"""`trainserve compare JOB JOB...` (CompareJobs: final and best-epoch metrics side by side, and
the spec fields that differ) and `trainserve curves JOB` (GetJobCurves: every metric per
epoch)."""
from __future__ import annotations

from typing import Annotated, Sequence

import typer
from rich.table import Table
from rich.text import Text

from trainserve.cli import render
from trainserve.cli.app import OutputOption, app, client
from trainserve.cli.completion import job_ids as complete_job_ids
from trainserve.cli.render import Output
from trainserve.core import errors
from trainserve.core.metrics import default_mode
from trainserve.core.pb import job_pb2

UNSET = Text("unset", style="dim")


@app.command()
def compare(
    ctx: typer.Context,
    job_ids: Annotated[list[str], typer.Argument(
        metavar="JOB_ID", help="2 to 20 jobs (a trial: SEARCH_ID/TRIAL_ID), or one search "
                               "to compare its trials.", autocompletion=complete_job_ids)],
    output: OutputOption = Output.table,
) -> None:
    """Compare jobs (or a search's trials): each metric's final value and best epoch, and how
    their specs differ."""
    with client(ctx) as ts:
        found = ts.compare(job_ids)
    render.show_one(found, output, comparison_parts)


def comparison_parts(found: job_pb2.CompareJobsResponse) -> list:
    parts: list = [jobs_table(found.jobs), metrics_table(found.jobs)]
    if found.differences:
        parts.append(differences_table(found.jobs, found.differences))
    else:
        parts.append(Text("spec differences: none"))
    return parts


def jobs_table(jobs: Sequence[job_pb2.ComparedJob]) -> Table:
    trials = any(job.trial_id for job in jobs)
    table = Table(show_edge=False)
    for column in ("JOB", *(("TRIAL",) if trials else ()), "NAME", "STATE", "EPOCHS"):
        table.add_column(column, no_wrap=True)
    for job in jobs:
        state = job.trial_state if job.trial_id else render.job_state_name(job.state)
        table.add_row(job.job_id, *((job.trial_id,) if trials else ()), job.name,
                      render.styled_state(state), str(job.epochs))
    return table


def label(job: job_pb2.ComparedJob) -> str:
    """A compared row's column header: the trial's id for a search's trial, else the job's."""
    return job.trial_id or job.job_id


def metrics_table(jobs: Sequence[job_pb2.ComparedJob]) -> Table:
    """One row per metric; per job its final value and its best epoch's value (the epoch in
    parentheses), the best of the jobs in bold."""
    table = Table(title="metrics", title_justify="left", show_edge=False)
    table.add_column("METRIC", no_wrap=True)
    for job in jobs:
        table.add_column(f"{label(job)}\nfinal", justify="right", no_wrap=True)
        table.add_column(f"{label(job)}\nbest (epoch)", justify="right", no_wrap=True)
    for name in sorted({n for job in jobs for n in (*job.final_metrics, *job.best)}):
        top = _top_value(jobs, name)
        cells = []
        for job in jobs:
            final = job.final_metrics[name] if name in job.final_metrics else None
            cells += [render.number(final) if final is not None else "",
                      _best_cell(job.best.get(name), top)]
        table.add_row(name, *cells)
    return table


def _top_value(jobs: Sequence[job_pb2.ComparedJob], name: str) -> float | None:
    """The best of the jobs' best values of `name` (in its direction), if two have one."""
    values = [job.best[name].value for job in jobs if name in job.best]
    if len(values) < 2:
        return None
    return max(values) if default_mode(name) == "max" else min(values)


def _best_cell(best: job_pb2.MetricBest | None, top: float | None) -> Text:
    if best is None:
        return Text("")
    return Text(f"{render.number(best.value)} ({best.epoch})",
                style="bold" if best.value == top else "")


def differences_table(jobs: Sequence[job_pb2.ComparedJob],
                      differences: Sequence[job_pb2.SpecDifference]) -> Table:
    table = Table(title="spec differences", title_justify="left", show_edge=False)
    table.add_column("FIELD", no_wrap=True)
    for job in jobs:
        table.add_column(label(job), overflow="fold")
    for diff in differences:
        table.add_row(diff.path, *(render.config_value(v) if v else UNSET
                                   for v in diff.values))
    return table


@app.command()
def curves(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(
        metavar="JOB_ID", help="The job's id, or any unique start of it.",
        autocompletion=complete_job_ids)],
    trial: Annotated[str | None, typer.Option(
        "--trial", help="A search's trial (default: its best).")] = None,
    output: OutputOption = Output.table,
) -> None:
    """Print every metric a job reported, epoch by epoch (a search: one trial's)."""
    with client(ctx) as ts:
        found = ts.curves_message(job_id)
    if output is Output.json:
        render.print_messages(None, found)
        return
    title, by_name = _chosen(found, trial)
    if not by_name:
        render.stdout().print(f"job {job_id}: no epochs yet", highlight=False)
        return
    render.stdout().print(curves_table(by_name, title))
    if found.stride > 1:
        render.stdout().print(f"every {found.stride}th epoch shown (and the last)",
                              style="dim", highlight=False)


def _chosen(found: job_pb2.JobCurves, trial: str | None) -> tuple[str, dict]:
    """(title, metric -> Curve) of the job, or of one of a search's trials."""
    if trial is None and not found.trials:
        return f"job {found.job_id}", dict(found.metrics)
    pick = trial or found.best_trial or min(found.trials, default="")
    if pick not in found.trials:
        raise errors.NotFound(f"job {found.job_id} has no trial {pick!r} with epochs")
    best = " (best)" if pick == found.best_trial else ""
    return f"job {found.job_id}, trial {pick}{best}", dict(found.trials[pick].metrics)


def curves_table(by_name: dict[str, job_pb2.Curve], title: str) -> Table:
    """One row per epoch, one column per metric (empty where an epoch did not report it)."""
    rows: dict[int, dict[str, float]] = {}
    for name, curve in by_name.items():
        for epoch, value in zip(curve.epochs, curve.values):
            rows.setdefault(epoch, {})[name] = value
    names = sorted(by_name)
    table = Table(title=title, title_justify="left", show_edge=False)
    table.add_column("EPOCH", justify="right")
    for name in names:
        table.add_column(name, justify="right", no_wrap=True)
    for epoch in sorted(rows):
        table.add_row(str(epoch), *(render.number(rows[epoch][n]) if n in rows[epoch] else ""
                                    for n in names))
    return table
