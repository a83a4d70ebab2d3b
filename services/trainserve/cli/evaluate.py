"""`trainserve evaluate MODEL_REF --dataset NAME`: external validation of a registered model
version as a job (docs/evaluation.md); its metrics and plots are the job's (`trainserve job`,
`trainserve plot`), its progress `trainserve watch`'s."""
from __future__ import annotations

from typing import Annotated

import typer

from trainserve.cli import render
from trainserve.cli.app import OutputOption, app, client
from trainserve.cli.commands import _follow
from trainserve.cli.render import Output


@app.command()
def evaluate(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(
        metavar="MODEL_REF", help="NAME (the latest version), NAME:VERSION or NAME@ALIAS.")],
    dataset: Annotated[str, typer.Option(
        "--dataset", help="An uploaded dataset (or a built-in one) with the model's "
                          "signature: its feature columns or input shape, its labels.")],
    wait: Annotated[bool, typer.Option("--wait", help="Watch until the job ends; exit 1 "
                                                      "unless it succeeded.")] = False,
    description: Annotated[str, typer.Option("--description")] = "",
    output: OutputOption = Output.table,
) -> None:
    """Evaluate a registered model on another dataset: the training job's final metrics
    (test_*, clinical ones included) and plots, as a job."""
    with client(ctx) as ts:
        job = ts.evaluate(model, dataset, description=description)
        if output is Output.json and not wait:
            render.print_messages(None, job)
            return
        if output is Output.table:
            ev = job.spec.evaluate
            render.stdout().print(
                f"submitted evaluation job [bold]{job.id}[/bold] ({ev.model_name}:"
                f"{ev.model_version} on {ev.dataset}), {render.job_state_name(job.state)}",
                highlight=False)
        if wait:
            _follow(ts, job.id, output, job)
