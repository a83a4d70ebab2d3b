"""`trainserve datasets` and `trainserve dataset upload|show|delete`: user datasets."""
from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from trainserve.cli import render
from trainserve.cli.app import OutputOption, _Group, app, client
from trainserve.cli.render import Output

dataset_app = typer.Typer(cls=_Group, no_args_is_help=True,
                          help="Upload, show and delete user datasets (CSV or NPZ).")
app.add_typer(dataset_app, name="dataset")
Name = Annotated[str, typer.Argument(help="Dataset name.")]


COLUMNS = (render.Col("NAME"), render.Col("FORMAT", 1), render.Col("ROWS", 2, justify="right"),
           render.Col("COLUMNS", 3, wrap=True), render.Col("SIZE", 4, justify="right"),
           render.Col("SHA256", 5), render.Col("CREATED", 6))


def _table(datasets, kinds: bool = False) -> Table:
    rows = [(ds.name, ds.format, str(ds.num_rows),
             ", ".join(_column_kinds(ds) if kinds else ds.columns),
             f"{ds.size_bytes:,} B", ds.sha256[:12], render.age(ds.created_at))
            for ds in datasets]
    return render.fitted_table(COLUMNS, rows)


def _column_kinds(ds) -> list[str]:
    """A CSV's columns with the kind found at upload (numeric, binary, categorical, text) and
    their missing cells, e.g. "bmi (numeric, 24 missing)"."""
    return [c.name + (f" ({c.kind}" + (f", {c.missing} missing" if c.missing else "") + ")"
                      if c.kind else "") for c in ds.schema.columns] or list(ds.columns)


def _show(ds, output: Output) -> None:
    render.show_one(ds, output, lambda one: [_table([one], kinds=True)])


@app.command()
def datasets(ctx: typer.Context, output: OutputOption = Output.table) -> None:
    """List uploaded datasets."""
    with client(ctx) as ts:
        found = ts.list_datasets()
    render.show_list("datasets", found, output, _table, "no datasets")


@dataset_app.command("upload")
def upload(ctx: typer.Context,
           file: Annotated[str, typer.Argument(metavar="FILE", help="A .csv or .npz file.")],
           name: Annotated[str, typer.Option("--name", help="Name jobs will use.")],
           fmt: Annotated[str | None, typer.Option(
               "--format", help="csv or npz (default: from the file's extension).")] = None,
           description: Annotated[str, typer.Option("--description")] = "",
           output: OutputOption = Output.table) -> None:
    """Upload a CSV (header row, one sample a row) or NPZ (arrays x and y) file."""
    with client(ctx) as ts:
        _show(ts.upload_dataset(file, name, fmt, description), output)


@dataset_app.command("show")
def show(ctx: typer.Context, name: Name, output: OutputOption = Output.table) -> None:
    """Show one dataset."""
    with client(ctx) as ts:
        _show(ts.get_dataset(name), output)


@dataset_app.command("delete")
def delete(ctx: typer.Context, name: Name, output: OutputOption = Output.table) -> None:
    """Remove a dataset's name (models trained on it keep their lineage)."""
    with client(ctx) as ts:
        _show(ts.delete_dataset(name), output)
