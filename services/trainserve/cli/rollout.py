"""`trainserve rollout / promote / rollback`: move an endpoint to another version of its model
with a share of the traffic first (a canary), then all of it or none."""
from __future__ import annotations

import contextlib
from typing import Annotated

import typer

from trainserve.cli import render
from trainserve.cli.app import OutputOption, app, client
from trainserve.cli.render import Output


@app.command()
def rollout(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Endpoint name.")],
    version: Annotated[int, typer.Option("--version", "-v", help="Version of the endpoint's "
                                         "model to roll out; 0 = the latest.")] = 0,
    alias: Annotated[str, typer.Option("--alias", "-a", help="Instead of --version: the "
                                       "version this alias of the model names now.")] = "",
    percent: Annotated[int | None, typer.Option(
        "--percent", "-p", help="Share of the requests the new version takes once loaded, "
                                "1-100 (default 10; again with another value re-weights).")
    ] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Return before the new version "
                                                            "is loaded.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for it.")
                       ] = 300.0,
    output: OutputOption = Output.table,
) -> None:
    """Start a rollout: a new version of the endpoint's model takes a share of its traffic."""
    spinner = render.stdout().status(f"loading the new version of {name} …") \
        if output is Output.table and not no_wait else contextlib.nullcontext()
    with client(ctx) as ts, spinner:
        dep = ts.rollout(name, version, percent, wait=not no_wait, timeout=timeout,
                         alias=alias)
    _show(dep, output, f"{name}: {dep.canary_percent}% to "
                       f"{dep.model_name}:{dep.canary_version}, the rest to "
                       f"{dep.model_name}:{dep.model_version}")


@app.command()
def promote(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Endpoint name.")],
            output: OutputOption = Output.table) -> None:
    """Finish a rollout: the new version takes all of the endpoint's traffic."""
    _finish(ctx, name, output, "promote", "now serves")


@app.command()
def rollback(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Endpoint name.")],
             output: OutputOption = Output.table) -> None:
    """Abandon a rollout: the endpoint's version takes all of its traffic again."""
    _finish(ctx, name, output, "rollback", "serves only")


def _finish(ctx, name: str, output: Output, how: str, says: str) -> None:
    with client(ctx) as ts:
        dep = getattr(ts, how)(name)
    _show(dep, output, f"{name} {says} {dep.model_name}:{dep.model_version}")


def _show(dep, output: Output, line: str) -> None:
    if output is Output.json:
        render.print_messages(None, dep)
    else:
        render.stdout().print(line, highlight=False)
