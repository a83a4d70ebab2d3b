"""`trainserve export MODEL[:VERSION] --format torchscript|onnx [--out FILE]`."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trainserve.cli import render
from trainserve.cli.app import app, client
from trainserve.core.modelrefs import parse_ref
from trainserve.core.export_formats import check_format, export_filename


@app.command("export")
def export_model(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="MODEL[:VERSION|@ALIAS]",
                                       help="Model to export: a version, the version an alias "
                                            "names now, or (neither) the latest.")],
    fmt: Annotated[str, typer.Option(
        "--format", "-f", metavar="torchscript|onnx",
        help="torchscript (torch.jit.load) or onnx (opset 17, e.g. for onnxruntime).")],
    out: Annotated[Path | None, typer.Option(
        "--out", metavar="FILE",
        help="Where to write it (default: <name>-v<version>.pt or .onnx, here).")] = None,
) -> None:
    """Export a model version as one file that takes the endpoint's raw inputs (its
    preprocessing included) and returns the endpoint's outputs, under the same names."""
    model = parse_ref(ref)
    fmt = check_format(fmt)
    with client(ctx) as ts:
        with render.stdout().status(f"exporting {ref} to {fmt} …"):
            filename, data = ts.export_model_file(model.name, model.version, fmt, model.alias)
    path = out or Path(filename or export_filename(model.name, model.version, fmt))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    render.stdout().print(f"wrote [bold]{path}[/bold] ({fmt}, {len(data):,} bytes)",
                          highlight=False)
