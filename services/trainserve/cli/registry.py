"""The model registry and deletions: `trainserve models`, `trainserve model [show] REF`,
`trainserve model alias|unalias|tag|delete`, and `trainserve delete JOB_ID...`.

A model version is named `NAME` (the latest), `NAME:VERSION` or `NAME@ALIAS` (the version the
alias names when the command runs), as `deploy` and `export` name it.
"""
from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from trainserve.cli import render
from trainserve.cli.app import OutputOption, _Group, app, client
from trainserve.cli.render import Output
from trainserve.core import errors
from trainserve.core.modelrefs import parse_ref


class _ModelGroup(_Group):
    """`trainserve model REF` is `trainserve model show REF`: a first argument that is no
    subcommand (nor --help) names the version to show, or is one of show's options."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] != "--help":
            args = ["show", *args]
        return super().parse_args(ctx, args)


model_app = typer.Typer(cls=_ModelGroup, no_args_is_help=True,
                        help="Show a model version; set its aliases and tags; delete it. "
                             "`trainserve model REF` shows REF.")
app.add_typer(model_app, name="model")

Ref = Annotated[str, typer.Argument(
    metavar="NAME[:VERSION|@ALIAS]",
    help="A model version: NAME:VERSION, NAME@ALIAS (the version the alias names now), or "
         "NAME (the latest).")]


# -- listing and showing ----------------------------------------------------------------------

@app.command()
def models(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Only versions of this model.")] = None,
    output: OutputOption = Output.table,
) -> None:
    """List registered model versions, and the models' aliases."""
    with client(ctx) as ts:
        found = ts.list_models(name)
    render.show_list("models", found, output, render.models_table,
                     "no models" + (f" named {name}" if name else ""))
    if output is Output.table and any(mv.aliases for mv in found):
        render.stdout().print(aliases_table(found))


def aliases_table(versions) -> Table:
    """One row per alias: the model, the alias, the version it names."""
    table = Table(title="aliases", title_justify="left", show_edge=False)
    for column in ("MODEL", "ALIAS", "VERSION"):
        table.add_column(column, no_wrap=True)
    for mv in sorted(versions, key=lambda mv: (mv.name, mv.version)):
        for alias in mv.aliases:
            table.add_row(mv.name, alias, str(mv.version))
    return table


@model_app.command("show")
def show(ctx: typer.Context, ref: Ref, output: OutputOption = Output.table) -> None:
    """Show one model version: signature, preprocessing, metrics, lineage, aliases, tags."""
    model = parse_ref(ref)
    with client(ctx) as ts:
        mv = ts.get_model(model.name, model.version, model.alias)
    render.show_one(mv, output, model_parts)


def model_parts(mv) -> list:
    """The version's details, then its aliases and tags."""
    parts = render.model_detail(mv)
    rows = [("aliases", ", ".join(mv.aliases)),
            ("tags", ", ".join(f"{k}={v}" for k, v in sorted(mv.tags.items())))]
    if mv.aliases or mv.tags:
        parts.insert(1, render.kv_table(rows))
    return parts


# -- aliases and tags -------------------------------------------------------------------------

@model_app.command("alias")
def alias(
    ctx: typer.Context,
    ref: Ref,
    name: Annotated[str, typer.Argument(metavar="ALIAS", help="e.g. production, staging.")],
    output: OutputOption = Output.table,
) -> None:
    """Point ALIAS at a version (moving it off the version it named): `trainserve model alias
    digits:3 production`; `digits@staging production` gives production staging's version."""
    model = parse_ref(ref)
    with client(ctx) as ts:
        mv = ts.set_model_alias(str(model), name)
    _done(mv, output, f"{mv.name}@{name} → {mv.name}:{mv.version}")


@model_app.command("unalias")
def unalias(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="NAME@ALIAS", help="The alias to remove.")],
    output: OutputOption = Output.table,
) -> None:
    """Remove an alias (the version it named stays)."""
    model = parse_ref(ref)
    if not model.alias:
        raise errors.InvalidArgument(f"{ref!r}: name the alias as NAME@ALIAS", field="alias")
    with client(ctx) as ts:
        mv = ts.delete_model_alias(model.name, model.alias)
    _done(mv, output, f"{model} removed (it named {mv.name}:{mv.version})")


@model_app.command("tag")
def tag(
    ctx: typer.Context,
    ref: Ref,
    tags: Annotated[list[str] | None, typer.Argument(
        metavar="KEY=VALUE...", help="Tags to set (or overwrite).")] = None,
    remove: Annotated[list[str] | None, typer.Option(
        "--remove", "-r", metavar="KEY", help="A tag to remove; repeatable.")] = None,
    output: OutputOption = Output.table,
) -> None:
    """Set and remove tags of a version: `trainserve model tag digits:3 reviewed=yes`."""
    if not tags and not remove:
        raise errors.InvalidArgument("give KEY=VALUE tags to set or --remove KEY")
    model = parse_ref(ref)
    with client(ctx) as ts:
        mv = ts.update_model_tags(str(model), set=parse_tags(tags or []),
                                  remove=remove or [])
    shown = ", ".join(f"{k}={v}" for k, v in sorted(mv.tags.items())) or "none"
    _done(mv, output, f"{mv.name}:{mv.version} tags: {shown}")


def parse_tags(items: list[str]) -> dict[str, str]:
    """["reviewed=yes", "by=ana"] -> {"reviewed": "yes", "by": "ana"} (a value may hold '=')."""
    tags: dict[str, str] = {}
    for i, item in enumerate(items):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise errors.InvalidArgument(f"{item!r} is not KEY=VALUE", field=f"tags[{i}]")
        tags[key] = value
    return tags


# -- deletions --------------------------------------------------------------------------------

@model_app.command("delete")
def delete_version(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="NAME:VERSION", help="The version to delete.")],
    output: OutputOption = Output.table,
) -> None:
    """Delete a model version with its aliases, tags and files (refused while an endpoint
    serves it)."""
    model = parse_ref(ref)
    if model.alias or not model.version:
        raise errors.InvalidArgument(f"{ref!r}: name the version to delete by its number, "
                                     "e.g. digits:3", field="model")
    with client(ctx) as ts:
        mv = ts.delete_model_version(model.name, model.version)
    _done(mv, output, f"deleted {mv.name}:{mv.version}")


@app.command("delete")
def delete_jobs(
    ctx: typer.Context,
    job_ids: Annotated[list[str], typer.Argument(metavar="JOB_ID...", help="Finished jobs.")],
    output: OutputOption = Output.table,
) -> None:
    """Delete finished jobs with their events, curves, logs and files (a job whose model
    version is still registered is refused: `trainserve model delete NAME:VERSION` first)."""
    deleted = []
    with client(ctx) as ts:
        for job_id in job_ids:
            deleted.append(ts.delete_job(job_id))
            if output is Output.table:
                render.stdout().print(f"deleted job {job_id}", highlight=False)
    if output is Output.json:
        render.print_messages("jobs", deleted)


def _done(mv, output: Output, line: str) -> None:
    if output is Output.json:
        render.print_messages(None, mv)
    else:
        render.stdout().print(line, highlight=False)
