"""`trainserve plot JOB`: the PNG plots of a job, rendered by the job API (ListArtifacts /
GetArtifact, so it works against a remote server) and written to a local directory."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trainserve.cli import render
from trainserve.cli.app import app, client
from trainserve.core.pb import job_pb2

PNG = "image/png"


@app.command()
def plot(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="JOB_ID", help="The job's id.")],
    out: Annotated[Path, typer.Option("--out", metavar="DIR", file_okay=False,
                                      help="Directory for the PNG files (created if needed).")
                   ] = Path("."),
) -> None:
    """Write PNG plots of a job: a search's trial curves and metric against each searched
    value; a training job's train and validation curves and, once it succeeded, its
    confusion matrix and ROC curve (classifiers), predictions (regression), reconstructions
    (autoencoders) or generated samples (GANs, VAEs). `trainserve logs` shows its output."""
    from trainserve.client import NotSupported
    with client(ctx) as ts:
        job = ts.get_job(job_id)
        try:
            paths = _download(ts, job, out)
        except NotSupported:  # an API older than ListArtifacts: draw the curves here
            paths = _draw(ts, job, out)
    for path in paths:
        render.stdout().print(str(path), highlight=False, soft_wrap=True)


def _download(ts, job: job_pb2.Job, out: Path) -> list[Path]:
    from trainserve.jobs.plots import NoEpochs
    names = [a.name for a in ts.list_artifacts(job.id) if a.content_type == PNG]
    if not names:
        raise NoEpochs(f"job {job.id} has no epochs yet")
    return [ts.download_artifact(job.id, name, out) for name in names]


def _draw(ts, job: job_pb2.Job, out: Path) -> list[Path]:
    from trainserve.jobs import plots
    if render.is_search(job):
        return plots.search_plots(job, out)
    return plots.training_plots(job, _epochs(ts, job), out)


def _epochs(ts, job: job_pb2.Job) -> list[job_pb2.EpochMetrics]:
    """The job's epoch events, replayed from its history. A finished job's stream ends by
    itself; a running job's is left once it reaches the epoch GetJob reported."""
    from trainserve.client import TERMINAL_STATES
    from trainserve.jobs.plots import epoch_points
    if job.state not in TERMINAL_STATES and job.epoch == 0:
        return []
    events = []
    stream = ts.watch(job.id)
    try:
        for event in stream:
            events.append(event)
            if (job.state not in TERMINAL_STATES and event.WhichOneof("event") == "epoch"
                    and event.epoch.epoch >= job.epoch):
                break
    finally:
        stream.close()
    return epoch_points(events)
