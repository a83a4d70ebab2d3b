"""`trainserve tensorboard JOB`: a job's (or a search's) TensorBoard event files, fetched through
the job API into a local folder that `tensorboard --logdir` reads as it is."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trainserve.cli import render
from trainserve.cli.app import app, client
from trainserve.cli.completion import job_ids as complete_job_ids


@app.command()
def tensorboard(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(
        metavar="JOB_ID", help="The job's id, or any unique start of it.",
        autocompletion=complete_job_ids)],
    out: Annotated[Path, typer.Option("--out", metavar="DIR", file_okay=False,
                                      help="Folder for the runs (created if needed).")
                   ] = Path("runs"),
) -> None:
    """Fetch a job's TensorBoard event files (specs with `tracking: {tensorboard: true}`) into
    DIR/JOB_ID/, a search's trials each in a folder of its own, then print the command that
    shows them."""
    with client(ctx) as ts:
        paths = ts.download_tensorboard(job_id, out)
    console = render.stdout()
    for path in paths:
        console.print(str(path), highlight=False, soft_wrap=True)
    console.print(f"tensorboard --logdir {out}", highlight=False, soft_wrap=True)
