"""`trainserve plot JOB`: the PNG plots of a job, rendered by the job API (ListArtifacts /
GetArtifact, so it works against a remote server) and written to a local directory."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trainserve.cli import render
from trainserve.cli.app import app, client
from trainserve.cli.completion import job_ids as complete_job_ids
from trainserve.client import NotSupported
from trainserve.core import errors

PNG = "image/png"


@app.command()
def plot(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(
        metavar="JOB_ID", help="The job's id, or any unique start of it.",
        autocompletion=complete_job_ids)],
    out: Annotated[Path, typer.Option("--out", metavar="DIR", file_okay=False,
                                      help="Directory for the PNG files (created if needed).")
                   ] = Path("."),
) -> None:
    """Write PNG plots of a job: a search's trial curves and metric against each searched
    value; a training job's train and validation curves and, once it succeeded, its
    confusion matrix and ROC curve (classifiers), predictions (regression), reconstructions
    (autoencoders) or generated samples (GANs, VAEs). `trainserve logs` shows its output."""
    with client(ctx) as ts:
        paths = _download(ts, job_id, out)
    for path in paths:
        render.stdout().print(str(path), highlight=False, soft_wrap=True)


def _download(ts, job_id: str, out: Path) -> list[Path]:
    """The job's PNG artifacts, which the server renders on demand, written under `out`."""
    try:
        names = [a.name for a in ts.list_artifacts(job_id) if a.content_type == PNG]
    except NotSupported:
        raise NotSupported(f"the job API at {ts.address} renders no plots (it is older than "
                           "ListArtifacts): upgrade it") from None
    if not names:
        raise errors.FailedPrecondition(f"job {job_id} has no epochs yet")
    return [ts.download_artifact(job_id, name, out) for name in names]
